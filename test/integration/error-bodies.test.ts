import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WEBHOOK_TOKEN, makeDataDir, startInProcessService, testEnvironment, waitFor, type InProcessService } from '../support/service-harness.ts';

// Every refusal has one shape, `{ error, field? }`: also the ones Node's HTTP parser and Fastify
// produce before any route runs, whose own bodies are `{"error","message","statusCode"}` or none.

interface RawAnswer {
  status: number;
  headers: string;
  body: string;
}

/** Sends bytes as they are (no client would send these) and reads the answer until the server closes. */
function sendRaw(port: number, text: string): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(text));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(parseAnswer(Buffer.concat(chunks).toString('latin1'))));
  });
}

function parseAnswer(text: string): RawAnswer {
  const split = text.indexOf('\r\n\r\n');
  const head = text.slice(0, split);
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]), headers: head.toLowerCase(), body: text.slice(split + 4) };
}

/** The answer is `{ error }` (with `field` at most), as JSON. */
function expectErrorShape(answer: { status: number; headers: string; body: string }, status: number): void {
  expect(answer.status).toBe(status);
  expect(answer.headers).toMatch(/content-type: application\/json/);
  const body = JSON.parse(answer.body) as Record<string, unknown>;
  expect(typeof body.error).toBe('string');
  expect(Object.keys(body).filter((key) => key !== 'error' && key !== 'field')).toEqual([]);
}

let service: InProcessService;
let port: number;
const webhook = `/webhooks/wavoip?token=${WEBHOOK_TOKEN}`;

beforeAll(async () => {
  service = await startInProcessService(testEnvironment('http://127.0.0.1:9', await makeDataDir()));
  port = Number(new URL(service.url).port);
});

afterAll(async () => {
  await service?.stop();
});

describe('refused by Node before Fastify sees the request', () => {
  it('431 for headers larger than Node takes', async () => {
    const answer = await sendRaw(port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: ${'a'.repeat(20_000)}\r\n\r\n`);
    expectErrorShape(answer, 431);
    expect(JSON.parse(answer.body)).toEqual({ error: 'the request headers are too large' });
  });

  it.each([
    ['a Content-Length that is not a number', `POST ${webhook} HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n`, 'invalid Content-Length'],
    ['both Content-Length and Transfer-Encoding', `POST ${webhook} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 'Transfer-Encoding'],
    ['a chunk size that is not hexadecimal', `POST ${webhook} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n`, 'chunk'],
    ['a request line that is not HTTP', 'hello there\r\n\r\n', 'malformed HTTP request'],
  ])('400 for %s', async (_what, request, words) => {
    const answer = await sendRaw(port, request);
    expectErrorShape(answer, 400);
    expect(JSON.parse(answer.body).error).toContain(words);
  });
});

describe('refused by Fastify before a route runs', () => {
  it.each([
    ['a URL that does not decode', `GET /api/calls/%E0%A4%A HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 400],
    ['a body that is not JSON', `POST ${webhook} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{x}`, 400],
    ['a body of another type', `POST ${webhook} HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 3\r\nConnection: close\r\n\r\na,b`, 415],
    ['a body over the limit', `POST ${webhook} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 70000\r\nConnection: close\r\n\r\n{}`, 413],
    ['an unknown method', `PROPFIND /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 404],
    ['an HTTP/1.1 request without Host', `GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n`, 400],
    ['an Expect header other than 100-continue', `POST ${webhook} HTTP/1.1\r\nHost: x\r\nExpect: later\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`, 417],
  ])('%s', async (_what, request, status) => {
    // The 417 is written as a chunked body by Node; its one chunk is the JSON.
    const answer = await sendRaw(port, request);
    const chunked = /transfer-encoding: chunked/.test(answer.headers);
    expectErrorShape({ ...answer, body: chunked ? (answer.body.split('\r\n')[1] ?? '') : answer.body }, status);
  });

  it('503, not Fastify\'s own body, for a request arriving on an open connection while the service shuts down', async () => {
    const own = await startInProcessService(testEnvironment('http://127.0.0.1:9', await makeDataDir(), { SHUTDOWN_GRACE: '10s' }));
    const ownPort = Number(new URL(own.url).port);
    // Holds the shutdown open: a webhook whose body never finishes.
    const stalled = net.connect(ownPort, '127.0.0.1');
    stalled.on('error', () => {});
    stalled.write(`POST ${webhook} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{`);
    // Requests whose headers are not finished yet: their connections are not idle, so they stay open.
    // /readyz too: load balancers poll it while a replica drains, and its own 503 has another shape.
    const late = ['/healthz', '/readyz'].map((path) => {
      const socket = net.connect(ownPort, '127.0.0.1');
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      const closed = new Promise((resolve) => socket.on('close', resolve));
      const started = new Promise((resolve) => socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n`, resolve));
      return { path, socket, chunks, closed, started };
    });
    await Promise.all(late.map((each) => each.started));
    // Once the service answers on another connection, it has read what these sent.
    expect((await fetch(`${own.url}/healthz`)).status).toBe(200);
    const stopped = own.stop();
    await waitFor(() => !own.service.app.server.listening, 'the service to stop listening');
    for (const each of late) {
      each.socket.write('\r\n');
      await each.closed;
      const answer = parseAnswer(Buffer.concat(each.chunks).toString('latin1'));
      expect(answer.status, `${each.path}: ${answer.body}`).toBe(503);
      expectErrorShape(answer, 503);
    }
    stalled.destroy();
    await stopped;
  });
});
