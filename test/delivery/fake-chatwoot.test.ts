import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startFakeChatwoot } from '../support/fake-chatwoot.ts';
import type { FakeChatwoot } from '../support/fake-chatwoot.ts';
import { sha256 } from '../support/sha256.ts';

/**
 * The fake must refuse what Chatwoot refuses, or the client's tests would prove nothing: these
 * speak raw HTTP to it, as any client would.
 */
const mp3 = await readFile(join(import.meta.dirname, '../fixtures/audio/call-pt-br-9s.mp3'));

let chatwoot: FakeChatwoot;
beforeEach(async () => {
  chatwoot = await startFakeChatwoot();
});
afterEach(async () => {
  await chatwoot.close();
});

async function api(path: string, init: { method?: string; json?: unknown; form?: FormData; headers?: Record<string, string>; account?: number } = {}) {
  const headers: Record<string, string> = init.headers ?? { api_access_token: chatwoot.token };
  if (init.json !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${chatwoot.origin}/api/v1/accounts/${init.account ?? chatwoot.accountId}${path}`, {
    method: init.method ?? (init.json !== undefined || init.form ? 'POST' : 'GET'),
    headers,
    body: init.form ?? (init.json !== undefined ? JSON.stringify(init.json) : undefined),
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // text bodies (429, HTML pages) stay text
  }
  return { status: response.status, headers: response.headers, body: body as Record<string, any> };
}

describe('fake Chatwoot: authentication and account', () => {
  it('refuses a request without a token the way devise_token_auth does', async () => {
    expect(await api('/contacts/search?q=a', { headers: {} })).toMatchObject({
      status: 401,
      body: { errors: ['You need to sign in or sign up before continuing.'] },
    });
  });

  it('refuses a wrong token with "Invalid Access Token"', async () => {
    expect(await api('/contacts/search?q=a', { headers: { api_access_token: 'nope' } })).toMatchObject({ status: 401, body: { error: 'Invalid Access Token' } });
  });

  it('accepts the token as api_access_token or Api-Access-Token', async () => {
    expect((await api('/contacts/search?q=a', { headers: { api_access_token: chatwoot.token } })).status).toBe(200);
    expect((await api('/contacts/search?q=a', { headers: { 'Api-Access-Token': chatwoot.token } })).status).toBe(200);
  });

  it("refuses an account the token's user is not in (401) and an account that does not exist (404)", async () => {
    const other = chatwoot.addAccount();
    expect(await api('/contacts/search?q=a', { account: other.accountId })).toMatchObject({
      status: 401,
      body: { error: 'You are not authorized to access this account' },
    });
    expect(await api('/contacts/search?q=a', { account: 999 })).toMatchObject({ status: 404, body: { error: 'Resource could not be found' } });
  });

  it("refuses an agent bot's token outside the endpoints bots may use", async () => {
    const bot = chatwoot.addToken('bot');
    expect(await api('/contacts/search?q=a', { headers: { api_access_token: bot } })).toMatchObject({
      status: 401,
      body: { error: 'Access to this endpoint is not authorized for bots' },
    });
    const contact = chatwoot.seedContact({ phone: '+5511987654321', inboxId: chatwoot.apiInboxId });
    const created = await api('/conversations', { json: { inbox_id: chatwoot.apiInboxId, contact_id: contact.id }, headers: { api_access_token: bot } });
    expect(created.status).toBe(200);
  });
});

describe('fake Chatwoot: contacts', () => {
  it('creates a contact (payload.contact.id) and refuses a phone that is not E.164, or taken', async () => {
    const created = await api('/contacts', { json: { inbox_id: chatwoot.apiInboxId, name: 'Ana', phone_number: '+5511987654321' } });
    expect(created.status).toBe(200);
    expect(created.body.payload.contact).toMatchObject({ id: expect.any(Number), phone_number: '+5511987654321', name: 'Ana' });

    expect(await api('/contacts', { json: { name: 'Bare', phone_number: '5511987650000' } })).toMatchObject({
      status: 422,
      body: { message: 'Phone number should be in e164 format', attributes: ['phone_number'] },
    });
    expect((await api('/contacts', { json: { name: 'Dashes', phone_number: '+55 11 98765-0000' } })).status).toBe(422);
    expect(await api('/contacts', { json: { name: 'Again', phone_number: '+5511987654321' } })).toMatchObject({
      status: 422,
      body: { message: 'Phone number has already been taken', attributes: ['phone_number'] },
    });
    expect(await api('/contacts', { json: { name: 'Nowhere', phone_number: '+5511900000000', inbox_id: 999 } })).toMatchObject({ status: 404 });
    expect(chatwoot.contacts().map((contact) => contact.phoneNumber)).toEqual(['+5511987654321']);
  });

  it('searches by substring, 15 a page, and refuses an empty q', async () => {
    for (let i = 0; i < 17; i++) chatwoot.seedContact({ name: `Caller ${i}`, phone: `+55119876543${String(i).padStart(2, '0')}` });
    const first = await api(`/contacts/search?q=${encodeURIComponent('+55119876543')}`);
    expect(first.body.payload).toHaveLength(15);
    expect(first.body.meta).toMatchObject({ current_page: 1, has_more: true });
    expect((await api(`/contacts/search?q=${encodeURIComponent('+55119876543')}&page=2`)).body.payload).toHaveLength(2);
    expect((await api('/contacts/search?q=caller%2016')).body.payload).toHaveLength(1);
    expect(await api('/contacts/search?q=')).toMatchObject({ status: 422, body: { error: 'Specify search string with parameter q' } });
  });

  it("filters by phone with the value's '+' added by Chatwoot, conditions joined by OR", async () => {
    const a = chatwoot.seedContact({ phone: '+5511987654321' });
    const b = chatwoot.seedContact({ phone: '+551187654322' });
    const condition = (value: string, query_operator: string | null) => ({ attribute_key: 'phone_number', filter_operator: 'equal_to', values: [value], query_operator });
    const both = await api('/contacts/filter', { json: { payload: [condition('5511987654321', 'OR'), condition('551187654322', null)] } });
    expect(both.body.payload.map((contact: { id: number }) => contact.id)).toEqual([a.id, b.id]);
    const withPlus = await api('/contacts/filter', { json: { payload: [condition('+5511987654321', null)] } });
    expect(withPlus.body.payload).toEqual([]);
    expect((await api('/contacts/filter', { json: { payload: [{ ...condition('1', null), attribute_key: 'shoe_size' }] } })).status).toBe(422);
  });
});

describe('fake Chatwoot: conversations and messages', () => {
  it('creates a new conversation every time, with account-scoped display ids, listed newest first', async () => {
    const other = chatwoot.addAccount();
    const stranger = chatwoot.seedContact({ phone: '+5511911111111', accountId: other.accountId });
    chatwoot.seedConversation(stranger.id, other.apiInboxId, other.accountId);
    const contact = chatwoot.seedContact({ phone: '+5511987654321' });
    const ids = [];
    for (let i = 0; i < 2; i++) ids.push((await api('/conversations', { json: { inbox_id: chatwoot.apiInboxId, contact_id: contact.id } })).body.id);
    expect(ids).toEqual([1, 2]);
    expect(chatwoot.conversations().map((conversation) => conversation.id)).not.toContain(1);
    const listed = await api(`/contacts/${contact.id}/conversations`);
    expect(listed.body.payload.map((conversation: { id: number }) => conversation.id)).toEqual([2, 1]);
    expect((await api('/conversations', { json: { inbox_id: 999, contact_id: contact.id } })).status).toBe(404);
  });

  it('classifies an attachment by its declared type as file_type_helper.rb does', async () => {
    const contact = chatwoot.seedContact({ phone: '+5511987654321' });
    const conversation = chatwoot.seedConversation(contact.id, chatwoot.apiInboxId);
    const cases: [string, string][] = [
      ['audio/mpeg', 'audio'],
      ['audio/ogg', 'audio'],
      ['video/ogg', 'video'],
      ['application/octet-stream', 'file'],
      ['image/png', 'image'],
      ['image/svg+xml', 'file'],
    ];
    for (const [declared, fileType] of cases) {
      const form = new FormData();
      form.append('content', declared);
      form.append('private', 'true');
      form.append('attachments[]', new Blob([mp3], { type: declared }), 'call.mp3');
      const posted = await api(`/conversations/${conversation.displayId}/messages`, { form });
      expect(posted.status).toBe(200);
      expect(posted.body.attachments[0].file_type).toBe(fileType);
    }
    const stored = chatwoot.messages(conversation).at(0)?.attachments[0];
    expect(stored?.sha256).toBe(sha256(mp3));
    expect(stored?.bytes().equals(mp3)).toBe(true);
    expect(stored).toMatchObject({ contentType: 'audio/mpeg', fileName: 'call.mp3', size: mp3.length });
  });

  it('answers message_type as an integer, and refuses incoming messages outside API inboxes', async () => {
    const contact = chatwoot.seedContact({ phone: '+5511987654321' });
    const api_ = chatwoot.seedConversation(contact.id, chatwoot.apiInboxId);
    const whatsapp = chatwoot.seedConversation(contact.id, chatwoot.whatsappInboxId);
    const incoming = await api(`/conversations/${api_.displayId}/messages`, { json: { content: 'hi', message_type: 'incoming', source_id: 'wavoip:1:call' } });
    expect(incoming.body).toMatchObject({ message_type: 0, source_id: 'wavoip:1:call', private: false });
    expect((await api(`/conversations/${api_.displayId}/messages`, { json: { content: 'note', private: true } })).body).toMatchObject({ message_type: 1, private: true });
    expect(await api(`/conversations/${whatsapp.displayId}/messages`, { json: { content: 'hi', message_type: 'incoming' } })).toMatchObject({
      status: 422,
      body: { error: 'Incoming messages are only allowed in Api inboxes' },
    });
    expect((await api(`/conversations/${whatsapp.displayId}/messages`, { json: { content: 'hi', message_type: 'sideways' } })).status).toBe(422);
    expect((await api('/conversations/999/messages', { json: { content: 'hi' } })).status).toBe(404);
  });

  it('lists the latest 20 messages, 20 before an id, or up to 100 after one, oldest first', async () => {
    const contact = chatwoot.seedContact({ phone: '+5511987654321' });
    const conversation = chatwoot.seedConversation(contact.id, chatwoot.apiInboxId);
    const ids = Array.from({ length: 45 }, (_, i) => chatwoot.seedMessage(conversation, { content: `m${i}` }).id);
    const path = `/conversations/${conversation.displayId}/messages`;
    const ofPage = (body: Record<string, any>) => body.payload.map((message: { id: number }) => message.id);
    expect(ofPage((await api(path)).body)).toEqual(ids.slice(25));
    expect(ofPage((await api(`${path}?before=${ids[25]}`)).body)).toEqual(ids.slice(5, 25));
    expect(ofPage((await api(`${path}?after=${ids[40]}`)).body)).toEqual(ids.slice(41));
  });
});

describe('fake Chatwoot: throttling and faults', () => {
  it('throttles like rack-attack: 429 "Retry later" without Retry-After', async () => {
    const throttled = await startFakeChatwoot({ rateLimit: { searchesPerPeriod: 2 } });
    try {
      const search = () => fetch(`${throttled.origin}/api/v1/accounts/${throttled.accountId}/contacts/search?q=a`, { headers: { api_access_token: throttled.token } });
      expect((await search()).status).toBe(200);
      expect((await search()).status).toBe(200);
      const refused = await search();
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBeNull();
      expect(await refused.text()).toBe('Retry later\n');
    } finally {
      await throttled.close();
    }
  });

  it('loses the answer after committing, resets, and fails N times on request', async () => {
    const contact = chatwoot.seedContact({ phone: '+5511987654321' });
    const conversation = chatwoot.seedConversation(contact.id, chatwoot.apiInboxId);
    const path = `/conversations/${conversation.displayId}/messages`;
    chatwoot.loseAnswerNext('POST /conversations/:id/messages');
    await expect(api(path, { json: { content: 'committed' } })).rejects.toThrow();
    expect(chatwoot.messages(conversation).map((message) => message.content)).toEqual(['committed']);
    chatwoot.resetNext('POST /conversations/:id/messages');
    await expect(api(path, { json: { content: 'reset' } })).rejects.toThrow();
    chatwoot.failNext('POST /conversations/:id/messages', 2);
    expect((await api(path, { json: { content: 'a' } })).status).toBe(500);
    expect((await api(path, { json: { content: 'b' } })).status).toBe(500);
    expect((await api(path, { json: { content: 'c' } })).status).toBe(200);
    expect(chatwoot.messages(conversation).map((message) => message.content)).toEqual(['committed', 'c']);
    expect(chatwoot.requests('POST /conversations/:id/messages')).toBe(5);
  });
});
