import { openAsBlob } from 'node:fs';
import { FormData, Pool } from 'undici';
import type { Dispatcher } from 'undici';
import { z } from 'zod';
import { AppError } from '../errors.ts';
import { brazilianMobileVariants } from './brazil-phone.ts';
import { chatwootError, ChatwootErrorCode, classifyNetworkError, classifyResponse, invalidAttributes } from './chatwoot-errors.ts';
import type { NotFoundMeans } from './chatwoot-errors.ts';

/**
 * The calls the delivery engine makes to Chatwoot's Application API, one request each (the
 * engine retries, never this client). Every failure is an AppError whose code says what to do
 * next (see chatwoot-errors.ts). The token goes only into a request header, and is cut out of
 * anything an error quotes back.
 */
export interface ChatwootClientOptions {
  /** CHATWOOT_URL: the installation's address, e.g. https://chat.example.com */
  url: string;
  token: string;
  accountId: number;
  timeouts?: Partial<ChatwootTimeouts>;
  /** Connections kept to Chatwoot at most (the engine's concurrency bounds what is used). */
  connections?: number;
}

interface ChatwootTimeouts {
  connectTimeoutMs: number;
  /** Until the answer's headers arrive, counted again whenever the upload makes progress. */
  headersTimeoutMs: number;
  /** Longest silence between two chunks of an answer. */
  bodyTimeoutMs: number;
}

const DEFAULT_CHATWOOT_TIMEOUTS: Readonly<ChatwootTimeouts> = Object.freeze({
  connectTimeoutMs: 10_000,
  // Chatwoot stores an attachment (often to S3) before it answers.
  headersTimeoutMs: 60_000,
  bodyTimeoutMs: 30_000,
});

interface CallOptions {
  signal?: AbortSignal;
}

interface ChatwootContact {
  id: number;
  name: string | null;
  phoneNumber: string | null;
}

interface ChatwootConversation {
  /** The account-scoped display id: the one every URL uses. */
  id: number;
  inboxId: number;
  status: string | null;
  contactId: number | null;
}

interface ChatwootInbox {
  id: number;
  name: string | null;
  /** e.g. `Channel::Api`, `Channel::Whatsapp`. */
  channelType: string;
}

export interface ChatwootMessage {
  id: number;
  conversationId: number;
  /** 0 incoming, 1 outgoing, 2 activity. */
  messageType: number;
  private: boolean;
  sourceId: string | null;
  content: string | null;
  attachments: { id: number; fileType: string; fileSize: number | null }[];
}

export interface ChatwootMessageInput {
  content: string;
  messageType: 'incoming' | 'outgoing';
  /** A private note: seen by agents only, never sent to the customer. */
  private: boolean;
  /** `wavoip:<call>:<kind>`: how a post whose outcome is unknown is found again. */
  sourceId: string;
  contentAttributes?: Record<string, unknown>;
  /** Streamed from disk; `contentType` must be audio/* for Chatwoot to show a player. */
  attachment?: { path: string; contentType: string; fileName: string };
}

export interface ChatwootClient {
  /** The inbox and its kind (a 404 means the inbox id in the settings is wrong: blocked). */
  getInbox(inboxId: number, options?: CallOptions): Promise<ChatwootInbox>;
  /** The contact whose phone is `phone` (E.164) or, for a Brazilian mobile, its other form; null if none. */
  findContactByPhone(phone: string, options?: CallOptions): Promise<ChatwootContact | null>;
  /** Creates the contact; if another delivery created it first, returns that one (`created: false`). */
  createContact(input: { inboxId: number; name: string; phone: string }, options?: CallOptions): Promise<{ contact: ChatwootContact; created: boolean }>;
  /** The contact's newest conversation in the inbox (Chatwoot lists a contact's latest 20), or null. */
  findLatestConversation(contactId: number, inboxId: number, options?: CallOptions): Promise<ChatwootConversation | null>;
  /** Always a new conversation (Chatwoot does not reuse one unless the inbox is locked to one). */
  createConversation(input: { contactId: number; inboxId: number }, options?: CallOptions): Promise<ChatwootConversation>;
  postMessage(conversationId: number, message: ChatwootMessageInput, options?: CallOptions): Promise<ChatwootMessage>;
  /** Looks back through the conversation's latest messages, `maxPages` pages of 20 at most. */
  findMessageBySourceId(conversationId: number, sourceId: string, options?: CallOptions & { maxPages?: number }): Promise<ChatwootMessage | null>;
  close(): Promise<void>;
}

const contactSchema = z.looseObject({ id: z.number().int(), name: z.string().nullish(), phone_number: z.string().nullish() });
const conversationSchema = z.looseObject({
  id: z.number().int(),
  inbox_id: z.number().int(),
  status: z.string().nullish(),
  meta: z.looseObject({ sender: z.looseObject({ id: z.number().int() }).nullish() }).nullish(),
});
const messageSchema = z.looseObject({
  id: z.number().int(),
  conversation_id: z.number().int(),
  message_type: z.number().int(),
  private: z.boolean().nullish(),
  source_id: z.string().nullish(),
  content: z.string().nullish(),
  attachments: z.array(z.looseObject({ id: z.number().int(), file_type: z.string(), file_size: z.number().nullish() })).nullish(),
});
const inboxSchema = z.looseObject({ id: z.number().int(), name: z.string().nullish(), channel_type: z.string() });
const contactListSchema = z.looseObject({ payload: z.array(contactSchema) });
const createdContactSchema = z.looseObject({ payload: z.looseObject({ contact: contactSchema }) });
const conversationListSchema = z.looseObject({ payload: z.array(conversationSchema) });
const messageListSchema = z.looseObject({ payload: z.array(messageSchema) });

/** message_finder.rb answers the latest 20, or the 20 before a message id. */
const MESSAGES_PAGE = 20;
const MAX_ANSWER_BYTES = 8 * 1024 * 1024;

export function createChatwootClient(options: ChatwootClientOptions): ChatwootClient {
  const { connectTimeoutMs, headersTimeoutMs, bodyTimeoutMs } = { ...DEFAULT_CHATWOOT_TIMEOUTS, ...options.timeouts };
  const base = new URL(options.url);
  const prefix = `${base.pathname.replace(/\/+$/, '')}/api/v1/accounts/${options.accountId}`;
  const pool = new Pool(base.origin, {
    connect: { timeout: connectTimeoutMs },
    headersTimeout: headersTimeoutMs,
    bodyTimeout: bodyTimeoutMs,
    connections: options.connections ?? 8,
  });
  const redact = (text: string) => (options.token === '' ? text : text.split(options.token).join('[redacted]'));
  let closing: Promise<void> | undefined;

  interface Call {
    operation: string;
    method: 'GET' | 'POST';
    path: string;
    json?: unknown;
    form?: FormData;
    notFound: NotFoundMeans;
    signal: AbortSignal | undefined;
  }

  /** One request; resolves with any answer that came, rejects only when none did. */
  async function send(call: Call): Promise<{ status: number; headers: Dispatcher.ResponseData['headers']; text: string }> {
    try {
      const response = await pool.request({
        method: call.method,
        path: `${prefix}${call.path}`,
        headers: {
          // Hyphenated: nginx drops headers with underscores by default, and Chatwoot reads both.
          'api-access-token': options.token,
          accept: 'application/json',
          ...(call.json !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        body: call.form ?? (call.json !== undefined ? JSON.stringify(call.json) : undefined),
        signal: call.signal,
      });
      return { status: response.statusCode, headers: response.headers, text: await readLimited(response.body) };
    } catch (error) {
      throw classifyNetworkError(call.operation, error, redact);
    }
  }

  async function requestJson<T>(call: Call, schema: z.ZodType<T>): Promise<T> {
    const response = await send(call);
    if (response.status < 200 || response.status >= 300) throw classifyResponse({ ...call, ...response }, redact);
    return parseAnswer(call.operation, response.text, schema);
  }

  function parseAnswer<T>(operation: string, text: string, schema: z.ZodType<T>): T {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw chatwootError(ChatwootErrorCode.blocked, `${operation} answered 2xx, but not as Chatwoot does: is CHATWOOT_URL Chatwoot's address?`);
    }
    return parsed.data;
  }

  async function getInbox(inboxId: number, { signal }: CallOptions = {}): Promise<ChatwootInbox> {
    const answer = await requestJson({ operation: `looking up inbox ${inboxId}`, method: 'GET', path: `/inboxes/${inboxId}`, notFound: 'blocked', signal }, inboxSchema);
    return { id: answer.id, name: answer.name ?? null, channelType: answer.channel_type };
  }

  async function findContactByPhone(phone: string, { signal }: CallOptions = {}): Promise<ChatwootContact | null> {
    const forms = brazilianMobileVariants(assertE164(phone));
    // The filter puts a '+' in front of the value itself (contacts/filter_service.rb). Unlike
    // search, it matches exactly, takes both forms in one request, and is not throttled per account.
    const payload = forms.map((form, index) => ({
      attribute_key: 'phone_number',
      filter_operator: 'equal_to',
      values: [form.slice(1)],
      query_operator: index < forms.length - 1 ? 'OR' : null,
    }));
    const answer = await requestJson(
      { operation: 'finding the contact by phone', method: 'POST', path: '/contacts/filter', json: { payload }, notFound: 'blocked', signal },
      contactListSchema,
    );
    for (const form of forms) {
      const found = answer.payload.find((contact) => contact.phone_number === form);
      if (found) return toContact(found);
    }
    return null;
  }

  async function createContact(input: { inboxId: number; name: string; phone: string }, { signal }: CallOptions = {}) {
    const call: Call = {
      operation: 'creating the contact',
      method: 'POST',
      path: '/contacts',
      json: { inbox_id: input.inboxId, name: input.name, phone_number: assertE164(input.phone) },
      notFound: 'blocked',
      signal,
    };
    const response = await send(call);
    if (response.status >= 200 && response.status < 300) {
      return { contact: toContact(parseAnswer(call.operation, response.text, createdContactSchema).payload.contact), created: true };
    }
    const failure = classifyResponse({ ...call, ...response }, redact);
    // Another delivery created it between our search and our create ("Phone number has already
    // been taken", in the account's language): the contact is there to be found now.
    if (response.status === 422 && invalidAttributes(response.text).includes('phone_number')) {
      const existing = await findContactByPhone(input.phone, { signal });
      if (existing) return { contact: existing, created: false };
    }
    throw failure;
  }

  async function findLatestConversation(contactId: number, inboxId: number, { signal }: CallOptions = {}) {
    const answer = await requestJson(
      { operation: `listing contact ${contactId}'s conversations`, method: 'GET', path: `/contacts/${contactId}/conversations`, notFound: 'gone', signal },
      conversationListSchema,
    );
    const newest = answer.payload.filter((conversation) => conversation.inbox_id === inboxId).sort((a, b) => b.id - a.id)[0];
    return newest ? toConversation(newest) : null;
  }

  async function createConversation(input: { contactId: number; inboxId: number }, { signal }: CallOptions = {}) {
    const call: Call = {
      operation: 'creating the conversation',
      method: 'POST',
      path: '/conversations',
      json: { inbox_id: input.inboxId, contact_id: input.contactId },
      notFound: 'blocked',
      signal,
    };
    const response = await send(call);
    if (response.status >= 200 && response.status < 300) return toConversation(parseAnswer(call.operation, response.text, conversationSchema));
    if (response.status === 404) {
      // Chatwoot answers the same 404 for a wrong inbox and a deleted contact: ask which.
      const contact = await send({ ...call, operation: `looking up contact ${input.contactId}`, method: 'GET', path: `/contacts/${input.contactId}`, json: undefined });
      if (contact.status === 404) throw classifyResponse({ ...call, ...contact, operation: `looking up contact ${input.contactId}`, notFound: 'gone' }, redact);
    }
    throw classifyResponse({ ...call, ...response }, redact);
  }

  async function postMessage(conversationId: number, message: ChatwootMessageInput, { signal }: CallOptions = {}) {
    const operation = `posting to conversation ${conversationId}`;
    const fields = {
      content: message.content,
      message_type: message.messageType,
      private: message.private,
      source_id: message.sourceId,
      ...(message.contentAttributes ? { content_attributes: message.contentAttributes } : {}),
    };
    const form = message.attachment ? await attachmentForm(operation, fields, message.attachment) : undefined;
    const posted = toMessage(
      await requestJson({ operation, method: 'POST', path: `/conversations/${conversationId}/messages`, json: form ? undefined : fields, form, notFound: 'gone', signal }, messageSchema),
    );
    const fileType = posted.attachments[0]?.fileType;
    if (message.attachment && fileType !== 'audio') {
      throw chatwootError(
        ChatwootErrorCode.notAudio,
        `message ${posted.id} was posted to conversation ${conversationId}, but its attachment is shown as ${fileType ?? 'nothing'}, not audio`,
      );
    }
    return posted;
  }

  async function findMessageBySourceId(conversationId: number, sourceId: string, { signal, maxPages = 5 }: CallOptions & { maxPages?: number } = {}) {
    let before: number | undefined;
    for (let page = 0; page < maxPages; page++) {
      const answer = await requestJson(
        {
          operation: `listing conversation ${conversationId}'s messages`,
          method: 'GET',
          path: `/conversations/${conversationId}/messages${before === undefined ? '' : `?before=${before}`}`,
          notFound: 'gone',
          signal,
        },
        messageListSchema,
      );
      const found = answer.payload.find((message) => message.source_id === sourceId);
      if (found) return toMessage(found);
      if (answer.payload.length < MESSAGES_PAGE) return null;
      before = Math.min(...answer.payload.map((message) => message.id));
    }
    return null;
  }

  return {
    getInbox,
    findContactByPhone,
    createContact,
    findLatestConversation,
    createConversation,
    postMessage,
    findMessageBySourceId,
    close() {
      closing ??= pool.close();
      return closing;
    },
  };
}

/**
 * Multipart with the recording as a file-backed Blob: undici streams it from disk as it sends,
 * and knows its size, so the request has a Content-Length and the file is never whole in memory.
 */
async function attachmentForm(operation: string, fields: Record<string, unknown>, attachment: NonNullable<ChatwootMessageInput['attachment']>): Promise<FormData> {
  // file_type_helper.rb: only a declared type containing "audio/" gets an audio player.
  if (!/^audio\/[\w.+-]+$/.test(attachment.contentType)) {
    throw chatwootError(ChatwootErrorCode.rejected, `${operation}: ${attachment.contentType} is not an audio type; Chatwoot would show a plain file`);
  }
  let file: Blob;
  try {
    file = await openAsBlob(attachment.path, { type: attachment.contentType });
  } catch (cause) {
    throw new AppError(`${operation}: cannot read the recording file ${attachment.path}`, { code: 'ATTACHMENT_UNREADABLE', statusCode: 500, cause });
  }
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    if (name === 'private' && value !== true) continue; // Rails would read "false" as truthy text
    form.append(name, typeof value === 'string' ? value : JSON.stringify(value));
  }
  form.append('attachments[]', file, attachment.fileName);
  return form;
}

function assertE164(phone: string): string {
  if (!/^\+[1-9]\d{1,14}$/.test(phone)) {
    throw chatwootError(ChatwootErrorCode.rejected, `phone ${JSON.stringify(phone)} is not E.164 (+ and digits), which Chatwoot requires`);
  }
  return phone;
}

async function readLimited(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_ANSWER_BYTES) {
      body.destroy();
      throw chatwootError(ChatwootErrorCode.blocked, `an answer larger than ${MAX_ANSWER_BYTES} bytes: is CHATWOOT_URL Chatwoot's address?`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function toContact(contact: z.infer<typeof contactSchema>): ChatwootContact {
  return { id: contact.id, name: contact.name ?? null, phoneNumber: contact.phone_number ?? null };
}

function toConversation(conversation: z.infer<typeof conversationSchema>): ChatwootConversation {
  return { id: conversation.id, inboxId: conversation.inbox_id, status: conversation.status ?? null, contactId: conversation.meta?.sender?.id ?? null };
}

function toMessage(message: z.infer<typeof messageSchema>): ChatwootMessage {
  return {
    id: message.id,
    conversationId: message.conversation_id,
    messageType: message.message_type,
    private: message.private ?? false,
    sourceId: message.source_id ?? null,
    content: message.content ?? null,
    attachments: (message.attachments ?? []).map((attachment) => ({ id: attachment.id, fileType: attachment.file_type, fileSize: attachment.file_size ?? null })),
  };
}
