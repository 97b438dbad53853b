import { h } from '../dom.js';
import { t } from '../i18n.js';

/** The page's heading: focusable, so that navigation can move focus to it. */
export const heading = (text) => h('h1', { tabindex: '-1' }, text);

export const stateBadge = (state) => h('span', { class: `badge state-${state}`, 'data-state': state }, t(`state.${state}`));

const ARROWS = { incoming: '↙', outgoing: '↗' };

export const directionLabel = (direction) =>
  h('span', { class: `direction dir-${direction ?? 'unknown'}` }, h('span', { class: 'icon', 'aria-hidden': 'true' }, ARROWS[direction] ?? '·'), ' ', t(`direction.${direction ?? 'unknown'}`));

/** What to show while loading, and when loading failed (with a way to try again). */
export const loadingNotice = () => h('p', { class: 'notice', role: 'status' }, t('loading'));

/**
 * What went wrong, in the page's language: the service's own words (English) only for an answer
 * the page has no text of its own for.
 */
export function explainError(error) {
  const status = error?.status;
  if (!status) return t('error.network');
  if (status === 403) return t('error.forbidden');
  if (status === 404) return t('error.notFound');
  if (status === 409) return t('error.conflict');
  if (status === 429) return t('error.busy');
  if (status >= 500) return t('error.server');
  return error.message;
}

export function errorNotice(error, retry) {
  const text = error?.status ? t('error.load', { error: explainError(error) }) : t('error.network');
  return h('div', { class: 'notice error', role: 'alert' }, h('p', {}, text), retry ? h('button', { type: 'button', onclick: retry }, t('retryLoad')) : null);
}

export const callPath = (callId) => `/calls/${encodeURIComponent(callId)}`;
