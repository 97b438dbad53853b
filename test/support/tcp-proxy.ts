import net from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * A loopback TCP proxy that fails the ways a network or a database host does: `cut()` closes
 * every connection and refuses new ones (errors come back at once); `stall()` stops passing bytes
 * and leaves connections open (a partition: nothing comes back at all). `restore()` ends either.
 */
export interface TcpProxy {
  port: number;
  cut(): void;
  stall(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  // Bytes held back while stalled, sent on when restored.
  const held = new Set<() => void>();
  let state: 'open' | 'cut' | 'stalled' = 'open';
  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  };
  const forward = (from: net.Socket, to: net.Socket) => {
    const waiting: Buffer[] = [];
    const flush = () => {
      for (const chunk of waiting.splice(0)) to.write(chunk);
    };
    held.add(flush);
    from.on('close', () => held.delete(flush));
    from.on('data', (chunk: Buffer) => {
      if (state === 'stalled') waiting.push(chunk);
      else to.write(chunk);
    });
  };
  const server = net.createServer((client) => {
    track(client);
    if (state === 'cut') {
      client.destroy();
      return;
    }
    const upstream = net.connect(target);
    track(upstream);
    forward(client, upstream);
    forward(upstream, client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    cut() {
      state = 'cut';
      for (const socket of sockets) socket.destroy();
    },
    stall() {
      state = 'stalled';
    },
    restore() {
      state = 'open';
      for (const flush of held) flush();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
