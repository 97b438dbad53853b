import { z } from 'zod';

/**
 * The CHATWOOT_* settings, part of config.ts's schema (kept here so that file stays readable).
 * All four of URL, token, account and inbox, or none: Chatwoot delivery is then off.
 */
export interface ChatwootConfig {
  /** An http(s) origin (with an optional path prefix), no trailing slash. */
  url: string;
  /** An administrator's (or agent's) access token: only ever sent in a request header. */
  token: string;
  accountId: number;
  inboxId: number;
  /** WaVoIP device (id_session) → inbox id; other devices use `inboxId`. */
  inboxByDevice: ReadonlyMap<string, number>;
  /** `private`: every message a private note; `api`: incoming/outgoing by call direction, in an API inbox only. */
  messageMode: 'private' | 'api';
  language: 'en' | 'pt-BR';
}

const REQUIRED = ['CHATWOOT_URL', 'CHATWOOT_API_TOKEN', 'CHATWOOT_ACCOUNT_ID', 'CHATWOOT_INBOX_ID'] as const;

export const CHATWOOT_VARIABLES = {
  CHATWOOT_URL: z
    .string()
    .trim()
    .refine((text) => /^https?:\/\/[^/?#@\s]+(\/[^?#\s]*)?$/.test(text) && URL.canParse(text), 'must be the http(s) address of your Chatwoot, such as https://chat.example.com')
    .transform((text) => text.replace(/\/+$/, ''))
    .optional(),
  CHATWOOT_API_TOKEN: z
    .string()
    .trim()
    .regex(/^[\x21-\x7e]+$/, "must be an access token (Chatwoot: Profile settings → Access Token), without spaces")
    .optional(),
  CHATWOOT_ACCOUNT_ID: z.string().regex(/^[1-9]\d{0,9}$/, 'must be the account number from Chatwoot URLs (…/app/accounts/<id>/…)').transform(Number).optional(),
  CHATWOOT_INBOX_ID: z.string().regex(/^[1-9]\d{0,9}$/, 'must be the inbox number (Settings → Inboxes → the inbox: …/inboxes/<id>)').transform(Number).optional(),
  CHATWOOT_INBOX_BY_DEVICE: z
    .string()
    .optional()
    .transform((text, ctx) => {
      const map = new Map<string, number>();
      for (const entry of (text ?? '').split(',').map((each) => each.trim()).filter((each) => each !== '')) {
        const match = /^([^:\s]+):([1-9]\d{0,9})$/.exec(entry);
        if (match === null || map.has(match[1] as string)) {
          const why = match === null ? `"${entry}" is not device:inbox` : `device ${match[1]} is listed twice`;
          ctx.addIssue({ code: 'custom', message: `${why}; list WaVoIP device ids (id_session) and inbox ids, such as 8758847:3,8758848:4` });
          return z.NEVER;
        }
        map.set(match[1] as string, Number(match[2]));
      }
      return map as ReadonlyMap<string, number>;
    }),
  CHATWOOT_MESSAGE_MODE: z.enum(['private', 'api'], { error: 'must be private (every message a private note) or api (an API-channel inbox)' }).default('private'),
  CHATWOOT_LANGUAGE: z.enum(['en', 'pt-BR'], { error: 'must be en or pt-BR' }).default('en'),
};

type ChatwootSettings = z.infer<z.ZodObject<typeof CHATWOOT_VARIABLES>>;

/** Each of the four that is missing while others are set, with why. */
export function missingChatwootSettings(settings: ChatwootSettings): [variable: string, message: string][] {
  const set = REQUIRED.filter((variable) => settings[variable] !== undefined);
  if (set.length === 0 || set.length === REQUIRED.length) return [];
  return REQUIRED.filter((variable) => settings[variable] === undefined).map((variable) => [
    variable,
    `must be set too: Chatwoot delivery needs all of ${REQUIRED.join(', ')} (or none of them, to leave it off)`,
  ]);
}

export function chatwootConfig(settings: ChatwootSettings): ChatwootConfig | null {
  const { CHATWOOT_URL: url, CHATWOOT_API_TOKEN: token, CHATWOOT_ACCOUNT_ID: accountId, CHATWOOT_INBOX_ID: inboxId } = settings;
  // missingChatwootSettings has refused a partial set: either all four are here, or Chatwoot is off.
  if (url === undefined || token === undefined || accountId === undefined || inboxId === undefined) return null;
  return {
    url,
    token,
    accountId,
    inboxId,
    inboxByDevice: settings.CHATWOOT_INBOX_BY_DEVICE,
    messageMode: settings.CHATWOOT_MESSAGE_MODE,
    language: settings.CHATWOOT_LANGUAGE,
  };
}
