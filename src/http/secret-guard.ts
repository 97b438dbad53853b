import type { FastifyReply } from 'fastify';
import ipaddr from 'ipaddr.js';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import type { Logger } from '../log/logger.ts';
import { secretsMatch } from './secrets.ts';

/** Both how long wrong secrets are counted and how long a lock-out lasts. */
export const SECRET_FAILURE_WINDOW_SECONDS = 60;

type SecretCheck = { result: 'ok' } | { result: 'wrong' } | { result: 'locked-out'; retryAfterSeconds: number };

export interface SecretGuard {
  /**
   * Compares a presented secret in constant time with the expected one, or asks `expected`
   * whether it is one of several, counting wrong ones per client address.
   */
  check(clientIp: string, presented: unknown, expected: string | ((presented: unknown) => boolean)): Promise<SecretCheck>;
}

interface SecretGuardOptions {
  /** AUTH_FAILURE_LIMIT: wrong secrets an address may present within the window. */
  maxFailures: number;
  /**
   * API: while an address is locked out its secret is not even looked at, since answering a
   * right guess differently would let guessing go on. Webhooks: a right secret always passes.
   * WaVoIP sends every device's webhooks from the same few addresses, and one panel left with
   * an old token must not shut out all the others; wrong tokens are still refused, and logged.
   */
  lockOutRightSecrets: boolean;
  /** Named in the lock-out warning: `webhook` or `API`. */
  what: string;
  logger: Logger;
}

/**
 * Slows guessing of a token: after `maxFailures` wrong ones within the window, an address is
 * answered 429 for the window. Counting failures only means a sender with the right token never
 * gets near the limit, unless it shares an address with the guesser, which is why TRUST_PROXY
 * matters behind a load balancer. Per process: each replica keeps its own count.
 */
export function createSecretGuard(options: SecretGuardOptions): SecretGuard {
  const { maxFailures, lockOutRightSecrets, what, logger } = options;
  const failures = new RateLimiterMemory({
    points: maxFailures,
    duration: SECRET_FAILURE_WINDOW_SECONDS,
    blockDuration: SECRET_FAILURE_WINDOW_SECONDS,
  });
  const lockedOut = (msBeforeNext: number): SecretCheck => ({ result: 'locked-out', retryAfterSeconds: Math.max(1, Math.ceil(msBeforeNext / 1000)) });

  return {
    async check(clientIp, presented, expected) {
      const key = clientKey(clientIp);
      if (lockOutRightSecrets) {
        const recorded = await failures.get(key);
        if (recorded !== null && recorded.consumedPoints > maxFailures) return lockedOut(recorded.msBeforeNext);
      }
      if (typeof expected === 'string' ? secretsMatch(presented, expected) : expected(presented)) return { result: 'ok' };
      try {
        await failures.consume(key);
      } catch (limited) {
        if (!(limited instanceof RateLimiterRes)) throw limited;
        if (limited.consumedPoints === maxFailures + 1) {
          logger.warn(
            { client: key },
            `${maxFailures} wrong ${what} tokens from ${key} within ${SECRET_FAILURE_WINDOW_SECONDS}s: refusing its wrong tokens with 429 for ${SECRET_FAILURE_WINDOW_SECONDS}s` +
              (lockOutRightSecrets ? ', and its right ones too' : ''),
          );
        }
        return lockedOut(limited.msBeforeNext);
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
