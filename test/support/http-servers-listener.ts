// A loopback TCP listener that hands each connection to createHttpServers' HTTP/1.1 or HTTP/2 server by
// its first byte, as the sidecar's listeners do (without their TLS and capture).
import net from 'node:net';
import type { HttpServers } from '../../sidecar/http-servers.ts';

export async function listenForHttpServers(
  servers: HttpServers,
  onSocket: (socket: net.Socket) => void = () => undefined,
): Promise<{ port: number; close: () => void }> {
  const tcp = net.createServer((socket) => {
    onSocket(socket);
    socket.once('readable', () => {
      const first = socket.read(1) as Buffer | null;
      if (first) socket.unshift(first);
      if (first?.[0] === 0x50 /* P: h2 preface */) servers.h2.emit('connection', socket);
      else servers.http1.emit('connection', socket);
    });
  });
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
  return { port: (tcp.address() as net.AddressInfo).port, close: () => tcp.close() };
}
