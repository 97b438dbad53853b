import { currentLocale, t } from './i18n.js';

const UNITS = [
  ['year', 365 * 24 * 3600],
  ['month', 30 * 24 * 3600],
  ['week', 7 * 24 * 3600],
  ['day', 24 * 3600],
  ['hour', 3600],
  ['minute', 60],
  ['second', 1],
];

/** "3 minutes ago", "in 2 hours", in the page's language. */
export function relativeTime(iso, now = Date.now()) {
  if (!iso) return '';
  const seconds = Math.round((Date.parse(iso) - now) / 1000);
  const format = new Intl.RelativeTimeFormat(currentLocale(), { numeric: 'auto' });
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size || unit === 'second') return format.format(Math.trunc(seconds / size), unit);
  }
  return '';
}

/** Date and time in the browser's own time zone. */
export function absoluteTime(iso) {
  if (!iso) return '';
  return new Intl.DateTimeFormat(currentLocale(), { dateStyle: 'medium', timeStyle: 'medium' }).format(new Date(iso));
}

/** A <time> showing both: relative, then absolute. */
export function timeBoth(iso, h) {
  if (!iso) return null;
  return h('time', { datetime: iso, class: 'when' }, h('span', { class: 'rel' }, relativeTime(iso)), ' ', h('span', { class: 'abs' }, absoluteTime(iso)));
}

/** 0:45, 12:03, 1:02:03 */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '';
  const whole = Math.round(seconds);
  const [hours, minutes, rest] = [Math.floor(whole / 3600), Math.floor((whole % 3600) / 60), whole % 60];
  const two = (value) => String(value).padStart(2, '0');
  return hours > 0 ? `${hours}:${two(minutes)}:${two(rest)}` : `${minutes}:${two(rest)}`;
}

export function bytes(size) {
  if (size === null || size === undefined) return '';
  const number = (value, unit) => new Intl.NumberFormat(currentLocale(), { style: 'unit', unit, maximumFractionDigits: 1 }).format(value);
  if (size < 1024) return number(size, 'byte');
  if (size < 1024 * 1024) return number(size / 1024, 'kilobyte');
  return number(size / 1024 / 1024, 'megabyte');
}

export const peerLabel = (call) => call.peer_phone ?? call.peer_phone_raw ?? t('calls.unknownPeer');
