import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Signed, expiring links to a call's recording, for receivers of outbound webhooks: whoever holds
 * the link can download the recording until it expires, with no API token. The token is the call
 * id, the expiry and an HMAC over both, keyed by a key derived from the outbound webhook secret
 * (a receiver that can verify webhooks still cannot forge links: it never sees the derived key).
 */
export interface RecordingLinks {
  /** The absolute URL of the call's recording, valid until `now + ttl`. */
  linkFor(callId: string, now: number): string;
  check(token: string, now: number): { ok: true; callId: string } | { ok: false; reason: 'expired' | 'invalid' };
}

export const RECORDING_LINK_PATH = '/recordings';

/** `baseUrl`: PUBLIC_URL, or the address the service listens on, known once it listens. */
export function createRecordingLinks(input: { secret: string; baseUrl: () => string; ttlMs: number }): RecordingLinks {
  const key = createHmac('sha256', input.secret).update('wavoip-recordings recording links v1').digest();
  const mac = (callId: string, expiresAt: number) => createHmac('sha256', key).update(`${callId}\n${expiresAt}`).digest();
  return {
    linkFor(callId, now) {
      const expiresAt = Math.floor((now + input.ttlMs) / 1000);
      const token = `${Buffer.from(callId).toString('base64url')}.${expiresAt}.${mac(callId, expiresAt).toString('base64url')}`;
      return `${input.baseUrl()}${RECORDING_LINK_PATH}/${token}`;
    },
    check(token, now) {
      const parts = token.split('.');
      if (parts.length !== 3 || !/^\d{1,12}$/.test(parts[1] as string)) return { ok: false, reason: 'invalid' };
      const callId = Buffer.from(parts[0] as string, 'base64url').toString('utf8');
      const expiresAt = Number(parts[1]);
      const given = Buffer.from(parts[2] as string, 'base64url');
      const expected = mac(callId, expiresAt);
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: 'invalid' };
      return expiresAt * 1000 <= now ? { ok: false, reason: 'expired' } : { ok: true, callId };
    },
  };
}
