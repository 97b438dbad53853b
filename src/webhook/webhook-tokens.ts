import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../clock.ts';
import type { DatabaseConfig } from '../config/config.ts';
import type { Db } from '../db/database.ts';
import { createDatabaseSignal } from '../db/database-signal.ts';
import { insertWebhookToken, listWebhookTokens, revokeWebhookToken, type StoredWebhookToken } from '../db/webhook-tokens-repository.ts';
import { coerceError } from '../errors.ts';
import { createPeriodicTask } from '../jobs/periodic.ts';
import type { Logger } from '../log/logger.ts';

/** 1 to 64 letters, digits, spaces, dots, underscores or dashes, not starting or ending with a space. */
export const TENANT_LABEL_PATTERN = /^[A-Za-z0-9._-](?:[A-Za-z0-9 ._-]{0,62}[A-Za-z0-9._-])?$/;
export const TENANT_LABEL_RULE = '1 to 64 letters, digits, spaces, dots, underscores or dashes, not starting or ending with a space';

/** Other replicas may have created or revoked tokens and their notification been lost: looked at this often too. */
const REFRESH_INTERVAL_MS = 30_000;

export interface WebhookTokenMatch {
  id: string;
  label: string;
  revokedAt: number | null;
}

/**
 * sha256 is enough for a token of 256 random bits: nothing can be guessed from its hash, and a
 * slow hash would cost every webhook for nothing. A hex digest is what the table keeps.
 */
function tokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/**
 * The webhook tokens of device groups (tenants). Intake looks a presented token up in memory,
 * by its hash, without a database round trip; the table is read again whenever a token is
 * created or revoked: at once by this process, on notification by the other replicas of a
 * PostgreSQL fleet, and every 30 s by each in case a notification was lost.
 */
export function createWebhookTokens(deps: { db: Db; database: DatabaseConfig; clock: Clock; logger: Logger }) {
  const { db, clock, logger } = deps;
  let byHash = new Map<string, WebhookTokenMatch>();
  let loading: Promise<void> = Promise.resolve();

  /** Serialised: a slower earlier read must never overwrite a later one. */
  function reload(): Promise<void> {
    loading = loading.catch(() => {}).then(async () => {
      const tokens = await listWebhookTokens(db);
      byHash = new Map(tokens.map((token) => [token.tokenSha256, { id: token.id, label: token.label, revokedAt: token.revokedAt }]));
    });
    return loading;
  }

  const signal = createDatabaseSignal({
    ...deps,
    channel: 'wavoip_recordings_webhook_tokens',
    onAnnounced: () => void reload().catch((caught: unknown) => warnNotReloaded(coerceError(caught))),
    messages: {
      regained: '[WaVoIP Webhook] Listening for webhook token changes again',
      lost: '[WaVoIP Webhook] Lost the database notification channel; listening again in {delay} (token changes by other replicas are still read every 30s)',
    },
  });
  const refresher = createPeriodicTask(() => reload(), REFRESH_INTERVAL_MS, warnNotReloaded);

  function warnNotReloaded(error: Error): void {
    logger.warn({ err: error }, `[WaVoIP Webhook] Could not read the webhook tokens (${error.message}); the ones read last are used`);
  }

  /**
   * Stored already: a reload that fails now must not fail the request (a new token would be lost
   * unseen, a revocation look undone). The periodic refresh takes the change in meanwhile.
   */
  async function changed(): Promise<void> {
    signal.announce();
    await reload().catch((caught: unknown) =>
      logger.warn({ err: coerceError(caught) }, `[WaVoIP Webhook] Could not reload the webhook tokens now; the change applies at the next refresh`),
    );
  }

  return {
    /** Reads the tokens; before the first webhook is taken. */
    async start(): Promise<void> {
      await reload();
      refresher.start();
    },
    /**
     * The token a webhook presented, revoked or not, or null when it is none of these. The map
     * lookup is by hash: its timing says nothing about a token that is not known.
     */
    match(presented: unknown): WebhookTokenMatch | null {
      if (typeof presented !== 'string' || byHash.size === 0) return null;
      return byHash.get(tokenHash(presented)) ?? null;
    },
    /** The token itself is returned this once, and never kept. */
    async create(label: string): Promise<{ stored: StoredWebhookToken; token: string }> {
      const token = randomBytes(32).toString('base64url');
      const stored = { id: randomBytes(6).toString('hex'), label, tokenSha256: tokenHash(token), createdAt: clock.now(), revokedAt: null };
      await insertWebhookToken(db, stored);
      await changed();
      return { stored, token };
    },
    list: () => listWebhookTokens(db),
    async revoke(id: string): Promise<StoredWebhookToken | null> {
      const revoked = await revokeWebhookToken(db, id, clock.now());
      if (revoked !== null) await changed();
      return revoked;
    },
    async stop(): Promise<void> {
      await Promise.all([refresher.stop(), signal.close()]);
    },
  };
}

export type WebhookTokens = ReturnType<typeof createWebhookTokens>;
