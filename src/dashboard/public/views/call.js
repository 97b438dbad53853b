import { get, post } from '../api.js';
import { facts, fill, h, throttle } from '../dom.js';
import { absoluteTime, bytes, duration, peerLabel, relativeTime, timeBoth } from '../format.js';
import { t } from '../i18n.js';
import { onLive } from '../live.js';
import { directionLabel, errorNotice, explainError, heading, loadingNotice, stateBadge } from './common.js';

/** One call: its recording, what the service does about it, its deliveries and its events. */
export function renderCall(main, { params: [callId], announce }) {
  const path = `/api/calls/${encodeURIComponent(callId)}`;
  let detail = null;
  let audio = null;
  // The heading stays one element (focus moves to it on arriving); only its text changes once the call is read.
  const title = heading(callId);
  const about = h('div');
  const top = h('div', { class: 'call-head' }, title, about);
  const recording = h('section', { class: 'panel', 'aria-labelledby': 'recording-title' });
  const service = h('section', { class: 'panel', 'aria-labelledby': 'service-title' });
  const deliveries = h('section', { class: 'panel', 'aria-labelledby': 'deliveries-title' });
  const timeline = h('section', { class: 'panel', 'aria-labelledby': 'timeline-title' });
  // Focusable: the button that was pressed is redrawn, and focus lands here rather than on <body>.
  const actionStatus = h('p', { class: 'action-status', role: 'status', tabindex: '-1' });
  const loading = loadingNotice();
  const grid = h('div', { class: 'call-grid' }, recording, service, deliveries, timeline);
  const back = h('p', { class: 'back' }, h('a', { href: '/', 'data-nav': '' }, `← ${t('call.back')}`));
  fill(main, back, top, loading);

  // Only the answer to the last read started is drawn (the first and a live reload can overlap).
  let latestLoad = 0;
  const load = async () => {
    const thisLoad = ++latestLoad;
    let answer;
    try {
      answer = await get(path);
    } catch (error) {
      if (thisLoad !== latestLoad || error.status === 401) return;
      detail = null;
      title.textContent = callId;
      fill(main, back, title, error.status === 404 ? h('p', { class: 'notice' }, t('call.notFound')) : errorNotice(error, load));
      return;
    }
    if (thisLoad !== latestLoad) return;
    detail = answer;
    if (loading.isConnected) loading.replaceWith(grid);
    // After a failed read ("Try again", or a call not found that has since arrived): drawn anew.
    else if (!grid.isConnected) fill(main, back, fill(top, title, about), grid);
    draw();
  };

  function draw() {
    const call = detail;
    document.title = `${peerLabel(call)} · ${t('app.name')}`;
    title.textContent = t('call.title', { peer: peerLabel(call) });
    fill(
      about,
      call.peer_name ? h('p', { class: 'name' }, call.peer_name) : null,
      facts([
        [t('calls.col.direction'), directionLabel(call.direction)],
        [t('calls.col.outcome'), t(`outcome.${call.outcome}`)],
        [t('calls.col.duration'), duration(call.duration)],
        [t('call.started'), timeBoth(call.started_at, h)],
        [t('call.answered'), timeBoth(call.answered_at, h)],
        [t('call.ended'), timeBoth(call.ended_at, h)],
        [t('call.device'), call.device_phone ?? call.device_phone_raw],
        [t('call.id'), h('code', {}, call.whatsapp_call_id)],
        [t('call.wavoipStatus'), call.status],
        [t('call.recordStatus'), call.record_status],
      ], 'facts wide'),
    );
    drawRecording(call.attachment);
    drawService(call.attachment);
    drawDeliveries(call.deliveries ?? []);
    drawTimeline(call.events ?? []);
  }

  function drawRecording(attachment) {
    // The player stays while the URL does: redrawing must not stop what is playing.
    if (attachment.url === null) audio = null;
    else if (audio === null || audio.dataset.url !== attachment.url) {
      audio = h('audio', { controls: true, preload: 'metadata', src: attachment.url, 'data-url': attachment.url, 'aria-label': t('call.recording') });
    }
    fill(
      recording,
      h('h2', { id: 'recording-title' }, t('call.recording')),
      audio ?? h('p', { class: 'notice' }, t('call.noRecording')),
      attachment.url ? h('p', {}, h('a', { href: `${attachment.url}?download=1`, class: 'button', download: '' }, `⤓ ${t('call.download')}`)) : null,
      facts([
        [t('call.size'), bytes(attachment.size)],
        [t('calls.col.duration'), attachment.duration_seconds === null ? null : duration(attachment.duration_seconds)],
        [t('call.codec'), attachment.codec],
        [t('call.container'), attachment.container],
        [t('call.contentType'), attachment.content_type],
        [t('call.sha256'), attachment.sha256 ? h('code', { class: 'hash' }, attachment.sha256) : null],
        [t('call.attachedAt'), timeBoth(attachment.attached_at, h)],
      ]),
    );
  }

  function drawService(attachment) {
    const action = attachment.state === 'pending' ? 'fetchNow' : attachment.state === 'failed' ? 'retry' : null;
    // A live redraw moves the outcome line too; whoever was reading it keeps their place.
    const hadFocus = document.activeElement === actionStatus;
    fill(
      service,
      h('h2', { id: 'service-title' }, t('call.service')),
      h('p', {}, stateBadge(attachment.state)),
      facts([
        [t('call.reason'), attachment.reason],
        [t('call.attempts'), attachment.attempts === undefined ? null : String(attachment.attempts)],
        [t('call.nextAttempt'), timeBoth(attachment.next_attempt_at, h)],
        [t('call.giveUp'), timeBoth(attachment.give_up_at, h)],
        [t('call.lastError'), attachment.last_error],
      ]),
      action ? h('button', { type: 'button', class: 'primary', onclick: (event) => retry(event.currentTarget) }, t(`call.${action}`)) : null,
      actionStatus,
    );
    if (hadFocus) actionStatus.focus();
  }

  async function retry(button) {
    button.disabled = true;
    // Reads already under way are older than this answer; one started after it (a live event:
    // the fetch may be done by then) is newer, and this answer is then not drawn over it.
    const thisAction = ++latestLoad;
    try {
      const call = await post(`${path}/retry`);
      if (thisAction === latestLoad) {
        detail = { ...detail, ...call };
        draw();
      }
      actionStatus.textContent = t('call.retried');
      actionStatus.focus();
      announce(t('call.retried'));
    } catch (error) {
      button.disabled = false;
      actionStatus.textContent = t('call.retryFailed', { error: explainError(error) });
      // A 409: the call changed meanwhile; show it as it is.
      if (error.status === 409) void load();
    }
  }

  function drawDeliveries(list) {
    fill(
      deliveries,
      h('h2', { id: 'deliveries-title' }, t('call.deliveries')),
      list.length === 0
        ? h('p', { class: 'notice' }, t('call.noDeliveries'))
        : h('ul', { class: 'deliveries' }, list.map((delivery) => h('li', {},
            h('p', {}, h('strong', {}, delivery.destination), ' ', h('span', { class: `badge delivery-${delivery.state}` }, t(`delivery.${delivery.state}`))),
            facts([
              [t('call.attempts'), String(delivery.attempts)],
              [t('call.deliveredAt'), timeBoth(delivery.delivered_at, h)],
              [t('call.nextAttempt'), timeBoth(delivery.next_attempt_at, h)],
              [t('call.giveUp'), timeBoth(delivery.give_up_at, h)],
              [t('call.lastError'), delivery.last_error],
            ]),
          ))),
    );
  }

  function drawTimeline(events) {
    fill(
      timeline,
      h('h2', { id: 'timeline-title' }, t('call.timeline')),
      events.length === 0
        ? h('p', { class: 'notice' }, t('call.noEvents'))
        : h('ol', { class: 'timeline' }, events.map((event) => h('li', {},
            h('p', {}, h('strong', {}, event.type), ' ', h('time', { datetime: event.received_at, title: absoluteTime(event.received_at) }, relativeTime(event.received_at))),
            // textContent of a <pre>: the payload is shown as the text it is, never parsed as markup.
            h('details', {}, h('summary', {}, t('call.payload')), h('pre', { class: 'payload' }, JSON.stringify(event.payload, null, 2))),
          ))),
    );
  }

  const reload = throttle(load, 300);
  const unsubscribe = onLive((event) => {
    if (event.type === 'resync' || event.calls.some((call) => call.whatsapp_call_id === callId)) reload();
  });
  void load();
  return () => {
    unsubscribe();
    reload.cancel();
    audio?.pause();
  };
}
