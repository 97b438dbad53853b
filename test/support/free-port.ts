import net from 'node:net';

/**
 * A loopback port nothing listens on right now: bound once by the OS, then released. For a
 * service that must know its port before it starts, or for an address that refuses connections.
 */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
