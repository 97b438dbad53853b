import { fileTypeFromBuffer } from 'file-type';
import { AppError } from '../errors.ts';

/** file-type needs at most this many leading bytes to recognise any format it knows. */
export const SNIFF_BYTES = 4100;

export interface SniffedAudio {
  contentType: string;
  extension: string;
}

// Containers that carry audio although their MIME says video or application.
const AUDIO_CAPABLE_CONTAINERS = new Set(['video/webm', 'video/mp4', 'video/ogg', 'application/ogg']);

// MIME spellings seen in the wild for the same format; a declared type is trusted only when it
// names the same format as the bytes, so `audio/mp4` may refine a sniffed `video/mp4` but
// `audio/mpeg` cannot relabel an Ogg file.
const FORMAT_FAMILIES: Readonly<Record<string, string>> = {
  'audio/ogg': 'ogg', 'audio/opus': 'ogg', 'audio/vorbis': 'ogg', 'audio/x-ogg': 'ogg',
  'application/ogg': 'ogg', 'video/ogg': 'ogg',
  'audio/mpeg': 'mpeg', 'audio/mp3': 'mpeg', 'audio/x-mp3': 'mpeg', 'audio/mpeg3': 'mpeg', 'audio/x-mpeg': 'mpeg',
  'audio/wav': 'wav', 'audio/wave': 'wav', 'audio/x-wav': 'wav', 'audio/vnd.wave': 'wav',
  'audio/flac': 'flac', 'audio/x-flac': 'flac',
  'audio/mp4': 'mp4', 'audio/x-m4a': 'mp4', 'audio/m4a': 'mp4', 'video/mp4': 'mp4',
  'audio/aac': 'aac', 'audio/x-aac': 'aac', 'audio/aacp': 'aac',
  'audio/webm': 'webm', 'video/webm': 'webm',
  'audio/amr': 'amr', 'audio/amr-wb': 'amr-wb',
};

/**
 * Decides from the leading bytes whether the body is audio. Not audio is retryable: a CDN may
 * answer with an HTML error page before the recording is published.
 */
export async function sniffAudio(head: Uint8Array, declaredContentType: string | undefined): Promise<SniffedAudio> {
  const detected = await fileTypeFromBuffer(head);
  if (!detected || !isAudioMime(stripParameters(detected.mime))) {
    const lookedLike = detected?.mime ?? describeUnrecognised(head);
    throw new AppError(`Recording body is ${lookedLike}, not audio`, {
      code: 'NOT_AUDIO',
      statusCode: 502,
      retryable: true,
    });
  }
  return { contentType: chooseContentType(detected.mime, declaredContentType), extension: detected.ext };
}

function isAudioMime(mime: string): boolean {
  return mime.startsWith('audio/') || AUDIO_CAPABLE_CONTAINERS.has(mime);
}

function chooseContentType(sniffed: string, declared: string | undefined): string {
  if (declared === undefined) return sniffed;
  const declaredMime = stripParameters(declared);
  const sameFamily = familyOf(declaredMime) === familyOf(stripParameters(sniffed));
  return declaredMime.startsWith('audio/') && sameFamily ? declared.trim() : sniffed;
}

function familyOf(mime: string): string {
  return FORMAT_FAMILIES[mime] ?? mime;
}

function stripParameters(contentType: string): string {
  return (contentType.split(';')[0] ?? '').trim().toLowerCase();
}

/** file-type knows binary formats only; an error page is text, worth naming in the job's error. */
function describeUnrecognised(head: Uint8Array): string {
  const text = new TextDecoder('utf-8', { fatal: false }).decode(head.subarray(0, 512)).trimStart().toLowerCase();
  if (text.startsWith('<!doctype html') || text.startsWith('<html') || text.includes('<body')) return 'text/html';
  if (text.startsWith('<?xml')) return 'XML';
  if (text.startsWith('{') || text.startsWith('[')) return 'JSON';
  return isMostlyPrintable(head) ? 'text' : 'unrecognised binary data';
}

function isMostlyPrintable(head: Uint8Array): boolean {
  const sample = head.subarray(0, 512);
  let printable = 0;
  for (const byte of sample) if (byte === 9 || byte === 10 || byte === 13 || (byte >= 32 && byte < 127)) printable++;
  return sample.length > 0 && printable / sample.length > 0.95;
}
