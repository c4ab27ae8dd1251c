import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { refuseSelfConnect } from '../../sidecar/tcp-self-connect.ts';

// A connection whose kernel-chosen source port equals its destination port is connected to itself. The
// kernel's choice cannot be forced, so the test binds the source port itself, which produces the same socket.

/** A loopback port below the ephemeral range that nothing listens on (so no kernel choice can take it). */
async function unusedLowPort(): Promise<number> {
  for (let port = 23_000 + (process.pid % 4000); ; port++) {
    const server = net.createServer();
    const free = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (free) {
      await new Promise<void>((r) => server.close(() => r()));
      return port;
    }
  }
}

describe('TCP self-connect (loopback)', () => {
  it('a connection that reached itself is refused before anyone writes to it', async () => {
    const port = await unusedLowPort();
    const socket = refuseSelfConnect(net.connect({ host: '127.0.0.1', port, localPort: port }));
    let connected = false;
    socket.once('connect', () => (connected = !socket.destroyed));
    const [err] = (await once(socket, 'error')) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNREFUSED');
    assert.match(err.message, /connected to itself/);
    assert.equal(connected, false);
  });

  it('leaves a connection to a listener alone', async () => {
    const server = net.createServer((s) => s.end('hi'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as net.AddressInfo;
    const socket = refuseSelfConnect(net.connect({ host: '127.0.0.1', port }));
    let text = '';
    socket.on('data', (c: Buffer) => (text += c.toString()));
    await once(socket, 'end');
    assert.equal(text, 'hi');
    server.close();
  });
});
