// A socket learns its peer's address (Node's `_peername`) when remoteAddress is first read. The HTTP servers
// read it as each connection arrives, so every socket has that property before any request: a sampled
// request's span reading it later no longer gives some sockets another shape (ADR 0022).
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { createHttpServers, type HttpServers } from '../../../sidecar/http-servers.ts';
import { listenForHttpServers } from '../../support/http-servers-listener.ts';

describe('HTTP servers: the peer address is read on arrival', () => {
  let servers: HttpServers;
  let closeTcp: () => void;
  let port: number;
  /** Per request: whether its connection's socket (as handed over) had its peer address by then. */
  const learned: boolean[] = [];
  let handed: net.Socket | undefined;

  before(async () => {
    servers = createHttpServers((_req, res) => {
      learned.push(Object.hasOwn(handed!, '_peername'));
      res.end('ok');
    });
    ({ port, close: closeTcp } = await listenForHttpServers(servers, (socket) => (handed = socket)));
  });
  after(() => {
    servers.http1.closeAllConnections();
    servers.h2.close();
    closeTcp();
  });

  it('before the first HTTP/1.1 or HTTP/2 request, without anyone asking for it', async () => {
    await new Promise<void>((resolve, reject) => {
      http
        .get({ port, host: '127.0.0.1', agent: false }, (res) => res.resume().on('end', resolve))
        .on('error', reject);
    });
    const session = http2.connect(`http://127.0.0.1:${port}`);
    await new Promise<void>((resolve, reject) => {
      const stream = session.request({ ':path': '/' });
      stream.on('error', reject).resume().on('end', resolve);
    });
    session.close();
    assert.deepEqual(learned, [true, true]);
  });
});
