import assert from 'node:assert/strict';
import net from 'node:net';
import { peerHasSentFin } from '../../../sidecar/tcp-state.ts';
import { waitFor } from '../../support/wait-for.ts';

// The kernel's view of a connection, which http-servers.ts asks when nghttp2 has stopped reading: the
// peer's FIN is seen without a read, while the socket itself is paused and never emits 'end'.
describe('peerHasSentFin (getsockopt TCP_INFO)', () => {
  it("is false on an open connection, true once the peer's FIN has arrived, though nothing was read", async function () {
    if (process.platform !== 'linux') return this.skip();
    let accepted: net.Socket | undefined;
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => (accepted = s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    try {
      const socket = await waitFor('the connection to be accepted', () => accepted);
      let ended = false;
      socket.on('end', () => (ended = true));
      client.write('unread bytes before the FIN');
      assert.equal(peerHasSentFin(socket), false);
      client.end();
      await waitFor("the kernel to have the client's FIN", () => peerHasSentFin(socket) || undefined);
      assert.equal(ended, false, 'the paused socket never read the end');
    } finally {
      client.destroy();
      accepted?.destroy();
      server.close();
    }
  });

  it('is undefined for a socket without a file descriptor', () => {
    assert.equal(peerHasSentFin(new net.Socket()), undefined);
  });
});
