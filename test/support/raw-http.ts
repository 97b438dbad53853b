/**
 * A raw HTTP/1.1 client on loopback: bytes in, bytes out. For the tests that must decide every
 * byte sent and when (hostile targets and headers, a body cut short, a signal mid-request),
 * which no HTTP library lets through as they are.
 */
import net from 'node:net';

export interface RawRequest {
  method: string;
  /** The request-target, written as latin1: characters U+0080–U+00FF go out as single raw bytes. */
  target: string;
  /** Raw header lines, latin1 like the target. */
  headers?: readonly (readonly [string, string])[];
  /** With a body, Content-Length is sent too. */
  body?: Buffer | string;
}

interface RawAnswer {
  status: number;
  headers: Map<string, string>;
  body: Buffer;
}

export interface RawResponse extends RawAnswer {
  request: RawRequest;
}

/** The first final answer in the bytes read, or what it still lacks. */
type ParsedAnswer = { complete: true; answer: RawAnswer } | { complete: false; missing: string };

/** How long a request may go unanswered before the test calls it a hang. */
const NO_ANSWER_MS = 20_000;

/**
 * Reads the first final (non-1xx) answer in `data`: its body by Content-Length, chunked
 * encoding, or, once the server has `closed` the connection, up to the end. `method` HEAD (and
 * a 204 or 304) has no body.
 */
export function parseHttpAnswer(data: Buffer, { method = 'GET', closed = false }: { method?: string; closed?: boolean } = {}): ParsedAnswer {
  let offset = 0;
  for (;;) {
    const headEnd = data.indexOf('\r\n\r\n', offset);
    if (headEnd === -1) return { complete: false, missing: 'no complete answer' };
    const [statusLine = '', ...headerLines] = data.subarray(offset, headEnd).toString('latin1').split('\r\n');
    const match = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
    if (!match) return { complete: false, missing: 'not an HTTP answer' };
    const status = Number(match[1]);
    const headers = new Map<string, string>();
    for (const line of headerLines) {
      const colon = line.indexOf(':');
      headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    offset = headEnd + 4;
    if (status < 200) continue; // 100 Continue: the real answer follows
    const rest = data.subarray(offset);
    if (method === 'HEAD' || status === 204 || status === 304) return { complete: true, answer: { status, headers, body: Buffer.alloc(0) } };
    if (/chunked/i.test(headers.get('transfer-encoding') ?? '')) {
      const body = decodeChunked(rest);
      return typeof body === 'string' ? { complete: false, missing: body } : { complete: true, answer: { status, headers, body } };
    }
    if (headers.has('content-length')) {
      const length = Number(headers.get('content-length'));
      if (rest.length < length) return { complete: false, missing: `truncated answer (${rest.length} of ${length} bytes)` };
      return { complete: true, answer: { status, headers, body: rest.subarray(0, length) } };
    }
    if (!closed) return { complete: false, missing: 'an answer without a length, not ended yet' };
    return { complete: true, answer: { status, headers, body: rest } };
  }
}

/** The body of a chunked answer, or what is wrong with it. */
function decodeChunked(data: Buffer): Buffer | string {
  const chunks: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const lineEnd = data.indexOf('\r\n', offset);
    if (lineEnd === -1) return 'truncated chunked answer';
    const size = Number.parseInt(data.subarray(offset, lineEnd).toString('latin1'), 16);
    if (!Number.isFinite(size)) return 'bad chunk size';
    if (size === 0) return Buffer.concat(chunks);
    chunks.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
    offset = lineEnd + 2 + size + 2;
  }
}

/** The request line and headers of `request` to 127.0.0.1:`port`, asking the server to close the connection after it. */
export function requestHead(port: number, request: RawRequest): Buffer {
  const lines = [`${request.method} ${request.target} HTTP/1.1`, `Host: 127.0.0.1:${port}`, 'Connection: close'];
  for (const [name, value] of request.headers ?? []) lines.push(`${name}: ${value}`);
  if (request.body !== undefined) lines.push(`Content-Length: ${Buffer.byteLength(request.body)}`);
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
}

/** Sends one request on a connection of its own and reads the answer until the server closes it. */
export function sendRawRequest(port: number, request: RawRequest): Promise<RawResponse> {
  return sendRawRequestParts(port, request, [Buffer.concat([requestHead(port, request), toBuffer(request.body ?? '')])]);
}

/** Like `sendRawRequest`, but writes `parts` one after another with `pauseMs` between them (a slow client). */
export async function sendRawRequestParts(port: number, request: RawRequest, parts: Buffer[], pauseMs = 0): Promise<RawResponse> {
  const connection = await RawConnection.open(port);
  const closed = connection.whenClosed(`${describeRawRequest(request)}: the server to answer and close the connection`);
  for (const [index, part] of parts.entries()) {
    if (index > 0 && pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
    if (connection.closed) break;
    connection.write(part);
  }
  await closed;
  const parsed = parseHttpAnswer(connection.received(), { method: request.method, closed: true });
  if (!parsed.complete) throw new Error(`${parsed.missing} to ${describeRawRequest(request)}: ${previewBytes(connection.received())}`);
  return { request, ...parsed.answer };
}

/** One raw connection to 127.0.0.1: the test writes bytes, reads what came back, and sees when the server closes it. */
export class RawConnection {
  private readonly chunks: Buffer[] = [];
  private receivedBytes = 0;
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.receivedBytes += chunk.length;
    });
    socket.on('close', () => (this.closed = true));
    // An early answer (401, 413) can race the test's writes into a reset: judged by what arrived.
    socket.on('error', () => {});
  }

  static open(port: number): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new RawConnection(socket));
      });
    });
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  received(): Buffer {
    return Buffer.concat(this.chunks);
  }

  receivedCount(): number {
    return this.receivedBytes;
  }

  /** Resolves once the server has closed the connection; rejects, naming `what`, on a hang. */
  whenClosed(what: string): Promise<void> {
    return this.until(() => this.closed, () => `timed out waiting for ${what}`);
  }

  /** Waits for the first final (non-1xx) answer to arrive whole; rejects, naming `what`, if it cannot. */
  async response(what: string): Promise<RawAnswer> {
    let parsed: ParsedAnswer = { complete: false, missing: 'nothing read yet' };
    await this.until(
      () => (parsed = parseHttpAnswer(this.received(), { closed: this.closed })).complete || this.closed,
      () => `${what}: no complete answer (got ${previewBytes(this.received())})`,
    );
    // Assigned inside the callback, which TypeScript's narrowing does not follow.
    const result = parsed as ParsedAnswer;
    if (!result.complete) throw new Error(`${what}: ${result.missing} (got ${previewBytes(this.received())})`);
    return result.answer;
  }

  /** Checks `done` whenever bytes arrive or the connection closes, until it holds. */
  private until(done: () => boolean, hang: () => string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!done()) return;
        stop();
        resolve();
      };
      const timer = setTimeout(() => {
        stop();
        reject(new Error(hang()));
      }, NO_ANSWER_MS);
      const stop = () => {
        clearTimeout(timer);
        this.socket.off('data', check).off('close', check);
      };
      this.socket.on('data', check).on('close', check);
      check();
    });
  }
}

const toBuffer = (body: Buffer | string) => (typeof body === 'string' ? Buffer.from(body, 'utf8') : body);

/** The first bytes of `data`, quoted, for a failure message. */
export const previewBytes = (data: Buffer) => JSON.stringify(data.subarray(0, 300).toString('latin1'));

/** A request in a line, shortened, for a failure message. */
export function describeRawRequest(request: RawRequest): string {
  const headers = JSON.stringify((request.headers ?? []).map(([name, value]) => [name.slice(0, 60), value.slice(0, 60)]));
  const body = request.body === undefined ? '' : ` body ${previewBytes(toBuffer(request.body)).slice(0, 200)}`;
  return `${request.method} ${JSON.stringify(request.target.slice(0, 200))} headers ${headers}${body}`;
}
