import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * Requests Node's HTTP parser refuses before Fastify sees them (headers too large, a malformed
 * request line or Content-Length, a stalled request). Fastify's own answer to these is
 * `{"error","message","statusCode"}`; this one has the shape of every other refusal, `{ error }`.
 */
export function answerClientError(error: Error & { code?: string }, socket: Duplex): void {
  // Reset by the client: there is no one to answer.
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const { status, message } = describeParseError(error.code);
  const body = JSON.stringify({ error: message });
  // As Node's own handler does: never write into an answer already under way on this socket (a
  // recording being streamed, say), which the client would read as part of it.
  const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
  if (socket.writable && !inFlight?.headersSent) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  }
  socket.destroy(error);
}

/** Node's codes (llhttp's HPE_* and its own) in words; the parser's messages name its internals. */
function describeParseError(code: string | undefined): { status: number; message: string } {
  switch (code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, message: 'the request took too long to arrive' };
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, message: 'the request headers are too large' };
    case 'HPE_INVALID_CONTENT_LENGTH':
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
      return { status: 400, message: 'malformed HTTP request: invalid Content-Length header' };
    case 'HPE_INVALID_TRANSFER_ENCODING':
    case 'HPE_INVALID_CHUNK_SIZE':
      return { status: 400, message: 'malformed HTTP request: invalid Transfer-Encoding or chunk' };
    case 'HPE_INVALID_METHOD':
      return { status: 400, message: 'malformed HTTP request: unknown method' };
    default:
      return { status: 400, message: 'malformed HTTP request' };
  }
}
