import { describe, expect, it } from 'vitest';
import { createRefusalLog } from '../../src/webhook/refusal-log.ts';
import { captureLog } from '../support/captured-log.ts';

function setUp() {
  const { logger, lines } = captureLog('debug');
  const clock = { time: 1_000_000, now() { return this.time; } };
  const log = createRefusalLog({ logger, clock, windowMs: 60_000 });
  return { lines, clock, log };
}

const wrongToken = { reason: 'wrong token', client: '203.0.113.7', status: 401 };

describe('the refused-webhook log', () => {
  it('logs the first refusal at once, at warn, with reason and address', () => {
    const { lines, log } = setUp();
    log.record(wrongToken);
    expect(lines).toEqual([expect.objectContaining({ level: 40, msg: '[WaVoIP Webhook] Refused a webhook from 203.0.113.7 (401): wrong token', client: '203.0.113.7' })]);
  });

  it('folds repeats of one reason from one address into one line a minute, with a count', () => {
    const { lines, clock, log } = setUp();
    for (let index = 0; index < 50; index++) log.record(wrongToken);
    expect(lines).toHaveLength(1);
    clock.time += 59_999;
    log.flush();
    expect(lines).toHaveLength(1);
    clock.time += 1;
    log.flush();
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ level: 40, count: 49, msg: '[WaVoIP Webhook] Refused 49 more webhooks from 203.0.113.7 in the last 1m: wrong token' });

    // While they go on: still one line a minute, never a line per refusal.
    for (let index = 0; index < 10; index++) log.record(wrongToken);
    clock.time += 60_000;
    log.record(wrongToken);
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatchObject({ count: 10 });

    // A quiet minute closes the count; the next refusal is logged at once again.
    clock.time += 60_000;
    log.flush();
    expect(lines).toHaveLength(4);
    expect(lines[3]).toMatchObject({ count: 1 });
    clock.time += 60_000;
    log.flush();
    expect(lines).toHaveLength(4);
    log.record(wrongToken);
    expect(lines).toHaveLength(5);
    expect(lines[4]?.msg).toBe('[WaVoIP Webhook] Refused a webhook from 203.0.113.7 (401): wrong token');
  });

  it('counts each reason and each address apart', () => {
    const { lines, log } = setUp();
    log.record(wrongToken);
    log.record({ ...wrongToken, client: '198.51.100.1' });
    log.record({ reason: 'body is not valid JSON', client: '203.0.113.7', status: 400 });
    log.record(wrongToken);
    expect(lines.map((line) => line.msg)).toEqual([
      '[WaVoIP Webhook] Refused a webhook from 203.0.113.7 (401): wrong token',
      '[WaVoIP Webhook] Refused a webhook from 198.51.100.1 (401): wrong token',
      '[WaVoIP Webhook] Refused a webhook from 203.0.113.7 (400): body is not valid JSON',
    ]);
  });

  it('logs the counts still open when it stops, so none is lost', () => {
    const { lines, log } = setUp();
    log.record(wrongToken);
    log.record(wrongToken);
    log.record(wrongToken);
    log.stop();
    expect(lines.at(-1)).toMatchObject({ count: 2 });
  });
});
