import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/log/logger.ts';
import type { LogLine } from './service-harness.ts';

/** The real JSON logger, writing into `lines` (cleared by the caller between tests as needed). */
export function captureLog(level: 'debug' | 'info' | 'warn' = 'debug'): { logger: Logger; lines: LogLine[]; messages: () => string[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  return { logger: createLogger({ logFormat: 'json', logLevel: level }, sink), lines, messages: () => lines.map((line) => line.msg) };
}
