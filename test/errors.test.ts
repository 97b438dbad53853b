import { describe, expect, it } from 'vitest';
import { AppError } from '../src/errors.ts';

describe('AppError codes', () => {
  it('are a closed list: a misspelt code does not compile (checked by tsc --noEmit, part of npm test)', () => {
    // @ts-expect-error 'NOT_FOUDN' is not an ErrorCode; were it accepted, tsc would fail on this unused directive.
    const misspelt = new AppError('typo', { code: 'NOT_FOUDN' });
    const upstream = new AppError('answered 418', { code: 'HTTP_418', statusCode: 502 });
    expect([misspelt.code, upstream.code, upstream.statusCode]).toEqual(['NOT_FOUDN', 'HTTP_418', 502]);
  });
});
