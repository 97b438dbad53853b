import type { Selectable } from 'kysely';
import type { DbOrTrx } from './database.ts';
import type { WebhookTokensTable } from './schema.ts';

export interface StoredWebhookToken {
  id: string;
  label: string;
  tokenSha256: string;
  createdAt: number;
  revokedAt: number | null;
}

export async function insertWebhookToken(db: DbOrTrx, token: Omit<StoredWebhookToken, 'revokedAt'>): Promise<void> {
  await db
    .insertInto('webhook_tokens')
    .values({ id: token.id, label: token.label, token_sha256: token.tokenSha256, created_at: token.createdAt, revoked_at: null })
    .execute();
}

/** Every token, revoked ones too (a webhook still using one is logged with its label), newest first. */
export async function listWebhookTokens(db: DbOrTrx): Promise<StoredWebhookToken[]> {
  const rows = await db.selectFrom('webhook_tokens').selectAll().orderBy('created_at', 'desc').orderBy('id').execute();
  return rows.map(toStoredToken);
}

/** Revokes a token once: revoking it again keeps the first time. Null for an unknown id. */
export async function revokeWebhookToken(db: DbOrTrx, id: string, at: number): Promise<StoredWebhookToken | null> {
  if (id.includes('\u0000')) return null;
  await db.updateTable('webhook_tokens').set({ revoked_at: at }).where('id', '=', id).where('revoked_at', 'is', null).execute();
  const row = await db.selectFrom('webhook_tokens').selectAll().where('id', '=', id).executeTakeFirst();
  return row ? toStoredToken(row) : null;
}

function toStoredToken(row: Selectable<WebhookTokensTable>): StoredWebhookToken {
  return { id: row.id, label: row.label, tokenSha256: row.token_sha256, createdAt: row.created_at, revokedAt: row.revoked_at };
}
