import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ReceivedFile } from './multipart.ts';

/**
 * The records of the fake Chatwoot and the rules its models enforce, written from Chatwoot's
 * sources (paths in comments). Every failure is thrown as a ChatwootFailure carrying the exact
 * status and body Chatwoot would answer with.
 */
export class ChatwootFailure extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {
    super(`HTTP ${status}`);
  }
}

/** request_exception_handler.rb: RecordNotFound. */
export const notFound = () => new ChatwootFailure(404, { error: 'Resource could not be found' });
/** request_exception_handler.rb: render_record_invalid (a model validation). */
const recordInvalid = (messages: string[], attributes: string[]) =>
  new ChatwootFailure(422, { message: messages.join(', '), attributes });
/** request_exception_handler.rb: render_could_not_create_error. */
export const couldNotCreate = (message: string) => new ChatwootFailure(422, { error: message });

export type InboxChannel = 'api' | 'whatsapp';
const CHANNEL_TYPE: Record<InboxChannel, string> = { api: 'Channel::Api', whatsapp: 'Channel::Whatsapp' };

export interface FakeInbox {
  id: number;
  accountId: number;
  name: string;
  channel: InboxChannel;
}

export interface FakeContact {
  id: number;
  accountId: number;
  name: string | null;
  email: string | null;
  phoneNumber: string | null;
  identifier: string | null;
  inboxIds: number[];
}

export interface FakeConversation {
  /** The database id, which Chatwoot never uses in URLs. */
  id: number;
  /** Account-scoped: `id` in every response and URL (conversation.rb, display_id). */
  displayId: number;
  accountId: number;
  inboxId: number;
  contactId: number;
  status: 'open' | 'resolved' | 'pending' | 'snoozed';
}

export interface FakeAttachment extends Omit<ReceivedFile, 'field'> {
  id: number;
  fileType: 'image' | 'audio' | 'video' | 'file';
  bytes(): Buffer;
}

export type MessageType = 'incoming' | 'outgoing' | 'activity' | 'template';
/** message.rb: enum message_type { incoming: 0, outgoing: 1, activity: 2, template: 3 }. */
const MESSAGE_TYPE_NUMBER: Record<MessageType, number> = { incoming: 0, outgoing: 1, activity: 2, template: 3 };

export interface FakeMessage {
  id: number;
  accountId: number;
  conversationId: number;
  inboxId: number;
  content: string | null;
  messageType: MessageType;
  private: boolean;
  sourceId: string | null;
  contentAttributes: Record<string, unknown>;
  createdAt: number;
  /** When the fake committed it, in ms (Chatwoot's own created_at has whole seconds): for benchmarks. */
  committedAtMs: number;
  attachments: FakeAttachment[];
}

/** E.164 as contact.rb validates it: note Chatwoot's pattern has \z but no \A. */
const E164 = /\+[1-9]\d{1,14}$/;

/**
 * file_type_helper.rb: exact lists for image and video, a substring test for audio, so
 * `video/ogg` is a video and `image/svg+xml` or `application/octet-stream` a plain file.
 */
export function fileTypeFor(contentType: string): FakeAttachment['fileType'] {
  if (['image/jpeg', 'image/png', 'image/gif', 'image/bmp', 'image/webp'].includes(contentType)) return 'image';
  if (['video/ogg', 'video/mp4', 'video/webm', 'video/quicktime'].includes(contentType)) return 'video';
  if (contentType.includes('audio/')) return 'audio';
  return 'file';
}

export class FakeChatwootState {
  readonly inboxes: FakeInbox[] = [];
  readonly contacts: FakeContact[] = [];
  readonly conversations: FakeConversation[] = [];
  readonly messages: FakeMessage[] = [];
  private nextId = { inbox: 1, contact: 1, conversation: 101, message: 1001, attachment: 1 };

  addInbox(accountId: number, channel: InboxChannel, name = `${channel} inbox`): FakeInbox {
    const inbox = { id: this.nextId.inbox++, accountId, name, channel };
    this.inboxes.push(inbox);
    return inbox;
  }

  findInbox(accountId: number, id: unknown): FakeInbox {
    const inbox = this.inboxes.find((candidate) => candidate.accountId === accountId && candidate.id === Number(id));
    if (!inbox) throw notFound();
    return inbox;
  }

  findContact(accountId: number, id: unknown): FakeContact {
    const contact = this.contacts.find((candidate) => candidate.accountId === accountId && candidate.id === Number(id));
    if (!contact) throw notFound();
    return contact;
  }

  /** contacts_controller.rb#create: the contact is validated and saved, then the inbox looked up, in one transaction. */
  createContact(accountId: number, params: Record<string, unknown>): { contact: FakeContact; inbox: FakeInbox | undefined } {
    const text = (key: string) => (typeof params[key] === 'string' && params[key] !== '' ? (params[key] as string) : null);
    const contact: FakeContact = {
      id: 0,
      accountId,
      name: text('name') ?? '',
      email: text('email')?.toLowerCase() ?? null,
      phoneNumber: text('phone_number'),
      identifier: text('identifier'),
      inboxIds: [],
    };
    this.validateContact(contact);
    const inbox = params.inbox_id === undefined || params.inbox_id === '' ? undefined : this.findInbox(accountId, params.inbox_id);
    contact.id = this.nextId.contact++;
    if (inbox) contact.inboxIds.push(inbox.id);
    this.contacts.push(contact);
    return { contact, inbox };
  }

  /** contact.rb validations, in their order; full messages joined like Rails does. */
  private validateContact(contact: FakeContact): void {
    const messages: string[] = [];
    const attributes: string[] = [];
    const others = this.contacts.filter((other) => other.accountId === contact.accountId);
    const fail = (attribute: string, message: string) => {
      messages.push(message);
      if (!attributes.includes(attribute)) attributes.push(attribute);
    };
    if (contact.email !== null && others.some((other) => other.email === contact.email)) fail('email', 'Email has already been taken');
    if (contact.identifier !== null && others.some((other) => other.identifier === contact.identifier)) {
      fail('identifier', 'Identifier has already been taken');
    }
    if (contact.phoneNumber !== null) {
      if (others.some((other) => other.phoneNumber === contact.phoneNumber)) fail('phone_number', 'Phone number has already been taken');
      if (!E164.test(contact.phoneNumber)) fail('phone_number', 'Phone number should be in e164 format');
    }
    if (messages.length > 0) throw recordInvalid(messages, attributes);
  }

  /** conversation_builder.rb: a new conversation every time (no inbox here locks to a single one). */
  createConversation(accountId: number, inbox: FakeInbox, contact: FakeContact, status?: unknown): FakeConversation {
    if (!contact.inboxIds.includes(inbox.id)) contact.inboxIds.push(inbox.id);
    const displayId = 1 + Math.max(0, ...this.conversations.filter((c) => c.accountId === accountId).map((c) => c.displayId));
    const conversation: FakeConversation = {
      id: this.nextId.conversation++,
      displayId,
      accountId,
      inboxId: inbox.id,
      contactId: contact.id,
      status: status === 'resolved' || status === 'pending' || status === 'snoozed' ? status : 'open',
    };
    this.conversations.push(conversation);
    return conversation;
  }

  findConversation(accountId: number, displayId: unknown): FakeConversation {
    const found = this.conversations.find((c) => c.accountId === accountId && String(c.displayId) === String(displayId));
    if (!found) throw notFound();
    return found;
  }

  /** message_builder.rb; its errors reach the client through the controller's `rescue StandardError`. */
  createMessage(conversation: FakeConversation, params: Record<string, unknown>, files: ReceivedFile[]): FakeMessage {
    const requested = params.message_type === undefined || params.message_type === '' ? 'outgoing' : String(params.message_type);
    if (!(requested in MESSAGE_TYPE_NUMBER)) throw couldNotCreate(`'${requested}' is not a valid message_type`);
    const messageType = requested as MessageType;
    const inbox = this.inboxes.find((candidate) => candidate.id === conversation.inboxId) as FakeInbox;
    if (inbox.channel !== 'api' && messageType === 'incoming') throw couldNotCreate('Incoming messages are only allowed in Api inboxes');
    if (params.attachments !== undefined && files.length === 0) {
      // A string in attachments[] is read as an ActiveStorage signed blob id.
      throw couldNotCreate('ActiveSupport::MessageVerifier::InvalidSignature');
    }
    const message: FakeMessage = {
      id: this.nextId.message++,
      accountId: conversation.accountId,
      conversationId: conversation.id,
      inboxId: conversation.inboxId,
      content: typeof params.content === 'string' ? params.content : null,
      messageType,
      private: castBoolean(params.private),
      sourceId: typeof params.source_id === 'string' && params.source_id !== '' ? params.source_id : null,
      contentAttributes: parseContentAttributes(params.content_attributes),
      createdAt: Math.floor(Date.now() / 1000),
      committedAtMs: Date.now(),
      attachments: files.map(({ field: _field, ...file }) => ({
        ...file,
        id: this.nextId.attachment++,
        fileType: fileTypeFor(file.contentType),
        bytes: () => readFileSync(file.path),
      })),
    };
    this.messages.push(message);
    return message;
  }

  conversationMessages(conversation: FakeConversation): FakeMessage[] {
    return this.messages.filter((message) => message.conversationId === conversation.id);
  }

  contactJson(contact: FakeContact) {
    return {
      additional_attributes: {},
      availability_status: 'offline',
      email: contact.email,
      id: contact.id,
      name: contact.name,
      phone_number: contact.phoneNumber,
      identifier: contact.identifier,
      thumbnail: '',
      custom_attributes: {},
      contact_inboxes: contact.inboxIds.map((inboxId) => ({ source_id: randomUUID(), inbox: this.inboxJson(inboxId) })),
    };
  }

  inboxJson(inboxId: number) {
    const inbox = this.inboxes.find((candidate) => candidate.id === inboxId) as FakeInbox;
    return { id: inbox.id, name: inbox.name, channel_type: CHANNEL_TYPE[inbox.channel] };
  }

  /** api/v1/conversations/partials/_conversation.json.jbuilder (the fields a client reads). */
  conversationJson(conversation: FakeConversation) {
    const contact = this.contacts.find((candidate) => candidate.id === conversation.contactId) as FakeContact;
    const last = this.conversationMessages(conversation).at(-1);
    return {
      meta: { sender: this.contactJson(contact), channel: this.inboxJson(conversation.inboxId).channel_type },
      id: conversation.displayId,
      messages: last ? [this.messageJson(last)] : [],
      account_id: conversation.accountId,
      inbox_id: conversation.inboxId,
      status: conversation.status,
      contact_inbox: { source_id: randomUUID() },
    };
  }

  /** api/v1/models/_message.json.jbuilder and attachment.rb#push_event_data. */
  messageJson(message: FakeMessage) {
    const conversation = this.conversations.find((candidate) => candidate.id === message.conversationId) as FakeConversation;
    return {
      id: message.id,
      content: message.content,
      inbox_id: message.inboxId,
      conversation_id: conversation.displayId,
      message_type: MESSAGE_TYPE_NUMBER[message.messageType],
      content_type: 'text',
      status: 'sent',
      content_attributes: message.contentAttributes,
      created_at: message.createdAt,
      private: message.private,
      source_id: message.sourceId,
      ...(message.attachments.length > 0
        ? {
            attachments: message.attachments.map((attachment) => ({
              id: attachment.id,
              message_id: message.id,
              file_type: attachment.fileType,
              account_id: message.accountId,
              extension: null,
              data_url: `/rails/active_storage/blobs/redirect/${attachment.id}/${encodeURIComponent(attachment.fileName)}`,
              thumb_url: '',
              file_size: attachment.size,
              width: null,
              height: null,
            })),
          }
        : {}),
    };
  }
}

/** ActiveRecord's boolean cast for the `private` column. */
function castBoolean(value: unknown): boolean {
  if (value === undefined || value === null || value === '') return false;
  return ![false, 0, '0', 'f', 'F', 'false', 'FALSE', 'off', 'OFF'].includes(value as never);
}

/** message_builder.rb#content_attributes: a hash, or a JSON string; anything else is {}. */
function parseContentAttributes(value: unknown): Record<string, unknown> {
  if (typeof value === 'string') {
    try {
      const parsed: unknown = JSON.parse(value);
      return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
    } catch {
      return {};
    }
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}
