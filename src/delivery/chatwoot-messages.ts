import type { CallDirection, CallOutcome } from '../calls/call-details.ts';
import type { AttachmentState } from '../calls/call-state.ts';

/**
 * The texts agents read in Chatwoot, in CHATWOOT_LANGUAGE. Pure: the destination gathers the
 * facts, these functions only word them. Times are shown in UTC and say so: the service does not
 * know the agents' time zone.
 */
type ChatwootLanguage = 'en' | 'pt-BR';

export interface CallSummaryFacts {
  direction: CallDirection | null;
  /** E.164, or null when the events named no other party. */
  peerPhone: string | null;
  peerName: string | null;
  durationSeconds: number | null;
  outcome: CallOutcome;
  /** When the call was first seen (its ringing), ms since the epoch. */
  startedAt: number;
  /** The recording's state as the summary is written. */
  attachment: AttachmentState;
}

interface Words {
  title: Record<CallDirection | 'unknown', string>;
  party: Record<CallDirection | 'unknown', string>;
  outcome: Record<CallOutcome, string>;
  duration: string;
  started: string;
  unknownDuration: string;
  recording: Record<AttachmentState, string>;
  recordingMessage: (peer: string, duration: string) => string;
  failed: (reason: string) => string;
  retry: (apiLink: string | null, cli: string) => string;
}

const WORDS: Record<ChatwootLanguage, Words> = {
  en: {
    title: { incoming: '📞 Incoming WhatsApp call', outgoing: '📞 Outgoing WhatsApp call', unknown: '📞 WhatsApp call' },
    party: { incoming: 'From', outgoing: 'To', unknown: 'Number' },
    outcome: { answered: 'answered', missed: 'missed', rejected: 'rejected', failed: 'failed', in_progress: 'in progress' },
    duration: 'Duration',
    started: 'Started',
    unknownDuration: 'unknown',
    recording: {
      pending: 'Recording: on its way',
      attached: 'Recording: attached below',
      disabled: 'No recording: recording is off on the device',
      empty: 'No recording: the call was too short to record',
      none: 'No recording: the call was not answered on this device',
      failed: 'No recording: it could not be fetched (details below)',
      expired: 'No recording: deleted after the retention period',
    },
    recordingMessage: (peer, duration) => `🎙️ Recording of the call with ${peer} (${duration})`,
    failed: (reason) => `⚠️ The recording of this call could not be fetched: ${reason}`,
    retry: (apiLink, cli) => `To try again: ${apiLink === null ? '' : `POST ${apiLink} (with the API token), or `}on the server: ${cli}`,
  },
  'pt-BR': {
    title: { incoming: '📞 Chamada de WhatsApp recebida', outgoing: '📞 Chamada de WhatsApp feita', unknown: '📞 Chamada de WhatsApp' },
    party: { incoming: 'De', outgoing: 'Para', unknown: 'Número' },
    outcome: { answered: 'atendida', missed: 'perdida', rejected: 'recusada', failed: 'falhou', in_progress: 'em andamento' },
    duration: 'Duração',
    started: 'Início',
    unknownDuration: 'desconhecida',
    recording: {
      pending: 'Gravação: a caminho',
      attached: 'Gravação: anexada abaixo',
      disabled: 'Sem gravação: a gravação está desligada no dispositivo',
      empty: 'Sem gravação: a chamada foi curta demais para gravar',
      none: 'Sem gravação: a chamada não foi atendida neste dispositivo',
      failed: 'Sem gravação: não foi possível obtê-la (detalhes abaixo)',
      expired: 'Sem gravação: apagada após o período de retenção',
    },
    recordingMessage: (peer, duration) => `🎙️ Gravação da chamada com ${peer} (${duration})`,
    failed: (reason) => `⚠️ Não foi possível obter a gravação desta chamada: ${reason}`,
    retry: (apiLink, cli) => `Para tentar de novo: ${apiLink === null ? '' : `POST ${apiLink} (com o token da API), ou `}no servidor: ${cli}`,
  },
};

/** The one message that tells a call: which way, with whom, how long, how it ended, when, and its recording. */
export function callSummaryText(facts: CallSummaryFacts, language: ChatwootLanguage): string {
  const words = WORDS[language];
  const side = facts.direction ?? 'unknown';
  return [
    `${words.title[side]} — ${words.outcome[facts.outcome]}`,
    `${words.party[side]}: ${describePeer(facts.peerName, facts.peerPhone)}`,
    `${words.duration}: ${facts.durationSeconds === null ? words.unknownDuration : formatClock(facts.durationSeconds)}`,
    `${words.started}: ${formatUtc(facts.startedAt, language)}`,
    words.recording[facts.attachment],
  ].join('\n');
}

/** The line a summary gives the recording; also the whole note when a summary said "on its way" and none came. */
export function recordingStateText(state: AttachmentState, language: ChatwootLanguage): string {
  return WORDS[language].recording[state];
}

/** The caption of the message that carries the audio. */
export function recordingCaption(input: { peerPhone: string | null; durationSeconds: number | null }, language: ChatwootLanguage): string {
  const words = WORDS[language];
  const duration = input.durationSeconds === null ? words.unknownDuration : formatClock(input.durationSeconds);
  return words.recordingMessage(input.peerPhone ?? '?', duration);
}

/**
 * The recording failed for good (POLL_MAX_WAIT): why, and how an operator retries it. The API
 * link needs PUBLIC_URL (the service's own address is rarely what an agent can reach).
 */
export function recordingFailedText(input: { callId: string; reason: string; publicUrl: string | undefined }, language: ChatwootLanguage): string {
  const words = WORDS[language];
  const apiLink = input.publicUrl === undefined ? null : `${input.publicUrl}/api/calls/${encodeURIComponent(input.callId)}/retry`;
  return [words.failed(input.reason), words.retry(apiLink, `npx wavoip-recordings retry ${shellWord(input.callId)}`)].join('\n');
}

/** `call-20261203-045129-5511987654321.ogg`: when and with whom, in any file manager's sort order. */
export function recordingFileName(input: { startedAt: number; peerPhone: string | null }, extension: string): string {
  const stamp = new Date(input.startedAt).toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const peer = input.peerPhone?.replace(/\D/g, '') || 'unknown';
  return `call-${stamp}-${peer}.${extension}`;
}

/** The extension people know a media type by (Opus in Ogg is stored as .opus, but players expect .ogg). */
const EXTENSION_BY_MEDIA_TYPE: Readonly<Record<string, string>> = {
  'audio/ogg': 'ogg',
  'audio/mpeg': 'mp3',
  'audio/wav': 'wav',
  'audio/mp4': 'm4a',
  'audio/aac': 'aac',
  'audio/webm': 'webm',
  'audio/flac': 'flac',
  'audio/amr': 'amr',
};

/** The attachment's extension: the usual one of its media type, else the stored file's own. */
export function recordingExtension(mediaType: string, storedExtension: string): string {
  return EXTENSION_BY_MEDIA_TYPE[mediaType] ?? storedExtension;
}

/** `mm:ss`, minutes growing past 59 (calls are rarely hours long, and an agent reads 75:02 at once). */
export function formatClock(totalSeconds: number): string {
  const seconds = Math.max(0, Math.round(totalSeconds));
  return `${String(Math.floor(seconds / 60)).padStart(2, '0')}:${String(seconds % 60).padStart(2, '0')}`;
}

/** `2026-12-03 04:51:29 UTC`, or in pt-BR `03/12/2026 04:51:29 UTC`. */
function formatUtc(ms: number, language: ChatwootLanguage): string {
  const iso = new Date(ms).toISOString();
  const [date = '', time = ''] = [iso.slice(0, 10), iso.slice(11, 19)];
  const [year, month, day] = date.split('-');
  return language === 'pt-BR' ? `${day}/${month}/${year} ${time} UTC` : `${date} ${time} UTC`;
}

function describePeer(name: string | null, phone: string | null): string {
  const number = phone ?? '?';
  const trimmed = name?.trim();
  return trimmed ? `${trimmed} (${number})` : number;
}

/** A call id as one word for a POSIX shell: quoted unless it is plainly safe. */
function shellWord(text: string): string {
  return /^[\w.@%+=:,/-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}
