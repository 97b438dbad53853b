import { ATTACHMENT_STATES } from '../calls/call-state.ts';
import { CALL_DIRECTIONS, CALL_OUTCOMES } from '../calls/call-details.ts';
import { toE164 } from '../calls/phone-number.ts';
import type { CallPageQuery } from '../db/calls-repository.ts';
import { stringEnum } from '../http/schemas.ts';
import { TENANT_QUERY_SCHEMA } from './webhook-token-routes.ts';
import { Type, type Static } from 'typebox';

/** The query string of GET /api/calls: filters, all combinable, and the page. */
export const LIST_QUERY_SCHEMA = Type.Object(
  {
    state: Type.Optional(stringEnum(ATTACHMENT_STATES)),
    tenant: Type.Optional(TENANT_QUERY_SCHEMA),
    direction: Type.Optional(stringEnum(CALL_DIRECTIONS)),
    outcome: Type.Optional(stringEnum(CALL_OUTCOMES)),
    // No control characters: no device id holds one, and PostgreSQL would fail on a NUL.
    device: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: '^[^\\u0000-\\u001f\\u007f]+$', description: 'A device id (id_session)' })),
    phone: Type.Optional(Type.String({ maxLength: 64, description: 'Either party, with its country code (digits or E.164)' })),
    since: Type.Optional(Type.String({ maxLength: 64, description: 'ISO 8601 date or time with its offset' })),
    until: Type.Optional(Type.String({ maxLength: 64, description: 'ISO 8601 date or time with its offset' })),
    // Call ids are up to 128 characters and hold no control character (PostgreSQL fails on a NUL).
    q: Type.Optional(
      Type.String({ minLength: 1, maxLength: 128, pattern: '^[^\\u0000-\\u001f\\u007f]+$', description: "Search: the other party's phone number, or the start of a whatsapp_call_id" }),
    ),
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
    cursor: Type.Optional(Type.String({ maxLength: 512, description: 'next_cursor of the previous page' })),
  },
  { additionalProperties: false },
);
export type ListQuery = Static<typeof LIST_QUERY_SCHEMA>;

export type CallFilters = Omit<CallPageQuery, 'limit' | 'after'>;

/** What the schema cannot say: a phone number, and times. A refusal names the parameter. */
export function readCallFilters(query: ListQuery): { ok: true; filters: CallFilters } | { ok: false; field: string; error: string } {
  let phone: string | undefined;
  if (query.phone !== undefined) {
    const e164 = toE164(query.phone);
    if (e164 === null) return { ok: false, field: 'phone', error: 'phone must be a number with its country code, as digits or E.164 (e.g. 5511911112222 or +5511911112222)' };
    phone = e164;
  }
  const times: { since?: number; until?: number } = {};
  for (const field of ['since', 'until'] as const) {
    const text = query[field];
    if (text === undefined) continue;
    const time = parseIsoTime(text);
    if (time === null) return { ok: false, field, error: `${field} must be an ISO 8601 date (2024-05-01) or time with its offset (2024-05-01T12:00:00Z)` };
    times[field] = time;
  }
  const search = readSearch(query.q);
  if (search === null) return { ok: false, field: 'q', error: 'q must be a phone number or the start of a whatsapp_call_id' };
  return {
    ok: true,
    filters: { state: query.state, tenant: query.tenant, direction: query.direction, outcome: query.outcome, deviceId: query.device, phone, ...search, ...times },
  };
}

/** A number finds the calls with that other party; anything else, the calls whose id starts with it. */
function readSearch(q: string | undefined): Pick<CallFilters, 'peerPhone' | 'callIdPrefix'> | null {
  if (q === undefined) return {};
  const text = q.trim();
  if (text === '') return null;
  const peerPhone = toE164(text);
  return peerPhone === null ? { callIdPrefix: text } : { peerPhone };
}

// Hand-written rather than Date.parse, which takes many other shapes, reads a time without an
// offset as the server's local time, and rolls 2024-02-30 over into March.
const ISO_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2}))?$/i;

/** Milliseconds since the epoch: a date alone is its midnight UTC; a time must carry its offset. */
export function parseIsoTime(text: string): number | null {
  const match = ISO_TIME.exec(text.trim());
  if (match === null) return null;
  const [, year, month, day, hour = '0', minute = '0', second = '0', fraction = '', offset] = match;
  if (match[4] !== undefined && offset === undefined) return null;
  const [y, mo, d, h, mi, s] = [year, month, day, hour, minute, second].map(Number) as [number, number, number, number, number, number];
  const local = Date.UTC(y, mo - 1, d, h, mi, s, Number(fraction.padEnd(3, '0').slice(0, 3)));
  const date = new Date(local);
  if (date.getUTCFullYear() !== y || date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d || h > 23 || mi > 59 || s > 59) return null;
  if (offset === undefined || offset.toUpperCase() === 'Z') return local;
  const sign = offset.startsWith('-') ? -1 : 1;
  const [offsetHours, offsetMinutes] = offset.slice(1).split(':').map(Number) as [number, number];
  if (offsetHours > 23 || offsetMinutes > 59) return null;
  return local - sign * (offsetHours * 60 + offsetMinutes) * 60_000;
}
