import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createChatwootClient } from '../../src/delivery/chatwoot-client.ts';
import type { ChatwootClient, ChatwootClientOptions } from '../../src/delivery/chatwoot-client.ts';
import { ChatwootErrorCode } from '../../src/delivery/chatwoot-errors.ts';
import { AppError } from '../../src/errors.ts';
import { REPO_ROOT } from '../../bench/support.ts';
import { startFakeChatwoot } from '../support/fake-chatwoot.ts';
import type { FakeChatwoot } from '../support/fake-chatwoot.ts';
import { freePort } from '../support/free-port.ts';
import { sha256 } from '../support/sha256.ts';
import { writeWavFile } from '../support/wav.ts';

const FIXTURES = join(import.meta.dirname, '../fixtures/audio');
const UPLOAD_CHILD = join(import.meta.dirname, '../support/chatwoot-upload-child.ts');
const run = promisify(execFile);

let chatwoot: FakeChatwoot;
let client: ChatwootClient;
const clients: ChatwootClient[] = [];

function makeClient(overrides: Partial<ChatwootClientOptions> = {}): ChatwootClient {
  const made = createChatwootClient({ url: chatwoot.origin, token: chatwoot.token, accountId: chatwoot.accountId, ...overrides });
  clients.push(made);
  return made;
}

beforeEach(async () => {
  chatwoot = await startFakeChatwoot();
  client = makeClient();
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((made) => made.close()));
  await chatwoot.close();
});

/** The AppError a call failed with; also checks that the token is nowhere in it. */
async function failure(promise: Promise<unknown>, token = chatwoot.token): Promise<AppError> {
  const error = await promise.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AppError);
  expect(inspect(error, { depth: 10 })).not.toContain(token);
  return error as AppError;
}

function seedConversation() {
  const contact = chatwoot.seedContact({ phone: '+5511987654321', inboxId: chatwoot.apiInboxId });
  return chatwoot.seedConversation(contact.id, chatwoot.apiInboxId);
}

describe('inboxes', () => {
  it("tells an inbox's kind, and blocks on an inbox that is not there", async () => {
    expect(await client.getInbox(chatwoot.apiInboxId)).toMatchObject({ id: chatwoot.apiInboxId, channelType: 'Channel::Api' });
    expect(await client.getInbox(chatwoot.whatsappInboxId)).toMatchObject({ id: chatwoot.whatsappInboxId, channelType: 'Channel::Whatsapp' });
    expect((await failure(client.getInbox(999))).code).toBe(ChatwootErrorCode.blocked);
  });
});

describe('contacts', () => {
  it('finds a contact by phone, and nothing for an unknown phone', async () => {
    const seeded = chatwoot.seedContact({ name: 'Ana', phone: '+14155550123' });
    chatwoot.seedContact({ name: 'Near miss', phone: '+141555501234' });
    expect(await client.findContactByPhone('+14155550123')).toEqual({ id: seeded.id, name: 'Ana', phoneNumber: '+14155550123' });
    expect(await client.findContactByPhone('+14155550199')).toBeNull();
  });

  it('finds a Brazilian mobile stored under either form', async () => {
    const old = chatwoot.seedContact({ phone: '+551187654321' });
    const current = chatwoot.seedContact({ phone: '+5521998765432' });
    expect((await client.findContactByPhone('+5511987654321'))?.id).toBe(old.id);
    expect((await client.findContactByPhone('+552198765432'))?.id).toBe(current.id);
  });

  it('prefers the exact form when both forms exist', async () => {
    chatwoot.seedContact({ phone: '+551187654321' });
    const exact = chatwoot.seedContact({ phone: '+5511987654321' });
    expect((await client.findContactByPhone('+5511987654321'))?.id).toBe(exact.id);
  });

  it('creates a contact in the inbox', async () => {
    const { contact, created } = await client.createContact({ inboxId: chatwoot.apiInboxId, name: 'Ana', phone: '+5511987654321' });
    expect(created).toBe(true);
    expect(chatwoot.contacts()).toEqual([expect.objectContaining({ id: contact.id, phoneNumber: '+5511987654321', inboxIds: [chatwoot.apiInboxId] })]);
  });

  it('two deliveries racing on one new contact end with one contact', async () => {
    // Both look before either creates, as two replicas would: neither search is answered until both came.
    chatwoot.gatherNext('POST /contacts/filter', 2);
    const findOrCreate = async () =>
      (await client.findContactByPhone('+5511987654321')) ??
      (await client.createContact({ inboxId: chatwoot.apiInboxId, name: 'Ana', phone: '+5511987654321' })).contact;
    const [first, second] = await Promise.all([findOrCreate(), findOrCreate()]);
    expect(chatwoot.requests('POST /contacts')).toBe(2);
    expect(chatwoot.contacts()).toHaveLength(1);
    expect(first?.id).toBe(chatwoot.contacts()[0]?.id);
    expect(second?.id).toBe(first?.id);
  });

  it("passes on Chatwoot's refusal of a phone that is not E.164 as permanent", async () => {
    const error = await failure(client.createContact({ inboxId: chatwoot.apiInboxId, name: 'Ana', phone: '5511987654321' }));
    expect(error).toMatchObject({ code: ChatwootErrorCode.rejected, retryable: false });
    const tooLong = await failure(client.createContact({ inboxId: chatwoot.apiInboxId, name: 'Ana', phone: '+5511987654321' }).then(() =>
      client.createContact({ inboxId: chatwoot.apiInboxId, name: 'Bia', phone: '+55119876543210000' }),
    ));
    expect(tooLong.code).toBe(ChatwootErrorCode.rejected);
  });

  it('a wrong inbox blocks the destination', async () => {
    const error = await failure(client.createContact({ inboxId: 999, name: 'Ana', phone: '+5511987654321' }));
    expect(error).toMatchObject({ code: ChatwootErrorCode.blocked, retryable: false });
    expect(chatwoot.contacts()).toEqual([]);
  });
});

describe('conversations', () => {
  it("finds the contact's newest conversation in the inbox, or none", async () => {
    const contact = chatwoot.seedContact({ phone: '+5511987654321' });
    expect(await client.findLatestConversation(contact.id, chatwoot.apiInboxId)).toBeNull();
    chatwoot.seedConversation(contact.id, chatwoot.apiInboxId);
    const newest = chatwoot.seedConversation(contact.id, chatwoot.apiInboxId);
    chatwoot.seedConversation(contact.id, chatwoot.whatsappInboxId);
    expect(await client.findLatestConversation(contact.id, chatwoot.apiInboxId)).toEqual({
      id: newest.displayId,
      inboxId: chatwoot.apiInboxId,
      status: 'open',
      contactId: contact.id,
    });
  });

  it('creates a conversation and answers its display id', async () => {
    const other = chatwoot.addAccount();
    const stranger = chatwoot.seedContact({ phone: '+5511911111111', accountId: other.accountId });
    chatwoot.seedConversation(stranger.id, other.apiInboxId, other.accountId);
    const contact = chatwoot.seedContact({ phone: '+5511987654321' });
    const conversation = await client.createConversation({ contactId: contact.id, inboxId: chatwoot.apiInboxId });
    expect(conversation.id).toBe(1);
    expect(chatwoot.conversation(1)).toMatchObject({ contactId: contact.id, inboxId: chatwoot.apiInboxId });
    expect(chatwoot.conversation(1).id).not.toBe(1);
  });

  it('tells a wrong inbox (blocked) from a deleted contact (gone)', async () => {
    const contact = chatwoot.seedContact({ phone: '+5511987654321' });
    expect((await failure(client.createConversation({ contactId: contact.id, inboxId: 999 }))).code).toBe(ChatwootErrorCode.blocked);
    chatwoot.deleteContact(contact.id);
    expect((await failure(client.createConversation({ contactId: contact.id, inboxId: chatwoot.apiInboxId }))).code).toBe(ChatwootErrorCode.gone);
    expect((await failure(client.findLatestConversation(contact.id, chatwoot.apiInboxId))).code).toBe(ChatwootErrorCode.gone);
  });
});

describe('messages', () => {
  it('posts an incoming message with its source_id and attributes to an API inbox', async () => {
    const conversation = seedConversation();
    const posted = await client.postMessage(conversation.displayId, {
      content: 'Call answered, 2 min',
      messageType: 'incoming',
      private: false,
      sourceId: 'wavoip:call-1:call',
      contentAttributes: { wavoip_call_id: 'call-1' },
    });
    expect(posted).toMatchObject({ conversationId: conversation.displayId, messageType: 0, private: false, sourceId: 'wavoip:call-1:call', attachments: [] });
    expect(chatwoot.messages(conversation)).toEqual([
      expect.objectContaining({ id: posted.id, messageType: 'incoming', sourceId: 'wavoip:call-1:call', contentAttributes: { wavoip_call_id: 'call-1' } }),
    ]);
  });

  it.each([
    ['call-pt-br-9s.mp3', 'audio/mpeg'],
    ['call-pt-br-9s.ogg', 'audio/ogg'],
  ])('attaches %s intact, declared %s, shown as audio', async (file, contentType) => {
    const conversation = seedConversation();
    const bytes = await readFile(join(FIXTURES, file));
    const posted = await client.postMessage(conversation.displayId, {
      content: 'Recording',
      messageType: 'outgoing',
      private: true,
      sourceId: 'wavoip:call-1:recording',
      contentAttributes: { kind: 'recording' },
      attachment: { path: join(FIXTURES, file), contentType, fileName: `call-1.${file.split('.').at(-1)}` },
    });
    expect(posted).toMatchObject({ messageType: 1, private: true, attachments: [{ fileType: 'audio', fileSize: bytes.length }] });
    const [stored] = chatwoot.messages(conversation);
    expect(stored).toMatchObject({ private: true, sourceId: 'wavoip:call-1:recording', contentAttributes: { kind: 'recording' } });
    expect(stored?.attachments).toEqual([expect.objectContaining({ contentType, fileType: 'audio', sha256: sha256(bytes), fileName: `call-1.${file.split('.').at(-1)}` })]);
  });

  it('refuses to upload a type Chatwoot would not show as audio', async () => {
    const conversation = seedConversation();
    const attachment = { path: join(FIXTURES, 'call-pt-br-9s.ogg'), contentType: 'video/ogg', fileName: 'call.ogg' };
    const error = await failure(client.postMessage(conversation.displayId, { content: 'x', messageType: 'outgoing', private: true, sourceId: 's', attachment }));
    expect(error.code).toBe(ChatwootErrorCode.rejected);
    expect(chatwoot.requests('POST /conversations/:id/messages')).toBe(0);
  });

  it('an incoming message to a WhatsApp inbox blocks the destination (the message mode does not fit the inbox)', async () => {
    const contact = chatwoot.seedContact({ phone: '+5511987654321' });
    const conversation = chatwoot.seedConversation(contact.id, chatwoot.whatsappInboxId);
    const error = await failure(client.postMessage(conversation.displayId, { content: 'x', messageType: 'incoming', private: false, sourceId: 's' }));
    expect(error).toMatchObject({ code: ChatwootErrorCode.blocked, retryable: false });
    expect(error.message).toContain('Incoming messages are only allowed in Api inboxes');
  });

  it('a deleted conversation is gone', async () => {
    const conversation = seedConversation();
    chatwoot.deleteConversation(conversation);
    const error = await failure(client.postMessage(conversation.displayId, { content: 'x', messageType: 'outgoing', private: true, sourceId: 's' }));
    expect(error.code).toBe(ChatwootErrorCode.gone);
  });

  it('finds a message by source_id, paging back within the bound', async () => {
    const conversation = seedConversation();
    const target = chatwoot.seedMessage(conversation, { sourceId: 'wavoip:call-1:call' });
    for (let i = 0; i < 45; i++) chatwoot.seedMessage(conversation, { sourceId: `other-${i}` });
    expect((await client.findMessageBySourceId(conversation.displayId, 'wavoip:call-1:call'))?.id).toBe(target.id);
    expect(chatwoot.requests('GET /conversations/:id/messages')).toBe(3);
    expect(await client.findMessageBySourceId(conversation.displayId, 'wavoip:call-1:call', { maxPages: 2 })).toBeNull();
    expect(await client.findMessageBySourceId(conversation.displayId, 'wavoip:never')).toBeNull();
    expect(chatwoot.requests('GET /conversations/:id/messages')).toBe(3 + 2 + 3);
  });

  it('a committed post whose answer was lost is found by its source_id instead of posted again', async () => {
    const conversation = seedConversation();
    const message = { content: 'Call missed', messageType: 'incoming' as const, private: false, sourceId: 'wavoip:call-9:call' };
    chatwoot.loseAnswerNext('POST /conversations/:id/messages');
    const error = await failure(client.postMessage(conversation.displayId, message));
    expect(error).toMatchObject({ code: ChatwootErrorCode.outcomeUnknown, retryable: true });
    // What the engine does with an unknown outcome: look before posting again.
    const found = await client.findMessageBySourceId(conversation.displayId, message.sourceId);
    if (!found) await client.postMessage(conversation.displayId, message);
    expect(found).not.toBeNull();
    expect(chatwoot.messages(conversation)).toHaveLength(1);
  });

  it('streams a 20 MiB recording without holding it in memory', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'chatwoot-upload-'));
    try {
      const path = join(directory, 'recording.wav');
      writeWavFile(path, 20 * 1024 * 1024);
      const conversation = seedConversation();
      const options = { url: chatwoot.origin, token: chatwoot.token, accountId: chatwoot.accountId, conversationId: conversation.displayId, path, contentType: 'audio/wav', sample: true };
      // A process of its own: in this one, the fake's and the test runner's allocations blur the figure.
      const { stdout } = await run(process.execPath, ['--expose-gc', '--import', 'tsx', UPLOAD_CHILD, JSON.stringify(options)], { cwd: REPO_ROOT });
      const { peakHeldMiB } = JSON.parse(stdout.trim().split('\n').at(-1) as string) as { peakHeldMiB: number };
      const stored = chatwoot.messages(conversation).at(-1)?.attachments[0];
      expect(stored?.size).toBe(20 * 1024 * 1024);
      expect(stored?.sha256).toBe(sha256(await readFile(path)));
      // Holding the file would take at least its 20 MiB at once.
      expect(peakHeldMiB).toBeLessThan(8);
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });
});

describe('failures are classified for the engine, and never carry the token', () => {
  const message = { content: 'x', messageType: 'outgoing' as const, private: true, sourceId: 's' };

  it('a wrong token, a user outside the account, or a wrong account block the destination', async () => {
    const wrong = makeClient({ token: 'wrong-token-0123456789' });
    const wrongToken = await failure(wrong.findContactByPhone('+5511987654321'), 'wrong-token-0123456789');
    expect(wrongToken).toMatchObject({ code: ChatwootErrorCode.blocked, retryable: false });
    expect(wrongToken.message).toContain('CHATWOOT_API_TOKEN');

    const other = chatwoot.addAccount();
    const outsider = await failure(makeClient({ accountId: other.accountId }).findContactByPhone('+5511987654321'));
    expect(outsider.code).toBe(ChatwootErrorCode.blocked);
    expect(outsider.message).toContain('not a member');

    expect((await failure(makeClient({ accountId: 999 }).findContactByPhone('+5511987654321'))).code).toBe(ChatwootErrorCode.blocked);
    const bot = chatwoot.addToken('bot');
    expect((await failure(makeClient({ token: bot }).findContactByPhone('+5511987654321'), bot)).message).toContain('agent bot');
  });

  it('a URL that is not Chatwoot blocks the destination', async () => {
    const error = await failure(makeClient({ url: `${chatwoot.origin}/not-chatwoot` }).findContactByPhone('+5511987654321'));
    expect(error.code).toBe(ChatwootErrorCode.blocked);
    expect(error.message).toContain('CHATWOOT_URL');
  });

  it('500 and 408 leave the outcome unknown; 429 is retryable, honouring Retry-After only when sent', async () => {
    const conversation = seedConversation();
    chatwoot.failNext('POST /conversations/:id/messages', 1, 500);
    expect(await failure(client.postMessage(conversation.displayId, message))).toMatchObject({ code: ChatwootErrorCode.outcomeUnknown, retryable: true });
    chatwoot.failNext('POST /conversations/:id/messages', 1, 408);
    expect((await failure(client.postMessage(conversation.displayId, message))).code).toBe(ChatwootErrorCode.outcomeUnknown);
    chatwoot.failNext('POST /conversations/:id/messages', 1, 429, { headers: { 'retry-after': '120' } });
    expect(await failure(client.postMessage(conversation.displayId, message))).toMatchObject({
      code: ChatwootErrorCode.unavailable,
      retryable: true,
      retryAfterMs: 120_000,
    });
  });

  it("rack-attack's own 429 has no Retry-After, so none is made up", async () => {
    const throttled = await startFakeChatwoot({ rateLimit: { requestsPerPeriod: 1 } });
    const throttledClient = createChatwootClient({ url: throttled.origin, token: throttled.token, accountId: throttled.accountId });
    try {
      await throttledClient.findContactByPhone('+5511987654321');
      const error = await failure(throttledClient.findContactByPhone('+5511987654321'), throttled.token);
      expect(error).toMatchObject({ code: ChatwootErrorCode.unavailable, retryable: true, retryAfterMs: undefined });
    } finally {
      await throttledClient.close();
      await throttled.close();
    }
  });

  it('a reset connection and a slow answer leave the outcome unknown', async () => {
    const conversation = seedConversation();
    chatwoot.resetNext('POST /conversations/:id/messages');
    expect(await failure(client.postMessage(conversation.displayId, message))).toMatchObject({ code: ChatwootErrorCode.outcomeUnknown, retryable: true });
    const impatient = makeClient({ timeouts: { headersTimeoutMs: 200 } });
    chatwoot.delayNext('POST /conversations/:id/messages', 5_000);
    const slow = await failure(impatient.postMessage(conversation.displayId, message));
    expect(slow).toMatchObject({ code: ChatwootErrorCode.outcomeUnknown, retryable: true });
    expect(slow.message).toContain('timed out');
  });

  it('a server that cannot be reached is retryable, and the request was never sent', async () => {
    const port = await freePort();
    const error = await failure(makeClient({ url: `http://127.0.0.1:${port}` }).findContactByPhone('+5511987654321'));
    expect(error).toMatchObject({ code: ChatwootErrorCode.unavailable, retryable: true });
  });

  it('the token is cut out of anything Chatwoot quotes back', async () => {
    chatwoot.failNext('POST /contacts/filter', 1, 400, { body: JSON.stringify({ error: `bad header api_access_token=${chatwoot.token}` }) });
    const error = await failure(client.findContactByPhone('+5511987654321'));
    expect(error.code).toBe(ChatwootErrorCode.rejected);
    expect(error.message).toContain('[redacted]');
  });
});
