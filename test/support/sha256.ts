import { createHash } from 'node:crypto';

/** The SHA-256 of `data` in hex, as the service stores and reports it (a string is hashed as UTF-8). */
export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}
