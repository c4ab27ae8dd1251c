// An HTTP/1.1 response written while its request's body is still arriving closes the connection, in stages
// (sidecar/early-response.ts, ADR 0024).
import assert from 'node:assert/strict';
import type http from 'node:http';
import net from 'node:net';
import { createHttpServers, type HttpServers } from '../../../sidecar/http-servers.ts';
import { LINGER_BYTES } from '../../../sidecar/early-response.ts';
import { waitFor } from '../../support/wait-for.ts';

describe('HTTP/1.1 server: an answer before the request body was read', () => {
  let servers: HttpServers;
  let tcp: net.Server;
  let port: number;
  const served: string[] = [];

  before(async () => {
    // /early answers at once, reading nothing; anything else once its body has ended.
    servers = createHttpServers((req, downstream) => {
      const res = downstream as http.ServerResponse;
      served.push(req.url!);
      if (req.url === '/early') return void res.writeHead(413, { 'content-length': 0 }).end();
      req.resume().on('end', () => res.end('done'));
    });
    tcp = net.createServer({ allowHalfOpen: true }, (s) => servers.http1.emit('connection', s));
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
    port = (tcp.address() as net.AddressInfo).port;
  });
  after(() => {
    servers.http1.closeAllConnections();
    tcp.close();
  });
  beforeEach(() => served.splice(0));

  /** A raw connection and everything it read; `ended` once the server's FIN came, `closed` at close. */
  function connect(): {
    socket: net.Socket;
    text: () => string;
    ended: () => boolean;
    closed: () => boolean;
  } {
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    let text = '';
    let ended = false;
    let closed = false;
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('end', () => (ended = true));
    socket.on('close', () => (closed = true));
    socket.on('error', () => undefined);
    return { socket, text: () => text, ended: () => ended, closed: () => closed };
  }

  const head = (path: string, length: number): string =>
    `POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-length: ${length}\r\n\r\n`;

  it('says Connection: close, ends the connection after it, reads the rest, and closes at the client FIN', async () => {
    const c = connect();
    c.socket.write(head('/early', 100_000) + 'y'.repeat(1000));
    await waitFor('the server FIN after the 413', () => c.ended());
    assert.match(c.text(), /^HTTP\/1\.1 413 .*\r\n[^]*connection: close\r\n/i);
    // The rest of the body, and a request after it, are read and dropped: nothing is served.
    c.socket.write('y'.repeat(99_000) + head('/next', 0));
    c.socket.end();
    await waitFor('the connection closed', () => c.closed());
    assert.deepEqual(served, ['/early']);
  });

  it('closes the connection once the rest goes past LINGER_BYTES', async () => {
    const c = connect();
    c.socket.write(head('/early', 10 * LINGER_BYTES));
    await waitFor('the server FIN after the 413', () => c.ended());
    const chunk = Buffer.alloc(64 * 1024, 'y');
    const pump = (): void => {
      while (!c.closed() && c.socket.write(chunk));
      if (!c.closed()) c.socket.once('drain', pump);
    };
    pump();
    await waitFor('the connection closed by the server', () => c.closed());
  });

  it('keeps the connection when the body came in full before the answer', async () => {
    const c = connect();
    c.socket.write(head('/a', 3) + 'abc');
    await waitFor('the first answer', () => c.text().includes('done'));
    c.socket.write(head('/b', 3) + 'abc');
    await waitFor('the second answer on the same connection', () => c.text().split('done').length === 3);
    assert.match(c.text(), /connection: keep-alive/i);
    assert.equal(c.ended(), false);
    c.socket.destroy();
  });
});
