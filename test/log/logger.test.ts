import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/logger.ts';

function capture(format: 'pretty' | 'json') {
  let output = '';
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      output += chunk.toString('utf8');
      done();
    },
  });
  const logger = createLogger({ logFormat: format, logLevel: 'info' }, sink);
  return { logger, output: () => output };
}

describe('createLogger', () => {
  it('writes one human-readable line per event by default, the message first and the details after it', () => {
    const { logger, output } = capture('pretty');
    logger.info({ call_id: '123456' }, '[WaVoIP Webhook] Recording READY for call 123456');
    logger.debug('not at info level');
    const lines = output().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: \[WaVoIP Webhook\] Recording READY for call 123456 \{"call_id":"123456"\}$/);
  });

  it('writes JSON lines with LOG_FORMAT=json', () => {
    const { logger, output } = capture('json');
    logger.warn({ call_id: 'x' }, 'something');
    expect(JSON.parse(output())).toMatchObject({ level: 40, msg: 'something', call_id: 'x', time: expect.any(Number) });
  });
});
