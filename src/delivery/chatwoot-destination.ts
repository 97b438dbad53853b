import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { describeCall } from '../calls/call-details.ts';
import { servedRecordingMediaType } from '../calls/recording-media-type.ts';
import type { ChatwootConfig } from '../config/config.ts';
import type { StoredCall } from '../db/calls-repository.ts';
import type { Delivery } from '../db/deliveries-repository.ts';
import { AppError } from '../errors.ts';
import type { RecordingStore } from '../storage/recording-store.ts';
import { brazilianMobileVariants } from './brazil-phone.ts';
import type { ChatwootClient, ChatwootMessage, ChatwootMessageInput } from './chatwoot-client.ts';
import { ChatwootErrorCode } from './chatwoot-errors.ts';
import { callSummaryText, recordingCaption, recordingExtension, recordingFailedText, recordingFileName, recordingStateText } from './chatwoot-messages.ts';
import { DELIVERY_ERROR_CODES, type DeliveryReceipt, type Destination } from './destination.ts';

/** Where a call's messages go: the contact of its other party, and that contact's conversation. */
interface Place {
  contactId: number;
  conversationId: number;
}

/** A message to post; `release` frees what it holds (a temp copy of the recording). */
interface Outgoing {
  input: ChatwootMessageInput;
  release(): Promise<void>;
}

const API_CHANNEL = 'Channel::Api';
/** Kept on a call summary's delivery: what it said of the recording, so that a later notice is not said twice. */
const TOLD_KEY = 'recording_state_told';

/**
 * A Chatwoot account (CHATWOOT_*). Each delivery becomes one message in the conversation of the
 * contact on the other end of the call: found by phone (both Brazilian forms) or created, and
 * their latest conversation in the inbox reused, or one created. Messages are private notes, or
 * in `api` mode incoming/outgoing by the call's direction in an API inbox (verified first:
 * in a WhatsApp inbox an outgoing message would be sent to the customer). Every message carries
 * `source_id` `wavoip:<call>:<fact>`, looked up before posting again when an earlier attempt's
 * answer was lost, so a message is never posted twice.
 */
export function createChatwootDestination(deps: {
  config: ChatwootConfig;
  client: ChatwootClient;
  store: RecordingStore;
  publicUrl: string | undefined;
  /** Every delivery of a call, to any destination (their Chatwoot ids are reused). */
  deliveriesOf(callId: string): Promise<Delivery[]>;
}): Destination {
  const { config, client } = deps;
  const name = `chatwoot:${config.accountId}`;
  /** Inboxes seen to be API inboxes; one that is not is asked again at every probe, until fixed. */
  const apiInboxes = new Set<number>();

  async function deliver(delivery: Delivery, call: StoredCall, signal: AbortSignal): Promise<DeliveryReceipt> {
    const details = describeCall(call);
    const phone = details.peerPhone;
    if (phone === null) {
      throw new AppError(`Chatwoot: call ${call.callId} names no other party's phone number: there is no contact to post to`, { code: ChatwootErrorCode.rejected });
    }
    const inboxId = (call.deviceId === null ? undefined : config.inboxByDevice.get(call.deviceId)) ?? config.inboxId;
    if (config.messageMode === 'api') await assertApiInbox(inboxId, signal);

    const earlier = (await deps.deliveriesOf(call.callId)).filter(
      (each) => each.destination === name && each.state === 'delivered' && each.position < delivery.position,
    );
    const known = knownPlace(earlier);
    const plan = planMessage(delivery, call, earlier);
    if (plan === null) {
      const told = recordingStateText(call.attachment.state, 'en');
      return { externalIds: known === null ? {} : placeIds(known), summary: `Nothing posted for call ${call.callId}: its summary already said "${told}"` };
    }

    const sourceId = `wavoip:${call.callId}:${delivery.fact}`;
    // A private note is an outgoing message; incoming ones are allowed in API inboxes only.
    const visibility =
      config.messageMode === 'private'
        ? ({ private: true, messageType: 'outgoing' } as const)
        : ({ private: false, messageType: details.direction === 'outgoing' ? 'outgoing' : 'incoming' } as const);
    const post = async (place: Place): Promise<ChatwootMessage> => {
      if (delivery.outcomeUnknown) {
        const found = await client.findMessageBySourceId(place.conversationId, sourceId, { signal });
        if (found !== null) return found;
      }
      const outgoing = await plan.build(signal);
      try {
        return await client.postMessage(place.conversationId, { ...outgoing.input, ...visibility, sourceId }, { signal });
      } finally {
        await outgoing.release();
      }
    };

    const resolve = () => resolvePlace(phone, call.peerName ?? phone, inboxId, signal);
    let place = known ?? (await translated(resolve));
    let message: ChatwootMessage;
    try {
      message = await post(place);
    } catch (caught) {
      // The contact or conversation an earlier delivery used was deleted: find or make them again, once.
      if (!(caught instanceof AppError && caught.code === ChatwootErrorCode.gone)) throw translate(caught);
      place = await translated(resolve);
      message = await translated(() => post(place));
    }
    return {
      externalIds: { ...placeIds(place), message_id: message.id, ...(plan.told === undefined ? {} : { [TOLD_KEY]: plan.told }) },
      summary: `${plan.what} posted to conversation ${place.conversationId}`,
    };
  }

  /** What to post for this delivery, built only when it is posted; null: nothing to add. */
  function planMessage(delivery: Delivery, call: StoredCall, earlier: Delivery[]) {
    const language = config.language;
    const details = describeCall(call);
    const text = (content: string) => async (): Promise<Outgoing> => ({ input: plainMessage(content), release: async () => {} });
    switch (delivery.kind) {
      case 'call': {
        const told = call.attachment.state;
        const content = callSummaryText(
          { direction: details.direction, peerPhone: details.peerPhone, peerName: call.peerName, durationSeconds: call.duration, outcome: details.outcome, startedAt: call.firstSeenAt, attachment: told },
          language,
        );
        return { what: 'Call summary', told, build: text(content) };
      }
      case 'recording':
        return { what: 'Recording', told: undefined, build: (signal: AbortSignal) => recordingMessage(call, details.peerPhone, signal) };
      case 'recording_unavailable': {
        const state = call.attachment.state;
        if (state !== 'empty' && state !== 'disabled') {
          // Failed for good (a retry may since have begun, or succeeded: the failure is still what this tells).
          const reason = delivery.reason ?? call.attachment.reason ?? 'unknown';
          return { what: 'Recording failure', told: undefined, build: text(recordingFailedText({ callId: call.callId, reason, publicUrl: deps.publicUrl }, language)) };
        }
        // Empty or disabled: the call summary says so, unless it was written while the recording was still awaited.
        const summary = earlier.filter((each) => each.kind === 'call').at(-1);
        const said = summary?.externalIds?.[TOLD_KEY];
        if (summary !== undefined && said !== 'pending') return null;
        return { what: 'No-recording note', told: undefined, build: text(recordingStateText(state, language)) };
      }
    }
  }

  /** The audio as a file on disk: the store's own for a local store, else a temp copy, deleted after. */
  async function recordingMessage(call: StoredCall, peerPhone: string | null, signal: AbortSignal): Promise<Outgoing> {
    const recording = call.recording;
    if (recording === null || recording.key === null) {
      throw new AppError(`Chatwoot: the recording of call ${call.callId} is no longer stored (RECORDING_RETENTION)`, { code: ChatwootErrorCode.rejected });
    }
    const key = recording.key;
    const extension = key.slice(key.lastIndexOf('.') + 1);
    const contentType = servedRecordingMediaType(recording.contentType, key);
    const attachment = { contentType, fileName: recordingFileName({ startedAt: call.firstSeenAt, peerPhone }, recordingExtension(contentType, extension)) };
    const input = plainMessage(recordingCaption({ peerPhone, durationSeconds: recording.durationSeconds ?? call.duration }, config.language));
    const local = deps.store.localPath?.(key);
    if (local !== undefined) return { input: { ...input, attachment: { ...attachment, path: local } }, release: async () => {} };

    await deps.store.prepareTemp();
    const source = await deps.store.openRead(key);
    if (source === null) {
      throw new AppError(`Chatwoot: the recording of call ${call.callId} is no longer in the store`, { code: ChatwootErrorCode.rejected });
    }
    const temp = path.join(deps.store.tmpDir, `chatwoot-${randomUUID()}.${extension}`);
    const release = () => deps.store.discardTemp(temp);
    try {
      await pipeline(source, createWriteStream(temp), { signal });
    } catch (caught) {
      await release();
      throw caught;
    }
    return { input: { ...input, attachment: { ...attachment, path: temp } }, release };
  }

  async function resolvePlace(phone: string, contactName: string, inboxId: number, signal: AbortSignal): Promise<Place> {
    const contact = (await client.findContactByPhone(phone, { signal })) ?? (await client.createContact({ inboxId, name: contactName, phone }, { signal })).contact;
    const conversation = (await client.findLatestConversation(contact.id, inboxId, { signal })) ?? (await client.createConversation({ contactId: contact.id, inboxId }, { signal }));
    return { contactId: contact.id, conversationId: conversation.id };
  }

  async function assertApiInbox(inboxId: number, signal: AbortSignal): Promise<void> {
    if (apiInboxes.has(inboxId)) return;
    const inbox = await translated(() => client.getInbox(inboxId, { signal }));
    if (inbox.channelType !== API_CHANNEL) {
      throw new AppError(
        `Chatwoot: inbox ${inboxId} (${inbox.name ?? 'unnamed'}) is a ${inbox.channelType} inbox, where messages that are not private notes could be sent to the customer; ` +
          'CHATWOOT_MESSAGE_MODE=api needs an API-channel inbox: set an API inbox, or CHATWOOT_MESSAGE_MODE=private',
        { code: DELIVERY_ERROR_CODES.blocked },
      );
    }
    apiInboxes.add(inboxId);
  }

  return {
    name,
    logTag: 'Chatwoot',
    serialKey(call) {
      const phone = describeCall(call).peerPhone;
      // One key for both forms of a Brazilian mobile: they are one contact in Chatwoot.
      return phone === null ? null : `chatwoot:${brazilianMobileVariants(phone).reduce((longest, form) => (form.length > longest.length ? form : longest))}`;
    },
    deliver,
    close: () => client.close(),
  };
}

/** messageType, private and sourceId are set where the message is posted. */
function plainMessage(content: string): ChatwootMessageInput {
  return { content, messageType: 'outgoing', private: true, sourceId: '' };
}

/** The contact and conversation the latest earlier delivery of the call used. */
function knownPlace(earlier: Delivery[]): Place | null {
  for (const delivery of [...earlier].reverse()) {
    const contactId = delivery.externalIds?.contact_id;
    const conversationId = delivery.externalIds?.conversation_id;
    if (typeof contactId === 'number' && typeof conversationId === 'number') return { contactId, conversationId };
  }
  return null;
}

function placeIds(place: Place) {
  return { contact_id: place.contactId, conversation_id: place.conversationId };
}

async function translated<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (caught) {
    throw translate(caught);
  }
}

/** The client's codes in the engine's terms (see destination.ts); the message, token-free already, is kept. */
function translate(caught: unknown): unknown {
  if (!(caught instanceof AppError)) return caught;
  const options = { cause: caught, retryAfterMs: caught.retryAfterMs };
  switch (caught.code) {
    case ChatwootErrorCode.blocked:
      return new AppError(caught.message, { ...options, code: DELIVERY_ERROR_CODES.blocked });
    case ChatwootErrorCode.outcomeUnknown:
      return new AppError(caught.message, { ...options, code: DELIVERY_ERROR_CODES.answerLost, retryable: true });
    case ChatwootErrorCode.gone:
      // Found again and gone again: something is deleting as we go; later it will have settled.
      return new AppError(caught.message, { ...options, code: ChatwootErrorCode.gone, retryable: true });
    default:
      return caught;
  }
}
