import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A loopback stand-in for storage.wavoip.com that can misbehave the ways a real storage or CDN
 * does. Each path gets a behaviour; an unknown path answers 404 like a recording not ready yet.
 */
export type FakeBehaviour =
  /**
   * Answers `status` (default 200) with the bytes; `chunked` omits Content-Length. A null
   * `contentType` sends no Content-Type header at all; `headers` are added to the response.
   */
  | { kind: 'body'; body: Buffer; contentType: string | null; status?: number; chunked?: boolean; headers?: Record<string, string> }
  /** A bare status with optional headers (e.g. Retry-After) and a short text body. */
  | { kind: 'status'; status: number; headers?: Record<string, string> }
  /** Declares the full Content-Length, sends half the bytes, then closes the socket. */
  | { kind: 'truncated'; body: Buffer; contentType: string }
  /** Chunked; sends half the bytes, then resets the connection (TCP RST). */
  | { kind: 'reset'; body: Buffer; contentType: string }
  /** Accepts the request and never answers. */
  | { kind: 'stall-before-headers' }
  /** Sends 200 and chunked headers, then nothing. */
  | { kind: 'stall-after-headers'; contentType: string }
  /** Declares the full Content-Length, sends half the bytes, then nothing. */
  | { kind: 'stall-mid-body'; body: Buffer; contentType: string }
  /** Chunked: `head`, then zero bytes for as long as the client reads. */
  | { kind: 'endless'; head: Buffer; contentType: string }
  | { kind: 'redirect'; location: string; status?: 301 | 302 | 303 | 307 | 308 }
  /** `first` for the first `times` requests, then `then` (e.g. 404 ×3 then the audio). */
  | { kind: 'sequence'; first: FakeBehaviour; times: number; then: FakeBehaviour }
  /** Calls `onRequest` as the request arrives, then answers as `then` (e.g. to load the machine just then). */
  | { kind: 'tap'; onRequest: () => void; then: FakeBehaviour }
  /** Waits `delayMs` before answering as `then`: a storage far away, so downloads overlap. */
  | { kind: 'delayed'; delayMs: number; then: FakeBehaviour }
  /** Answers as `then` once `until` settles: a download that lasts until the test lets it end. */
  | { kind: 'held'; until: Promise<unknown>; then: FakeBehaviour }
  /**
   * Declares the full Content-Length, sends half the bytes, and the rest once `until` settles:
   * a download under way, its temp file written in part, until the test lets it end.
   */
  | { kind: 'paused-mid-body'; body: Buffer; contentType: string; until: Promise<unknown> };

export interface FakeWavoipStorage {
  /** `http://127.0.0.1:<port>` */
  origin: string;
  url(path: string): string;
  setRoute(path: string, behaviour: FakeBehaviour): void;
  /** How many requests reached `path` so far. */
  requests(path: string): number;
  /** How many responses to `path` were sent in full (not cut off by a client that went away). */
  completed(path: string): number;
  /** How many requests to `path` the client went away from before the response was sent in full. */
  abandoned(path: string): number;
  /** When (Date.now()) each request to `path` arrived, oldest first. */
  requestTimes(path: string): number[];
  /** The path of every request so far, in the order they arrived. */
  requestedPaths(): string[];
  /** Also destroys open sockets, so stalled responses cannot hang the test run. */
  close(): Promise<void>;
}

export interface FakeWavoipStorageOptions {
  /** Listen on this loopback port (e.g. one a test first saw refused) instead of a free one. */
  port?: number;
}

export async function startFakeWavoipStorage(options: FakeWavoipStorageOptions = {}): Promise<FakeWavoipStorage> {
  const routes = new Map<string, FakeBehaviour>();
  const counts = new Map<string, number>();
  const completedCounts = new Map<string, number>();
  const abandonedCounts = new Map<string, number>();
  const times = new Map<string, number[]>();
  const arrivals: string[] = [];

  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://fake').pathname;
    const count = (counts.get(path) ?? 0) + 1;
    counts.set(path, count);
    times.set(path, [...(times.get(path) ?? []), Date.now()]);
    arrivals.push(path);
    res.on('finish', () => completedCounts.set(path, (completedCounts.get(path) ?? 0) + 1));
    res.on('close', () => {
      if (!res.writableFinished) abandonedCounts.set(path, (abandonedCounts.get(path) ?? 0) + 1);
    });
    const behaviour = routes.get(path) ?? { kind: 'status', status: 404 };
    respondWith(resolveSequence(behaviour, count), req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    origin,
    url: (path) => `${origin}${path}`,
    setRoute: (path, behaviour) => void routes.set(path, behaviour),
    requests: (path) => counts.get(path) ?? 0,
    completed: (path) => completedCounts.get(path) ?? 0,
    abandoned: (path) => abandonedCounts.get(path) ?? 0,
    requestTimes: (path) => [...(times.get(path) ?? [])],
    requestedPaths: () => [...arrivals],
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** `count` is 1-based: the request number on this path. */
function resolveSequence(behaviour: FakeBehaviour, count: number): FakeBehaviour {
  if (behaviour.kind !== 'sequence') return behaviour;
  return count <= behaviour.times
    ? resolveSequence(behaviour.first, count)
    : resolveSequence(behaviour.then, count - behaviour.times);
}

function respondWith(behaviour: FakeBehaviour, req: IncomingMessage, res: ServerResponse): void {
  const half = (body: Buffer) => body.subarray(0, Math.floor(body.length / 2));
  switch (behaviour.kind) {
    case 'body': {
      res.statusCode = behaviour.status ?? 200;
      for (const [name, value] of Object.entries(behaviour.headers ?? {})) res.setHeader(name, value);
      if (behaviour.contentType !== null) res.setHeader('content-type', behaviour.contentType);
      if (!behaviour.chunked) {
        res.setHeader('content-length', behaviour.body.length);
        res.end(behaviour.body);
        return;
      }
      // A single end(body) would make node add Content-Length; writing first forces chunked.
      res.write(half(behaviour.body));
      res.end(behaviour.body.subarray(half(behaviour.body).length));
      return;
    }
    case 'status': {
      res.writeHead(behaviour.status, { 'content-type': 'text/plain', ...behaviour.headers });
      res.end(`status ${behaviour.status}\n`);
      return;
    }
    case 'truncated': {
      res.writeHead(200, { 'content-type': behaviour.contentType, 'content-length': behaviour.body.length });
      res.write(half(behaviour.body), () => res.destroy());
      return;
    }
    case 'reset': {
      res.writeHead(200, { 'content-type': behaviour.contentType });
      res.write(half(behaviour.body), () => req.socket.resetAndDestroy());
      return;
    }
    case 'stall-before-headers':
      return;
    case 'stall-after-headers': {
      res.writeHead(200, { 'content-type': behaviour.contentType });
      res.flushHeaders();
      return;
    }
    case 'stall-mid-body': {
      res.writeHead(200, { 'content-type': behaviour.contentType, 'content-length': behaviour.body.length });
      res.write(half(behaviour.body));
      return;
    }
    case 'endless': {
      res.writeHead(200, { 'content-type': behaviour.contentType });
      res.write(behaviour.head);
      writeZerosUntilClosed(res);
      return;
    }
    case 'redirect': {
      res.writeHead(behaviour.status ?? 302, { location: behaviour.location });
      res.end();
      return;
    }
    case 'tap':
      behaviour.onRequest();
      respondWith(behaviour.then, req, res);
      return;
    case 'delayed': {
      const timer = setTimeout(() => respondWith(behaviour.then, req, res), behaviour.delayMs);
      res.on('close', () => clearTimeout(timer));
      return;
    }
    case 'held': {
      const answer = () => {
        if (!res.destroyed) respondWith(behaviour.then, req, res);
      };
      void behaviour.until.then(answer, answer);
      return;
    }
    case 'paused-mid-body': {
      res.writeHead(200, { 'content-type': behaviour.contentType, 'content-length': behaviour.body.length });
      res.write(half(behaviour.body));
      const rest = () => {
        if (!res.destroyed) res.end(behaviour.body.subarray(half(behaviour.body).length));
      };
      void behaviour.until.then(rest, rest);
      return;
    }
    case 'sequence':
      throw new Error('resolveSequence unwraps sequences before responding');
  }
}

function writeZerosUntilClosed(res: ServerResponse): void {
  const chunk = Buffer.alloc(64 * 1024);
  const pump = (): void => {
    while (!res.destroyed && res.write(chunk));
    if (!res.destroyed) res.once('drain', pump);
  };
  pump();
}
