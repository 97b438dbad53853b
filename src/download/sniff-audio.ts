import { fileTypeFromBuffer } from 'file-type';
import { recordingMediaTypeFor } from '../calls/recording-media-type.ts';
import { AppError } from '../errors.ts';

/** file-type needs at most this many leading bytes to recognise any format it knows. */
export const SNIFF_BYTES = 4100;

export interface SniffedAudio {
  /** A bare `type/subtype` from the list in calls/recording-media-type.ts. */
  contentType: string;
  extension: string;
}

// Containers that carry audio although their MIME says video or application.
const AUDIO_CAPABLE_CONTAINERS = new Set(['video/webm', 'video/mp4', 'video/ogg', 'application/ogg']);

/**
 * Decides from the leading bytes whether the body is audio in a format of the fixed list, and
 * takes its media type from that list. The upstream's Content-Type has no say: a header like
 * `audio/ogg;,text/html` would otherwise be served back to browsers. Not audio is retryable: a
 * CDN may answer with an HTML error page before the recording is published.
 */
export async function sniffAudio(head: Uint8Array): Promise<SniffedAudio> {
  const detected = await fileTypeFromBuffer(head);
  const contentType = detected && isAudioMime(stripParameters(detected.mime)) ? recordingMediaTypeFor(detected.ext) : undefined;
  if (!detected || contentType === undefined) {
    const lookedLike = detected?.mime ?? describeUnrecognised(head);
    throw new AppError(`Recording body is ${lookedLike}, not audio`, {
      code: 'NOT_AUDIO',
      statusCode: 502,
      retryable: true,
    });
  }
  return { contentType, extension: detected.ext };
}

function isAudioMime(mime: string): boolean {
  return mime.startsWith('audio/') || AUDIO_CAPABLE_CONTAINERS.has(mime);
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
