import { get } from '../api.js';
import { fill, h, throttle } from '../dom.js';
import { absoluteTime, duration, peerLabel, relativeTime, timeBoth } from '../format.js';
import { t } from '../i18n.js';
import { onLive } from '../live.js';
import { callPath, directionLabel, errorNotice, heading, loadingNotice, stateBadge } from './common.js';

const STATES = ['pending', 'attached', 'failed', 'empty', 'disabled', 'none', 'expired'];
const DIRECTIONS = ['incoming', 'outgoing'];
/** The page's query parameters; `since`/`until` are dates (YYYY-MM-DD) in the browser's time zone. */
const FILTERS = ['q', 'state', 'direction', 'since', 'until'];
const PAGE_SIZE = 50;

/** The calls list: filters and search in the URL, newest first, cursor pages, live rows. */
export function renderCalls(main, { query, navigate, announce }) {
  document.title = `${t('calls.title')} · ${t('app.name')}`;
  const isFirstPage = !query.get('cursor');
  const rows = new Map();
  let shownIds = new Set();
  const status = h('div', { class: 'list-status' }, loadingNotice());
  const tbody = h('tbody');
  const table = h(
    'table',
    { class: 'calls', hidden: true },
    h('caption', { class: 'visually-hidden' }, t('calls.title')),
    h('thead', {}, h('tr', {}, ['time', 'direction', 'peer', 'duration', 'outcome', 'state', 'play'].map((column) => h('th', { scope: 'col' }, t(`calls.col.${column}`))))),
    tbody,
  );
  const pager = h('nav', { class: 'pager', 'aria-label': t('calls.paging') });
  fill(main, heading(t('calls.title')), filterForm(query, navigate), status, table, pager);

  // Reads overlap (the first, a resync as the live stream opens, a live reload): only the answer
  // to the last one started is drawn, so an older list never replaces a newer one.
  let latestLoad = 0;
  const load = async ({ announceNew = false } = {}) => {
    const thisLoad = ++latestLoad;
    let page;
    try {
      page = await get(`/api/calls?${apiQuery(query)}`);
    } catch (error) {
      if (thisLoad !== latestLoad || error.status === 401) return;
      fill(status, errorNotice(error, () => load()));
      table.hidden = true;
      return;
    }
    if (thisLoad !== latestLoad) return;
    const fresh = page.calls.filter((call) => !shownIds.has(call.whatsapp_call_id));
    if (announceNew && fresh.length > 0) {
      announce(fresh.length === 1 ? t('calls.announceNew', { peer: peerLabel(fresh[0]) }) : t('calls.announceMany', { count: fresh.length }));
    }
    shownIds = new Set(page.calls.map((call) => call.whatsapp_call_id));
    // Rows that are playing stay as they are (their audio would stop if rebuilt).
    const kept = new Map([...rows].filter(([callId, row]) => shownIds.has(callId) && row.isPlaying()));
    rows.clear();
    fill(tbody, page.calls.map((call) => {
      const row = kept.get(call.whatsapp_call_id) ?? callRow(call);
      rows.set(call.whatsapp_call_id, row);
      return row.element;
    }));
    table.hidden = page.calls.length === 0;
    fill(status, page.calls.length === 0 ? h('p', { class: 'notice' }, t('calls.empty')) : null);
    fill(pager,
      isFirstPage ? null : h('a', { href: `/?${pageQuery(query, null)}`, 'data-nav': '', class: 'button' }, `← ${t('calls.newest')}`),
      page.next_cursor ? h('a', { href: `/?${pageQuery(query, page.next_cursor)}`, 'data-nav': '', class: 'button', rel: 'next' }, `${t('calls.older')} →`) : null,
    );
  };

  // A changed call that is shown: its row is redrawn in place. One not shown, on the first page:
  // the page is read again (at most twice a second however busy), so a new call appears at the top.
  const reloadFirstPage = throttle(() => load({ announceNew: true }), 500);
  const unsubscribe = onLive((event) => {
    if (event.type === 'resync') return void load();
    for (const call of event.calls) {
      const row = rows.get(call.whatsapp_call_id);
      if (row) row.update(call);
      else if (isFirstPage) reloadFirstPage();
    }
  });
  // Relative times age; redrawn every half minute.
  const ticker = setInterval(() => rows.forEach((row) => row.tick()), 30_000);
  void load();
  return () => {
    unsubscribe();
    reloadFirstPage.cancel();
    clearInterval(ticker);
    for (const row of rows.values()) row.stop();
  };
}

function filterForm(query, navigate) {
  const select = (name, values, labelKey) =>
    h('label', {}, h('span', {}, t(labelKey)), h('select', { name }, h('option', { value: '' }, t('calls.any')), values.map((value) => h('option', { value, selected: query.get(name) === value }, t(`${name}.${value}`)))));
  const date = (name, labelKey) => h('label', {}, h('span', {}, t(labelKey)), h('input', { type: 'date', name, value: query.get(name) ?? '' }));
  const form = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': t('calls.filters'), action: '/', method: 'get' },
    h('label', { class: 'search' }, h('span', {}, t('calls.search')), h('input', { type: 'search', name: 'q', value: query.get('q') ?? '', placeholder: t('calls.searchHint'), autocomplete: 'off', spellcheck: 'false' })),
    select('state', STATES, 'calls.state'),
    select('direction', DIRECTIONS, 'calls.direction'),
    date('since', 'calls.since'),
    date('until', 'calls.until'),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, t('calls.apply')), h('a', { href: '/', 'data-nav': '', class: 'button quiet' }, t('calls.clear'))),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const chosen = new URLSearchParams();
    for (const [name, value] of new FormData(form)) if (FILTERS.includes(name) && String(value).trim() !== '') chosen.set(name, String(value).trim());
    navigate(`/${chosen.size > 0 ? `?${chosen}` : ''}`);
  });
  return form;
}

/** The page's URL query for another cursor, keeping the filters. */
function pageQuery(query, cursor) {
  const next = new URLSearchParams();
  for (const name of FILTERS) if (query.get(name)) next.set(name, query.get(name));
  if (cursor) next.set('cursor', cursor);
  return next.toString();
}

/** GET /api/calls's query: dates become the start of that day (since) and of the next (until) in the browser's zone. */
function apiQuery(query) {
  const api = new URLSearchParams({ limit: String(PAGE_SIZE) });
  for (const name of ['q', 'state', 'direction', 'cursor']) if (query.get(name)) api.set(name, query.get(name));
  const since = localMidnight(query.get('since'), 0);
  const until = localMidnight(query.get('until'), 1);
  if (since) api.set('since', since);
  if (until) api.set('until', until);
  return api.toString();
}

function localMidnight(date, addDays) {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date ?? '');
  if (!match) return null;
  return new Date(Number(match[1]), Number(match[2]) - 1, Number(match[3]) + addDays).toISOString();
}

/** One call's row; `update` redraws it from a newer CallView, keeping its audio if it has one playing. */
function callRow(initial) {
  let call = initial;
  let audio = null;
  const element = h('tr', { 'data-call-id': call.whatsapp_call_id });
  const playButton = h('button', { type: 'button', class: 'play', onclick: () => togglePlay() });
  const listen = h('td', { class: 'listen', 'data-label': t('calls.col.play') });

  function togglePlay() {
    if (audio === null) {
      audio = h('audio', { controls: true, preload: 'metadata', src: call.attachment.url });
      audio.addEventListener('play', () => {
        // One recording at a time.
        for (const other of document.querySelectorAll('audio')) if (other !== audio) other.pause();
        drawPlayButton();
      });
      audio.addEventListener('pause', drawPlayButton);
      listen.append(audio);
    }
    if (audio.paused) void audio.play().catch(() => {});
    else audio.pause();
  }

  function drawPlayButton() {
    const playing = audio !== null && !audio.paused;
    playButton.setAttribute('aria-label', t(playing ? 'calls.pauseLabel' : 'calls.playLabel', { peer: peerLabel(call) }));
    playButton.setAttribute('aria-pressed', String(playing));
    fill(playButton, h('span', { 'aria-hidden': 'true' }, playing ? '❚❚' : '▶'), ' ', t(playing ? 'calls.pause' : 'calls.play'));
  }

  function draw() {
    const cell = (column, ...content) => h('td', { class: column, 'data-label': t(`calls.col.${column}`) }, ...content);
    drawPlayButton();
    if (audio === null) fill(listen, call.attachment.url ? playButton : null);
    fill(
      element,
      cell('time', timeBoth(call.started_at, h)),
      cell('direction', directionLabel(call.direction)),
      cell('peer', h('a', { href: callPath(call.whatsapp_call_id), 'data-nav': '', class: 'peer' }, peerLabel(call)), call.peer_name ? h('span', { class: 'name' }, call.peer_name) : null),
      cell('duration', duration(call.duration)),
      cell('outcome', t(`outcome.${call.outcome}`)),
      cell('state', stateBadge(call.attachment.state)),
      listen,
    );
  }

  draw();
  return {
    element,
    isPlaying: () => audio !== null && !audio.paused,
    update(next) {
      const hadUrl = call.attachment.url;
      call = next;
      if (audio !== null && hadUrl !== call.attachment.url) {
        audio.pause();
        audio = null;
      }
      draw();
    },
    tick() {
      const rel = element.querySelector('.time .rel');
      if (rel) rel.textContent = relativeTime(call.started_at);
      const abs = element.querySelector('.time .abs');
      if (abs) abs.textContent = absoluteTime(call.started_at);
    },
    stop: () => audio?.pause(),
  };
}
