import type { FastifyReply } from 'fastify';
import ipaddr from 'ipaddr.js';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { secretsMatch } from './secrets.ts';

/** Both how long wrong secrets are counted and how long a lock-out lasts. */
export const SECRET_FAILURE_WINDOW_SECONDS = 60;

export type SecretCheck = { result: 'ok' } | { result: 'wrong' } | { result: 'locked-out'; retryAfterSeconds: number };

export interface SecretGuard {
  /**
   * Compares a presented secret in constant time. While the client's address is locked out the
   * secret is not even looked at: answering a right guess differently would let guessing go on.
   */
  check(clientIp: string, presented: unknown, expected: string): Promise<SecretCheck>;
}

/**
 * Slows guessing of the webhook and API tokens: after `maxFailures` (AUTH_FAILURE_LIMIT) wrong
 * ones within the window, an address is refused for the window, whatever it presents. Counting failures only means
 * a sender with the right token never gets near the limit, unless it shares an address with the
 * guesser, which is why TRUST_PROXY matters behind a load balancer.
 */
export function createSecretGuard(maxFailures: number): SecretGuard {
  const failures = new RateLimiterMemory({
    points: maxFailures,
    duration: SECRET_FAILURE_WINDOW_SECONDS,
    blockDuration: SECRET_FAILURE_WINDOW_SECONDS,
  });
  const lockedOut = (msBeforeNext: number): SecretCheck => ({ result: 'locked-out', retryAfterSeconds: Math.max(1, Math.ceil(msBeforeNext / 1000)) });

  return {
    async check(clientIp, presented, expected) {
      const key = clientKey(clientIp);
      const recorded = await failures.get(key);
      if (recorded !== null && recorded.consumedPoints > maxFailures) return lockedOut(recorded.msBeforeNext);
      if (secretsMatch(presented, expected)) return { result: 'ok' };
      try {
        await failures.consume(key);
      } catch (limited) {
        if (limited instanceof RateLimiterRes) return lockedOut(limited.msBeforeNext);
        throw limited;
      }
      return { result: 'wrong' };
    },
  };
}

/** The answer to a refused secret: 401 with what to send, or 429 while the address is locked out. */
export function sendRefusal(reply: FastifyReply, check: Exclude<SecretCheck, { result: 'ok' }>, whatToSend: string): FastifyReply {
  if (check.result === 'locked-out') {
    return reply
      .code(429)
      .header('retry-after', String(check.retryAfterSeconds))
      .send({ error: `too many wrong tokens from your address; try again in ${check.retryAfterSeconds}s` });
  }
  return reply.code(401).send({ error: whatToSend });
}

/** An IPv6 client usually holds a whole /64: counting per address would give it 2^64 tries. */
function clientKey(ip: string): string {
  if (!ipaddr.isValid(ip)) return ip;
  const address = ipaddr.process(ip);
  if (address.kind() === 'ipv4') return address.toString();
  return `${(address as ipaddr.IPv6).toNormalizedString().split(':').slice(0, 4).join(':')}::/64`;
}
