import fs from 'node:fs/promises';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import S3rver from 's3rver';

/** s3rver's built-in account. */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

export interface RunningS3rver {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  port: number;
  /** Where s3rver keeps the buckets; survives `stop`, so `start` again finds the same objects. */
  directory: string;
  /** Closes the server and every connection to it: S3 is down until `start`. */
  stop(): Promise<void>;
  /** Starts it again on the same port and directory. */
  start(): Promise<void>;
  /** Stops it and deletes its directory. */
  dispose(): Promise<void>;
}

interface S3rverServer {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer: Server;
}

/** A real S3 server (s3rver) on loopback, with `buckets` created. */
export async function startS3rver(buckets: string[] = ['recordings']): Promise<RunningS3rver> {
  const directory = await fs.mkdtemp(path.join(os.tmpdir(), 's3rver-'));
  let port = 0;
  let server: S3rverServer | undefined;
  const start = async () => {
    const instance = new S3rver({
      port,
      address: '127.0.0.1',
      silent: true,
      directory,
      configureBuckets: buckets.map((name) => ({ name })),
    }) as S3rverServer;
    port = (await instance.run()).port;
    server = instance;
  };
  const stop = async () => {
    if (server === undefined) return;
    const stopping = server.close();
    server.httpServer.closeAllConnections();
    await stopping;
    server = undefined;
  };
  await start();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    directory,
    stop,
    start,
    async dispose() {
      await stop();
      await fs.rm(directory, { recursive: true, force: true });
    },
  };
}

export interface ProxiedRequest {
  method: string;
  /** Path and query, e.g. `/recordings/calls/a.ogg?partNumber=2&uploadId=…&x-id=UploadPart`. */
  url: string;
  headers: IncomingHttpHeaders;
}

export interface S3Proxy {
  /** `http://127.0.0.1:<port>`: use as the S3 endpoint. */
  endpoint: string;
  /** Every request that reached the proxy, oldest first. */
  requests: ProxiedRequest[];
  /**
   * From now on, a request for which `matches` holds has its connection cut (both ways) once
   * `afterBytes` of its body have been passed on; with `everything`, every request after that
   * is refused too, until `heal`.
   */
  cutWhen(matches: (request: ProxiedRequest) => boolean, afterBytes: number, options?: { everything?: boolean }): void;
  /** From now on, a request for which `matches` holds gets no answer (it is not passed on) until `heal`. */
  holdWhen(matches: (request: ProxiedRequest) => boolean): void;
  /** Passes everything again; held requests lose their connection. */
  heal(): void;
  close(): Promise<void>;
}

/**
 * An HTTP proxy in front of S3 that can cut an upload part-way, the way a network or an S3
 * that goes away does. The Host header is passed on unchanged, so request signatures still hold.
 */
export async function startS3Proxy(target: string): Promise<S3Proxy> {
  const upstream = new URL(target);
  const requests: ProxiedRequest[] = [];
  let rule: { matches: (request: ProxiedRequest) => boolean; afterBytes: number; everything: boolean } | undefined;
  let down = false;
  let hold: ((request: ProxiedRequest) => boolean) | undefined;
  const held = new Set<Socket>();
  const sockets = new Set<Socket>();

  const server = createServer((req: IncomingMessage, res) => {
    const seen = { method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers };
    requests.push(seen);
    if (down) {
      req.socket.destroy();
      return;
    }
    if (hold?.(seen)) {
      held.add(req.socket);
      return;
    }
    // `expect` is never signed; without it the server does not wait for a 100 Continue we would not relay.
    const { expect: _expect, ...headers } = req.headers;
    const forward = httpRequest(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    forward.on('error', () => req.socket.destroy());
    const cut = rule?.matches(seen) ? rule : undefined;
    let passed = 0;
    req.on('data', (chunk: Buffer) => {
      if (cut !== undefined && passed + chunk.length >= cut.afterBytes) {
        forward.write(chunk.subarray(0, Math.max(0, cut.afterBytes - passed)));
        if (cut.everything) down = true;
        forward.destroy();
        req.socket.destroy();
        return;
      }
      passed += chunk.length;
      forward.write(chunk);
    });
    req.on('end', () => forward.end());
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    cutWhen(matches, afterBytes, options = {}) {
      rule = { matches, afterBytes, everything: options.everything ?? false };
    },
    holdWhen(matches) {
      hold = matches;
    },
    heal() {
      rule = undefined;
      down = false;
      hold = undefined;
      for (const socket of held) socket.destroy();
      held.clear();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
