import { expect } from 'vitest';
import { loadConfig } from '../../src/config/config.ts';
import { AppError } from '../../src/errors.ts';

/** The error loadConfig refuses `env` with; fails the test when it is taken. */
export function configError(env: Record<string, string>): AppError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe('INVALID_CONFIG');
    return error as AppError;
  }
  throw new Error(`expected ${JSON.stringify(env)} to be refused`);
}
