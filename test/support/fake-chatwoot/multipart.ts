import { createHash, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';

export interface ReceivedFile {
  field: string;
  fileName: string;
  /** The part's declared Content-Type, as Rails hands it to Chatwoot's file_type helper. */
  contentType: string;
  size: number;
  sha256: string;
  /** Where the bytes were written, so a 20 MiB upload never sits in the fake's memory. */
  path: string;
}

export interface MultipartBody {
  fields: [string, string][];
  files: ReceivedFile[];
}

const MAX_FIELD_BYTES = 1024 * 1024;

/**
 * A streaming multipart/form-data reader: files go straight to disk while hashed, fields are
 * kept as text. Hand-written because the project has no multipart parser among its own
 * dependencies (busboy is only there through dev tools), and the fake must not buffer uploads
 * or it would spoil the client's memory measurements in the same process.
 */
export async function readMultipart(body: Readable, contentType: string, directory: string): Promise<MultipartBody> {
  const boundary = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  if (!boundary) throw new Error('multipart body without a boundary');
  // With a CRLF in front, the first delimiter looks like every other one.
  const delimiter = Buffer.from(`\r\n--${boundary[1] ?? boundary[2]}`);
  const result: MultipartBody = { fields: [], files: [] };
  let pending: Buffer = Buffer.from('\r\n');
  let state: 'preamble' | 'headers' | 'body' | 'done' = 'preamble';
  let part: PartSink | undefined;

  for await (const chunk of body as AsyncIterable<Buffer>) {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    for (;;) {
      if (state === 'done') break;
      if (state === 'preamble' || state === 'body') {
        const at = pending.indexOf(delimiter);
        if (at === -1) {
          // Keep what could be the start of a delimiter split across chunks.
          const safe = Math.max(0, pending.length - delimiter.length);
          if (state === 'body' && safe > 0) await part?.write(pending.subarray(0, safe));
          pending = pending.subarray(safe);
          break;
        }
        if (pending.length < at + delimiter.length + 2) break;
        if (state === 'body' && part) {
          await part.write(pending.subarray(0, at));
          await part.finish(result);
          part = undefined;
        }
        const after = pending.subarray(at + delimiter.length, at + delimiter.length + 2).toString('latin1');
        pending = pending.subarray(at + delimiter.length + 2);
        state = after === '--' ? 'done' : 'headers';
        continue;
      }
      const end = pending.indexOf('\r\n\r\n');
      if (end === -1) break;
      part = openPart(pending.subarray(0, end).toString('utf8'), directory);
      pending = pending.subarray(end + 4);
      state = 'body';
    }
  }
  if (state !== 'done') {
    await part?.abandon();
    throw new Error('multipart body ended before its closing delimiter');
  }
  return result;
}

interface PartSink {
  write(bytes: Buffer): Promise<void>;
  finish(into: MultipartBody): Promise<void>;
  abandon(): Promise<void>;
}

function openPart(headerText: string, directory: string): PartSink {
  const headers = new Map<string, string>();
  for (const line of headerText.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  const disposition = headers.get('content-disposition') ?? '';
  const field = decodeQuoted(/\bname="([^"]*)"/i.exec(disposition)?.[1] ?? '');
  const fileName = /\bfilename="([^"]*)"/i.exec(disposition)?.[1];
  if (fileName === undefined) {
    const chunks: Buffer[] = [];
    let size = 0;
    return {
      async write(bytes) {
        size += bytes.length;
        if (size > MAX_FIELD_BYTES) throw new Error(`field ${field} is too large`);
        chunks.push(Buffer.from(bytes));
      },
      async finish(into) {
        into.fields.push([field, Buffer.concat(chunks).toString('utf8')]);
      },
      async abandon() {},
    };
  }
  const path = join(directory, randomUUID());
  const file = createWriteStream(path);
  const hash = createHash('sha256');
  let size = 0;
  return {
    async write(bytes) {
      if (bytes.length === 0) return;
      size += bytes.length;
      hash.update(bytes);
      if (!file.write(bytes)) await once(file, 'drain');
    },
    async finish(into) {
      file.end();
      await once(file, 'finish');
      into.files.push({
        field,
        fileName: decodeQuoted(fileName),
        // Rails' default when a part declares none.
        contentType: headers.get('content-type') ?? 'application/octet-stream',
        size,
        sha256: hash.digest('hex'),
        path,
      });
    },
    async abandon() {
      file.destroy();
    },
  };
}

/** Browsers and undici escape `"` and newlines in names as %22, %0A, %0D. */
function decodeQuoted(text: string): string {
  return text.replace(/%22/g, '"').replace(/%0A/gi, '\n').replace(/%0D/gi, '\r');
}
