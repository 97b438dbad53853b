import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readMultipart } from './fake-chatwoot/multipart.ts';
import type { ReceivedFile } from './fake-chatwoot/multipart.ts';
import { ChatwootFailure, couldNotCreate, FakeChatwootState, notFound } from './fake-chatwoot/state.ts';
import type { FakeContact, FakeConversation, FakeInbox, FakeMessage, InboxChannel } from './fake-chatwoot/state.ts';

export type { FakeAttachment, FakeContact, FakeConversation, FakeInbox, FakeMessage } from './fake-chatwoot/state.ts';
export { fileTypeFor } from './fake-chatwoot/state.ts';

/**
 * A loopback Chatwoot Application API, written from Chatwoot's sources and refusing what the real
 * one refuses (token, account membership, E.164, a taken phone, incoming messages outside API
 * inboxes, rate limits), with faults a delivery client must survive. Routes are named by
 * method and path under the account, e.g. 'POST /conversations/:id/messages'.
 */
export type FakeChatwootRoute =
  | 'GET /inboxes/:id'
  | 'GET /contacts/search'
  | 'POST /contacts/filter'
  | 'POST /contacts'
  | 'GET /contacts/:id'
  | 'GET /contacts/:id/conversations'
  | 'POST /conversations'
  | 'GET /conversations/:id/messages'
  | 'POST /conversations/:id/messages';

type Fault =
  | { kind: 'status'; status: number; body?: string; headers?: Record<string, string> }
  | { kind: 'reset' }
  /** Commits the request, then destroys the socket instead of answering. */
  | { kind: 'lose-answer' }
  /** Commits the request, then waits `ms` before answering (a client killed meanwhile never hears). */
  | { kind: 'hold-answer'; ms: number }
  | { kind: 'delay'; ms: number }
  /** Waits until every request sharing this barrier has arrived, then all go on together. */
  | { kind: 'barrier'; barrier: Barrier };

interface Barrier {
  waiting: number;
  released: Promise<void>;
  release: () => void;
}

export interface FakeChatwootOptions {
  /** rack_attack.rb: 3,000 requests a minute per IP, 100 contact searches a minute per account. */
  rateLimit?: { periodMs?: number; requestsPerPeriod?: number; searchesPerPeriod?: number };
  /** Every request waits this long before it is handled: a Chatwoot with a pace of its own. */
  latencyMs?: number;
}

interface FakeUser {
  token: string;
  kind: 'user' | 'bot';
  accountIds: number[];
}

const ROUTES: { route: FakeChatwootRoute; method: string; pattern: RegExp }[] = [
  { route: 'GET /inboxes/:id', method: 'GET', pattern: /^\/inboxes\/(\d+)$/ },
  { route: 'GET /contacts/search', method: 'GET', pattern: /^\/contacts\/search$/ },
  { route: 'POST /contacts/filter', method: 'POST', pattern: /^\/contacts\/filter$/ },
  { route: 'POST /contacts', method: 'POST', pattern: /^\/contacts$/ },
  { route: 'GET /contacts/:id', method: 'GET', pattern: /^\/contacts\/(\d+)$/ },
  { route: 'GET /contacts/:id/conversations', method: 'GET', pattern: /^\/contacts\/(\d+)\/conversations$/ },
  { route: 'POST /conversations', method: 'POST', pattern: /^\/conversations$/ },
  { route: 'GET /conversations/:id/messages', method: 'GET', pattern: /^\/conversations\/(\d+)\/messages$/ },
  { route: 'POST /conversations/:id/messages', method: 'POST', pattern: /^\/conversations\/(\d+)\/messages$/ },
];
/** access_token_auth_helper.rb: BOT_ACCESSIBLE_ENDPOINTS. */
const BOT_ROUTES: ReadonlySet<FakeChatwootRoute> = new Set(['POST /conversations', 'POST /conversations/:id/messages']);
const SEARCH_PAGE = 15; // contacts_controller.rb RESULTS_PER_PAGE

export async function startFakeChatwoot(options: FakeChatwootOptions = {}) {
  const state = new FakeChatwootState();
  const uploads = mkdtempSync(join(tmpdir(), 'fake-chatwoot-'));
  // Not 1, so that a client which assumes the first account is caught.
  const accountIds = [7];
  const users: FakeUser[] = [{ token: randomBytes(12).toString('hex'), kind: 'user', accountIds: [7] }];
  const faults = new Map<FakeChatwootRoute, Fault[]>();
  const counts = new Map<string, number>();
  const timers = new Set<NodeJS.Timeout>();
  const limits = { periodMs: 60_000, requestsPerPeriod: 3000, searchesPerPeriod: 100, ...options.rateLimit };
  const windows = new Map<string, number>();

  const queueFault = (route: FakeChatwootRoute, fault: Fault, times: number) =>
    faults.set(route, [...(faults.get(route) ?? []), ...Array.from({ length: times }, () => fault)]);

  /** Rack::Attack counts fixed windows; a throttled request gets its default responder: no Retry-After. */
  const throttled = (key: string, limit: number): boolean => {
    const windowKey = `${key}:${Math.floor(Date.now() / limits.periodMs)}`;
    const count = (windows.get(windowKey) ?? 0) + 1;
    windows.set(windowKey, count);
    return count > limit;
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: String(error) });
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const scoped = /^\/api\/v1\/accounts\/(\d+)(\/.*)$/.exec(url.pathname);
    const match = scoped ? ROUTES.find((r) => r.method === req.method && r.pattern.test(scoped[2] as string)) : undefined;
    const routeKey = match?.route ?? `${req.method} ${url.pathname}`;
    counts.set(routeKey, (counts.get(routeKey) ?? 0) + 1);

    const fault = match ? faults.get(match.route)?.shift() : undefined;
    if (fault?.kind === 'reset') return void req.socket.resetAndDestroy();
    if (fault?.kind === 'status') {
      req.resume();
      res.writeHead(fault.status, { 'content-type': 'text/html', ...fault.headers });
      return void res.end(fault.body ?? `<html><body>We're sorry, but something went wrong (${fault.status}).</body></html>`);
    }
    if (fault?.kind === 'barrier') {
      fault.barrier.waiting -= 1;
      if (fault.barrier.waiting === 0) fault.barrier.release();
      await fault.barrier.released;
    }
    const delayMs = (fault?.kind === 'delay' ? fault.ms : 0) + (options.latencyMs ?? 0);
    if (delayMs > 0) await new Promise<void>((resolve) => timers.add(setTimeout(resolve, delayMs)));

    const searchAccount = /^\/api\/v1\/accounts\/(\d+)\/contacts\/search/.exec(url.pathname)?.[1];
    if (throttled('req/ip', limits.requestsPerPeriod) || (searchAccount !== undefined && throttled(`search/${searchAccount}`, limits.searchesPerPeriod))) {
      req.resume();
      res.writeHead(429, { 'content-type': 'text/plain' });
      return void res.end('Retry later\n');
    }
    if (!scoped || !match) {
      req.resume();
      res.writeHead(404, { 'content-type': 'text/html' });
      return void res.end("<html><body>The page you were looking for doesn't exist.</body></html>");
    }

    let files: ReceivedFile[] = [];
    try {
      const accountId = authenticate(req, match.route, Number(scoped[1]));
      const params: Record<string, unknown> = Object.fromEntries(url.searchParams);
      const body = await readBody(req);
      Object.assign(params, body.params);
      files = body.files;
      const id = (match.pattern.exec(scoped[2] as string) ?? [])[1];
      const answer = route(match.route, accountId, id, params, files);
      files = [];
      if (fault?.kind === 'lose-answer') return void req.socket.resetAndDestroy();
      if (fault?.kind === 'hold-answer') await new Promise<void>((resolve) => timers.add(setTimeout(resolve, fault.ms)));
      if (res.destroyed) return;
      sendJson(res, 200, answer);
    } catch (error) {
      req.resume();
      if (!(error instanceof ChatwootFailure)) throw error;
      sendJson(res, error.status, error.body);
    } finally {
      for (const file of files) rmSync(file.path, { force: true });
    }
  }

  /** base_controller.rb, access_token_auth_helper.rb, accounts/base_controller.rb, in their order. */
  function authenticate(req: IncomingMessage, route: FakeChatwootRoute, accountId: number): number {
    const header = req.headers.api_access_token ?? req.headers['api-access-token'];
    const token = Array.isArray(header) ? header[0] : header;
    // devise_token_auth's answer when no token header is there at all.
    if (!token) throw new ChatwootFailure(401, { errors: ['You need to sign in or sign up before continuing.'] });
    const user = users.find((candidate) => candidate.token === token);
    if (!user) throw new ChatwootFailure(401, { error: 'Invalid Access Token' });
    if (user.kind === 'bot' && !BOT_ROUTES.has(route)) {
      throw new ChatwootFailure(401, { error: 'Access to this endpoint is not authorized for bots' });
    }
    if (!accountIds.includes(accountId)) throw notFound();
    if (!user.accountIds.includes(accountId)) throw new ChatwootFailure(401, { error: 'You are not authorized to access this account' });
    return accountId;
  }

  async function readBody(req: IncomingMessage): Promise<{ params: Record<string, unknown>; files: ReceivedFile[] }> {
    const type = req.headers['content-type'] ?? '';
    if (type.startsWith('multipart/form-data')) {
      const { fields, files } = await readMultipart(req, type, uploads).catch(() => {
        throw new ChatwootFailure(400, { error: 'Invalid multipart body' });
      });
      const params: Record<string, unknown> = {};
      for (const [name, value] of fields) assignFormField(params, name, value);
      if (files.some((file) => file.field === 'attachments[]')) params.attachments ??= [];
      return { params, files: files.filter((file) => file.field === 'attachments[]') };
    }
    const chunks: Buffer[] = [];
    for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
    const text = Buffer.concat(chunks).toString('utf8');
    if (text.trim() === '' || !type.includes('json')) return { params: {}, files: [] };
    try {
      const parsed: unknown = JSON.parse(text);
      return { params: typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : {}, files: [] };
    } catch {
      // ActionDispatch::Http::Parameters::ParseError
      throw new ChatwootFailure(400, { error: 'Invalid JSON body' });
    }
  }

  function route(route: FakeChatwootRoute, accountId: number, id: string | undefined, params: Record<string, unknown>, files: ReceivedFile[]): unknown {
    switch (route) {
      case 'GET /inboxes/:id':
        // inboxes_controller.rb#show renders api/v1/models/_inbox.json.jbuilder.
        return state.inboxJson(state.findInbox(accountId, id).id);
      case 'GET /contacts/search':
        return searchContacts(accountId, params);
      case 'POST /contacts/filter':
        return filterContacts(accountId, params);
      case 'POST /contacts': {
        const { contact, inbox } = state.createContact(accountId, params);
        return { payload: { contact: state.contactJson(contact), contact_inbox: { inbox: inbox ? state.inboxJson(inbox.id) : null, source_id: null } } };
      }
      case 'GET /contacts/:id':
        return { payload: state.contactJson(state.findContact(accountId, id)) };
      case 'GET /contacts/:id/conversations': {
        // contacts/conversations_controller.rb: newest first, at most 20.
        const contact = state.findContact(accountId, id);
        const list = state.conversations.filter((c) => c.accountId === accountId && c.contactId === contact.id).sort((a, b) => b.id - a.id);
        return { payload: list.slice(0, 20).map((conversation) => state.conversationJson(conversation)) };
      }
      case 'POST /conversations': {
        const inbox = params.inbox_id === undefined ? undefined : state.findInbox(accountId, params.inbox_id);
        const contact = params.contact_id === undefined ? undefined : state.findContact(accountId, params.contact_id);
        // Without both, Chatwoot looks the contact inbox up by source_id, which we never send.
        if (!inbox || !contact) throw notFound();
        return state.conversationJson(state.createConversation(accountId, inbox, contact, params.status));
      }
      case 'GET /conversations/:id/messages':
        return listMessages(state.findConversation(accountId, id), params);
      case 'POST /conversations/:id/messages': {
        const conversation = state.findConversation(accountId, id);
        return state.messageJson(state.createMessage(conversation, params, files));
      }
    }
  }

  /** contacts_controller.rb#search: a substring match over name, email, phone and identifier, 15 a page. */
  function searchContacts(accountId: number, params: Record<string, unknown>) {
    const q = typeof params.q === 'string' ? params.q.trim() : '';
    if (q === '') throw couldNotCreate('Specify search string with parameter q');
    const lower = q.toLowerCase();
    const hits = state.contacts.filter(
      (c) =>
        c.accountId === accountId &&
        ([c.name, c.email, c.phoneNumber].some((field) => field?.toLowerCase().includes(lower)) ||
          c.identifier?.includes(q) === true ||
          (/^\d+$/.test(q) && c.id === Number(q))),
    );
    const page = Math.max(1, Number(params.page ?? 1) || 1);
    const slice = hits.slice((page - 1) * SEARCH_PAGE, page * SEARCH_PAGE);
    return {
      meta: { count: slice.length, current_page: page, has_more: hits.length > page * SEARCH_PAGE },
      payload: slice.map((contact) => state.contactJson(contact)),
    };
  }

  /**
   * contacts/filter_service.rb: conditions joined by each one's query_operator; for phone_number
   * the value gets a '+' put in front of it (so send it without one).
   */
  function filterContacts(accountId: number, params: Record<string, unknown>) {
    const conditions = Array.isArray(params.payload) ? (params.payload as Record<string, unknown>[]) : [];
    const tests = conditions.map((condition, index) => {
      const key = String(condition.attribute_key);
      const field = ({ name: 'name', email: 'email', phone_number: 'phoneNumber', identifier: 'identifier' } as const)[key as 'name'];
      if (!field) throw couldNotCreate(`Invalid attribute key - [${key}]`);
      const operator = String(condition.filter_operator);
      if (!['equal_to', 'not_equal_to', 'contains', 'does_not_contain'].includes(operator)) {
        throw couldNotCreate(`Invalid operator. The allowed operators for ${key} are [equal_to,not_equal_to,contains,does_not_contain].`);
      }
      const joiner = condition.query_operator;
      if (index < conditions.length - 1 && !['and', 'or'].includes(String(joiner).toLowerCase())) {
        throw couldNotCreate('Invalid query operator. The allowed query operators are [and,or].');
      }
      const raw = String((condition.values as unknown[] | undefined)?.[0] ?? '');
      const value = key === 'phone_number' ? `+${raw}` : raw.toLowerCase();
      const test = (contact: FakeContact): boolean => {
        const actual = (key === 'phone_number' ? contact[field] : contact[field]?.toLowerCase()) ?? null;
        if (operator === 'equal_to') return actual === value;
        if (operator === 'not_equal_to') return actual !== value;
        const contains = actual?.includes(value) === true;
        return operator === 'contains' ? contains : !contains;
      };
      return { test, joiner: String(joiner ?? '').toLowerCase() };
    });
    if (tests.length === 0) throw couldNotCreate('Invalid attribute key - []');
    const hits = state.contacts.filter((contact) => {
      if (contact.accountId !== accountId) return false;
      let result = (tests[0] as (typeof tests)[0]).test(contact);
      for (let i = 1; i < tests.length; i++) {
        const next = (tests[i] as (typeof tests)[0]).test(contact);
        result = (tests[i - 1] as (typeof tests)[0]).joiner === 'or' ? result || next : result && next;
      }
      return result;
    });
    const page = Math.max(1, Number(params.page ?? 1) || 1);
    return {
      meta: { count: hits.length, current_page: page },
      payload: hits.slice((page - 1) * SEARCH_PAGE, page * SEARCH_PAGE).map((contact) => state.contactJson(contact)),
    };
  }

  /** message_finder.rb: latest 20; before=id: the 20 before it; after=id: up to 100 after it; oldest first. */
  function listMessages(conversation: FakeConversation, params: Record<string, unknown>) {
    const all = state.conversationMessages(conversation);
    const after = params.after !== undefined && params.after !== '' ? Number(params.after) : undefined;
    const before = params.before !== undefined && params.before !== '' ? Number(params.before) : undefined;
    let chosen: FakeMessage[];
    if (after !== undefined && before !== undefined) chosen = all.filter((m) => m.id >= after && m.id < before).slice(0, 1000);
    else if (before !== undefined) chosen = all.filter((m) => m.id < before).slice(-20);
    else if (after !== undefined) chosen = all.filter((m) => m.id > after).slice(0, 100);
    else chosen = all.slice(-20);
    const contact = state.contacts.find((c) => c.id === conversation.contactId) as FakeContact;
    return {
      meta: { labels: [], additional_attributes: {}, contact: { id: contact.id, name: contact.name, phone_number: contact.phoneNumber, type: 'contact' } },
      payload: chosen.map((message) => state.messageJson(message)),
    };
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const defaultAccount = 7;
  const apiInbox = state.addInbox(defaultAccount, 'api', 'Calls (API)');
  const whatsappInbox = state.addInbox(defaultAccount, 'whatsapp', 'WhatsApp');
  const displayIdOf = (conversation: FakeConversation | number) => (typeof conversation === 'number' ? conversation : conversation.displayId);

  return {
    /** `http://127.0.0.1:<port>`: what CHATWOOT_URL would be. */
    origin,
    accountId: defaultAccount,
    /** An administrator's access token in the account. */
    token: (users[0] as FakeUser).token,
    apiInboxId: apiInbox.id,
    whatsappInboxId: whatsappInbox.id,

    /** Another account with its own API inbox; the default token's user is not in it. */
    addAccount(): { accountId: number; apiInboxId: number } {
      const accountId = Math.max(...accountIds) + 1;
      accountIds.push(accountId);
      return { accountId, apiInboxId: state.addInbox(accountId, 'api').id };
    },
    /** A new access token: a user (agent) of the given accounts, or an agent bot's. */
    addToken(kind: 'user' | 'bot', accounts: number[] = [defaultAccount]): string {
      const token = randomBytes(12).toString('hex');
      users.push({ token, kind, accountIds: accounts });
      return token;
    },
    addInbox(channel: InboxChannel, accountId = defaultAccount): FakeInbox {
      return state.addInbox(accountId, channel);
    },

    /** Seeding through the same rules as the API (a bad phone throws). */
    seedContact(fields: { name?: string; phone?: string; inboxId?: number; accountId?: number }): FakeContact {
      const { name = 'Seeded', phone, inboxId, accountId = defaultAccount } = fields;
      return state.createContact(accountId, { name, phone_number: phone, inbox_id: inboxId }).contact;
    },
    seedConversation(contactId: number, inboxId: number, accountId = defaultAccount): FakeConversation {
      return state.createConversation(accountId, state.findInbox(accountId, inboxId), state.findContact(accountId, contactId));
    },
    seedMessage(conversation: FakeConversation, fields: { content?: string; sourceId?: string; messageType?: string; private?: boolean } = {}): FakeMessage {
      const params = { content: fields.content ?? 'seeded', source_id: fields.sourceId, message_type: fields.messageType ?? 'outgoing', private: fields.private };
      return state.createMessage(conversation, params, []);
    },
    deleteContact(contactId: number): void {
      const index = state.contacts.findIndex((contact) => contact.id === contactId);
      if (index !== -1) state.contacts.splice(index, 1);
    },
    deleteConversation(conversation: FakeConversation): void {
      state.conversations.splice(state.conversations.indexOf(conversation), 1);
    },

    contacts: (accountId = defaultAccount): FakeContact[] => state.contacts.filter((c) => c.accountId === accountId),
    conversations: (accountId = defaultAccount): FakeConversation[] => state.conversations.filter((c) => c.accountId === accountId),
    conversation: (displayId: number, accountId = defaultAccount): FakeConversation => state.findConversation(accountId, displayId),
    /** A conversation's messages, oldest first, with their attachments' bytes, sha256 and declared type. */
    messages(conversation: FakeConversation | number, accountId = defaultAccount): FakeMessage[] {
      return state.conversationMessages(state.findConversation(accountId, displayIdOf(conversation)));
    },
    /** How many messages the account holds: cheap enough to poll while thousands arrive. */
    messageCount: (accountId = defaultAccount): number => state.messages.reduce((count, message) => count + (message.accountId === accountId ? 1 : 0), 0),
    /** How many requests reached a route (throttled and faulted ones included). */
    requests: (route: FakeChatwootRoute): number => counts.get(route) ?? 0,

    /** The next `times` requests to `route` get `status` (default a Rails 500 page). */
    failNext(route: FakeChatwootRoute, times = 1, status = 500, extra: { body?: string; headers?: Record<string, string> } = {}): void {
      queueFault(route, { kind: 'status', status, ...extra }, times);
    },
    /** The next `times` requests to `route` have their connection reset (TCP RST) on arrival. */
    resetNext: (route: FakeChatwootRoute, times = 1) => queueFault(route, { kind: 'reset' }, times),
    /** The next `times` requests to `route` are carried out, then the connection is reset instead of answered. */
    loseAnswerNext: (route: FakeChatwootRoute, times = 1) => queueFault(route, { kind: 'lose-answer' }, times),
    /** The next `times` requests to `route` are carried out, then answered only after `ms`. */
    holdAnswerNext: (route: FakeChatwootRoute, ms: number, times = 1) => queueFault(route, { kind: 'hold-answer', ms }, times),
    /** The next `times` requests to `route` wait `ms` before being handled. */
    delayNext: (route: FakeChatwootRoute, ms: number, times = 1) => queueFault(route, { kind: 'delay', ms }, times),
    /** The next `count` requests to the route are answered only once all of them have arrived. */
    gatherNext: (route: FakeChatwootRoute, count: number) => {
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      queueFault(route, { kind: 'barrier', barrier: { waiting: count, released, release } }, count);
    },

    close: () =>
      new Promise<void>((resolve) => {
        for (const timer of timers) clearTimeout(timer);
        server.closeAllConnections();
        server.close(() => {
          rmSync(uploads, { recursive: true, force: true });
          resolve();
        });
      }),
  };
}

export type FakeChatwoot = Awaited<ReturnType<typeof startFakeChatwoot>>;

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Rails' bracket notation: `a` → value, `a[]` → array, `a[b]` → nested key. */
function assignFormField(params: Record<string, unknown>, name: string, value: string): void {
  const nested = /^([^[\]]+)\[([^[\]]*)\]$/.exec(name);
  if (!nested) return void (params[name] = value);
  const [, base, key] = nested as unknown as [string, string, string];
  if (key === '') {
    params[base] = [...((params[base] as unknown[] | undefined) ?? []), value];
    return;
  }
  const object = (typeof params[base] === 'object' && params[base] !== null ? params[base] : {}) as Record<string, unknown>;
  object[key] = value;
  params[base] = object;
}
