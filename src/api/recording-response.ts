import type { FastifyReply, FastifyRequest } from 'fastify';
import { Readable } from 'node:stream';
import rangeParser from 'range-parser';
import { servedRecordingMediaType } from '../calls/recording-media-type.ts';
import type { AppDeps } from '../http/app-deps.ts';
import { errorBody, mediaBody, NoBody, SERVER_ERRORS, stringEnum } from '../http/schemas.ts';
import { Type, type Static } from 'typebox';

export const RECORDING_QUERY_SCHEMA = Type.Object(
  { download: Type.Optional(stringEnum(['true', '1', 'false', '0'], { description: 'true or 1: Content-Disposition: attachment' })) },
  { additionalProperties: false },
);
export type RecordingQuery = Static<typeof RECORDING_QUERY_SCHEMA>;

/** The recording's answers; the route adds why it may have none (404, 410, ...). */
export const RECORDING_RESPONSES = {
  200: mediaBody('The recording (HEAD: its headers only)', 'audio/*', Type.String({ format: 'binary' })),
  206: mediaBody('The byte range asked for (Range)', 'audio/*', Type.String({ format: 'binary' })),
  304: NoBody('Not modified: If-None-Match names its ETag (the sha256)'),
  400: errorBody('An unknown or wrong query parameter'),
  416: errorBody('The range is outside the recording (Content-Range says its size)'),
  ...SERVER_ERRORS,
} as const;

interface RecordingFile {
  callId: string;
  key: string;
  /** As stored; rows from older releases may hold an upstream's header verbatim. */
  contentType: string | null;
  sha256: string;
  size: number;
}

/**
 * Serves a stored recording: conditional requests (If-None-Match, If-Range), a single byte
 * range, and headers that keep a browser from taking the bytes (which came from a third party)
 * for anything but audio, or running them as a document of ours.
 */
export async function sendRecording(
  request: Pick<FastifyRequest, 'headers' | 'method'> & { query: RecordingQuery },
  reply: FastifyReply,
  deps: AppDeps,
  recording: RecordingFile,
) {
  const { key, size } = recording;
  const etag = `"${recording.sha256}"`;
  reply
    .header('accept-ranges', 'bytes')
    .header('etag', etag)
    .header('x-content-type-options', 'nosniff')
    .header('content-security-policy', 'sandbox');
  // RFC 9110 §13.2.2: If-None-Match first; a client that has these bytes gets no body.
  if (matchesAnyEntityTag(request.headers['if-none-match'], recording.sha256)) return reply.code(304).send();

  const honourRange = request.headers.range !== undefined && ifRangeHolds(request.headers['if-range'], etag);
  const ranges = honourRange ? rangeParser(size, clampSuffixRanges(request.headers.range as string, size), { combine: true }) : undefined;
  if (ranges === -1) {
    return reply.code(416).header('content-range', `bytes */${size}`).send({ error: `range not satisfiable: the recording has ${size} bytes` });
  }
  // Several ranges would need multipart/byteranges, which no audio player asks for: send it whole.
  const range = Array.isArray(ranges) && ranges.type === 'bytes' && ranges.length === 1 ? ranges[0] : undefined;
  // HEAD: Fastify would read a stream to its end and drop it (for S3, the whole object fetched
  // for nothing). An empty one keeps the headers, Content-Length included, as GET sends them.
  const body = request.method === 'HEAD' ? Readable.from([]) : await deps.store.openRead(key, range);
  if (body === null) {
    // Deleted since the route's stat (retention): the same answer as a recording never stored.
    return reply.code(404).send({ error: 'the recording is no longer in the recording storage' });
  }
  const download = request.query.download === 'true' || request.query.download === '1';
  reply
    .header('content-type', servedRecordingMediaType(recording.contentType, key))
    .header('content-disposition', `${download ? 'attachment' : 'inline'}; filename="${recordingFileName(recording.callId, key)}"`);
  if (range === undefined) {
    reply.header('content-length', size);
    return reply.send(body);
  }
  reply
    .code(206)
    .header('content-range', `bytes ${range.start}-${range.end}/${size}`)
    .header('content-length', range.end - range.start + 1);
  return reply.send(body);
}

/**
 * A name safe in a quoted header parameter and on any file system: only [A-Za-z0-9._-]. The
 * call id may hold anything a webhook sent (quotes, slashes, control characters). No
 * `filename*`: it would only repeat this ASCII name.
 */
function recordingFileName(callId: string, key: string): string {
  const id = callId.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 100);
  const extension = /\.([a-z0-9]{1,10})$/.exec(key)?.[1];
  return `call-${id}${extension === undefined ? '' : `.${extension}`}`;
}

/**
 * If-None-Match by weak comparison (RFC 9110 §13.1.2): `*`, or any listed tag, W/ or not, with
 * our opaque tag. Hand-written: Fastify has no conditional-request support for replies it does
 * not build from files, and the rule is this short.
 */
function matchesAnyEntityTag(header: string | undefined, opaqueTag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  for (const [, tag] of header.matchAll(/(?:W\/)?"([^"]*)"/g)) if (tag === opaqueTag) return true;
  return false;
}

/**
 * If-Range (RFC 9110 §13.1.5) needs a strong match of our ETag; a weak tag, another ETag or a
 * date (we send no Last-Modified) means the client's copy may differ, so it gets the whole file.
 */
function ifRangeHolds(header: string | string[] | undefined, etag: string): boolean {
  return header === undefined || (typeof header === 'string' && header.trim() === etag);
}

/**
 * range-parser refuses a suffix range longer than the file (`bytes=-99999` on 24 KB) as
 * unsatisfiable; RFC 9110 §14.1.1 says it selects the whole file. Shortening it to the file's
 * length first gives that.
 */
function clampSuffixRanges(header: string, size: number): string {
  const equals = header.indexOf('=');
  if (equals === -1) return header;
  const specs = header
    .slice(equals + 1)
    .split(',')
    .map((spec) => {
      const suffix = /^\s*-\s*(\d+)\s*$/.exec(spec);
      return suffix !== null && Number(suffix[1]) > size ? `-${size}` : spec;
    });
  return `${header.slice(0, equals + 1)}${specs.join(',')}`;
}
