/**
 * The crash test's workload: a shuffled stream of WaVoIP webhook bodies, in the shapes the
 * service sees in production, and for each call what the service must end up with. Generated
 * up front from a seed, so a failing run can be replayed with the same stream.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';

export interface Fixture {
  name: string;
  contentType: string;
  bytes: Buffer;
  sha256: string;
}

/** What becomes of a call; the first three end attached, the rest never see READY. */
export type CallKind =
  | 'ready-url' // READY with record_url on the fake storage
  | 'ready-template' // READY without record_url: fetched from WAVOIP_RECORDING_URL_TEMPLATE
  | 'ready-late' // READY, but storage answers 404 twice before publishing the file
  | 'empty' // EMPTY_RECORDING
  | 'disabled' // DISABLED
  | 'missed' // rang, never answered: nothing expected
  | 'never-ready'; // ended and MIXING, then silence: polled until POLL_MAX_WAIT, then failed

export type ExpectedState = 'attached' | 'empty' | 'disabled' | 'none' | 'failed';

export interface PlannedCall {
  /** As the service stores it. */
  callId: string;
  kind: CallKind;
  expected: ExpectedState;
  /** Where the fake storage serves this call's recording; null when no file ever comes. */
  source: { path: string; fixture: Fixture; notFoundFirst: number } | null;
}

export interface Delivery {
  body: string;
  callId: string | null;
  deviceId: string | null;
  /** A READY for its call: once acknowledged, the call must end attached. */
  ready: boolean;
}

export interface Plan {
  deliveries: Delivery[];
  calls: PlannedCall[];
  /** How mixed up the stream is, for the report: redeliveries, and calls not in send order. */
  duplicates: number;
  callsOutOfOrder: number;
}

const KIND_WEIGHTS: [CallKind, number][] = [
  ['ready-url', 55],
  ['ready-template', 10],
  ['ready-late', 10],
  ['empty', 8],
  ['disabled', 5],
  ['missed', 8],
  ['never-ready', 4],
];
const EXPECTED: Record<CallKind, ExpectedState> = {
  'ready-url': 'attached',
  'ready-template': 'attached',
  'ready-late': 'attached',
  empty: 'empty',
  disabled: 'disabled',
  missed: 'none',
  'never-ready': 'failed',
};
const DEVICES = [8758847, 8758848, 8758849, 8758850, 8758851];
const HEARTBEAT_SHARE = 0.2;
const DUPLICATE_CHANCE = 0.12;
/** A call whose RECORD events all come before its CALL events, as WaVoIP sometimes sends them. */
const RECORD_FIRST_CHANCE = 0.1;

export function loadFixtures(dir: URL): Fixture[] {
  const types: [string, string, number][] = [
    // WhatsApp records Opus in Ogg, so most calls get that one.
    ['call-pt-br-9s.ogg', 'audio/ogg', 6],
    ['call-pt-br-9s.mp3', 'audio/mpeg', 3],
    ['call-pt-br-9s.wav', 'audio/wav', 1],
  ];
  return types.flatMap(([name, contentType, weight]) => {
    const bytes = fs.readFileSync(new URL(name, dir));
    const fixture = { name, contentType, bytes, sha256: createHash('sha256').update(bytes).digest('hex') };
    return Array<Fixture>(weight).fill(fixture);
  });
}

/** mulberry32: small, seedable, good enough to shuffle a workload. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * About `events` deliveries, a fifth of them DEVICE heartbeats. A call's events are never cut
 * short (its expected end depends on all of them), so the last call can add a few more.
 */
export function makePlan(options: { events: number; random: () => number; storageOrigin: string; fixtures: Fixture[] }): Plan {
  const { random, storageOrigin, fixtures } = options;
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  // `step` is the event's place in its call's own order (-1 for heartbeats).
  const placed: { at: number; delivery: Delivery; step: number }[] = [];
  const calls: PlannedCall[] = [];
  const callEventTarget = Math.round(options.events * (1 - HEARTBEAT_SHARE));
  let callEvents = 0;
  let duplicates = 0;

  while (callEvents < callEventTarget) {
    const index = calls.length;
    // Both id shapes seen in the wild: a number, and a 32-digit hex string.
    const jsonId: string | number = index % 3 === 0 ? 700_000_000 + index : hexCallId(index, random);
    const callId = String(jsonId);
    const kind = weightedKind(random());
    const fixture = pick(fixtures);
    const sourcePath = kind === 'ready-template' ? `/${encodeURIComponent(callId)}` : `/rec/${encodeURIComponent(callId)}`;
    const source = EXPECTED[kind] === 'attached' ? { path: sourcePath, fixture, notFoundFirst: kind === 'ready-late' ? 2 : 0 } : null;
    calls.push({ callId, kind, expected: EXPECTED[kind], source });

    const bodies = callBodies(kind, jsonId, pick(DEVICES), random, source ? `${storageOrigin}${sourcePath}` : null);
    // Calls overlap; within a call the jitter is wider than the step, so neighbours swap places.
    const start = index * 3 + random() * 3;
    const recordFirst = random() < RECORD_FIRST_CHANCE;
    bodies.forEach((body, step) => {
      const shift = recordFirst && body.type === 'RECORD' ? -8 : 0;
      const at = start + step * 1.5 + random() * 4 + shift;
      const delivery: Delivery = {
        body: JSON.stringify(body),
        callId,
        deviceId: null,
        ready: body.record_status === 'READY' || (body.type === 'RECORD' && body.status === 'READY'),
      };
      placed.push({ at, delivery, step });
      callEvents += 1;
      // WaVoIP redelivers: the same body again, a little or a lot later.
      if (random() < DUPLICATE_CHANCE && callEvents < callEventTarget) {
        placed.push({ at: at + 2 + random() * 30, delivery: { ...delivery }, step });
        callEvents += 1;
        duplicates += 1;
      }
    });
  }

  const span = calls.length * 3 + 10;
  while (placed.length < options.events) {
    const device = pick(DEVICES);
    const body = { type: 'DEVICE', action: 'UPDATE', id_session: device, phone: `55669990${device % 100000}`, status: 'open' };
    placed.push({ at: random() * span, delivery: { body: JSON.stringify(body), callId: null, deviceId: String(device), ready: false }, step: -1 });
  }
  placed.sort((a, b) => a.at - b.at);
  const latestStep = new Map<string, number>();
  const outOfOrder = new Set<string>();
  for (const { delivery, step } of placed) {
    if (delivery.callId === null) continue;
    if (step < (latestStep.get(delivery.callId) ?? -1)) outOfOrder.add(delivery.callId);
    latestStep.set(delivery.callId, Math.max(step, latestStep.get(delivery.callId) ?? -1));
  }
  return { deliveries: placed.map((entry) => entry.delivery), calls, duplicates, callsOutOfOrder: outOfOrder.size };
}

/** Unique by its index prefix; the random rest makes it look like the ids WaVoIP sends. */
function hexCallId(index: number, random: () => number): string {
  let rest = '';
  while (rest.length < 24) rest += Math.floor(random() * 16).toString(16);
  return `${index.toString(16).padStart(8, '0')}${rest}`.toUpperCase();
}

function weightedKind(roll: number): CallKind {
  const total = KIND_WEIGHTS.reduce((sum, [, weight]) => sum + weight, 0);
  let left = roll * total;
  for (const [kind, weight] of KIND_WEIGHTS) {
    left -= weight;
    if (left < 0) return kind;
  }
  return 'ready-url';
}

/** The bodies one call produces, in the order WaVoIP would send them. */
function callBodies(
  kind: CallKind,
  id: string | number,
  device: number,
  random: () => number,
  recordUrl: string | null,
): Record<string, unknown>[] {
  const base = { whatsapp_call_id: id, id_session: device };
  const parties = { direction: 'INCOMING', caller: `55119${Math.floor(random() * 1e8)}`, receiver: '556692341814' };
  const ring = { type: 'CALL', action: 'CREATE', ...base, ...parties, status: 'INCOMING_RING', duration: 0, transport: 'WSS' };
  if (kind === 'missed') {
    return [ring, { type: 'CALL', action: 'UPDATE', ...base, ...parties, status: 'NOT_ANSWERED', duration: 0 }];
  }
  const duration = kind === 'empty' ? 1 : 5 + Math.floor(random() * 300);
  const active = { type: 'CALL', action: 'UPDATE', ...base, ...parties, status: 'ACTIVE', duration: 0, record_status: 'RECORDING' };
  // Some senders overwrite the CALL `type` with the call kind (HUMANIZED): still a CALL.
  const ended = { type: random() < 0.15 ? 'HUMANIZED' : 'CALL', action: 'UPDATE', ...base, ...parties, status: 'ENDED', duration, record_status: 'MIXING' };
  const record = (status: string, extra: Record<string, unknown> = {}) => ({ type: 'RECORD', action: 'UPDATE', ...base, record_status: status, ...extra });
  const bodies: Record<string, unknown>[] = [ring, active, ended, record('RECORDING'), record('MIXING')];
  if (kind === 'empty') bodies.push(record('EMPTY_RECORDING', { record_url: '' }));
  if (kind === 'disabled') bodies.push(record('DISABLED'));
  if (kind === 'ready-template') bodies.push(record('READY'));
  if ((kind === 'ready-url' || kind === 'ready-late') && recordUrl !== null) {
    // Some senders put a RECORD's status in `status` instead of `record_status`.
    bodies.push(
      random() < 0.2
        ? { type: 'RECORD', action: 'UPDATE', ...base, status: 'READY', record_url: recordUrl }
        : record('READY', { record_url: recordUrl }),
    );
  }
  return bodies;
}
