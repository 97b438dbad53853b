import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Constant-time comparison of a presented secret with the expected one. Both are hashed
 * first so that neither the content nor the length of the secret leaks through timing.
 * Anything but a single string (a repeated query parameter arrives as an array) is refused.
 */
export function secretsMatch(presented: unknown, expected: string): boolean {
  if (typeof presented !== 'string') return false;
  const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();
  return timingSafeEqual(digest(presented), digest(expected));
}
