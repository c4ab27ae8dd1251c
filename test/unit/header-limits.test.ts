import assert from 'node:assert/strict';
import net from 'node:net';
import http2 from 'node:http2';
import { createHttpServers, type HttpServers } from '../../sidecar/http-servers.ts';
import { listenForHttpServers } from '../support/http-servers-listener.ts';
import { inboundPortProtocol, servicePortProtocol } from '../../mesh-model/port-protocol.ts';
import { buildProxyView } from '../../mesh-model/proxy-view.ts';
import { serviceWithEndpoints } from '../support/mesh-manifests.ts';

// The HTTP servers get their sockets with emit('connection'), as the listeners hand them over; the limits
// must hold there, not only on a server that listen()s.
describe('request header limits on handed-over sockets', () => {
  let servers: HttpServers;
  let closeTcp: () => void;
  let port: number;
  const reached: string[] = [];

  before(async () => {
    servers = createHttpServers((req, res) => {
      reached.push(String(req.url));
      res.end('ok');
    });
    ({ port, close: closeTcp } = await listenForHttpServers(servers));
  });
  after(() => {
    servers.http1.closeAllConnections();
    servers.h2.close();
    closeTcp();
  });
  beforeEach(() => (reached.length = 0));

  function raw(request: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => s.end(request));
      let out = '';
      s.setEncoding('latin1').on('data', (d: string) => (out += d));
      s.on('close', () => resolve(out));
      s.on('error', reject);
    });
  }
  const headers = (n: number, size = 8): string =>
    Array.from({ length: n }, (_, i) => `x-h${i}: ${'v'.repeat(size)}\r\n`).join('');

  it('HTTP/1.1: 100 headers pass, 101 get 431, a 62 KiB header block gets 431', async () => {
    assert.match(await raw(`GET /ok HTTP/1.1\r\nhost: a\r\n${headers(99)}\r\n`), /^HTTP\/1.1 200/);
    assert.match(await raw(`GET /many HTTP/1.1\r\nhost: a\r\n${headers(100)}\r\n`), /^HTTP\/1.1 431/);
    const big = `GET /big HTTP/1.1\r\nhost: a\r\n${headers(62, 1000)}\r\n`;
    assert.match(await raw(big), /^HTTP\/1.1 431/);
    assert.deepEqual(reached, ['/ok']);
  });

  it('HTTP/1.1 parser: a request line saying HTTP/2.0 gets 505 (found by the fuzz test: it crashed the proxy)', async () => {
    const reply = await raw('DELETE /v HTTP/2.0\r\nhost: a\r\ncontent-length: 1\r\n\r\nx');
    assert.match(reply, /^HTTP\/1.1 505/);
    assert.match(await raw(`GET /after HTTP/1.1\r\nhost: a\r\n\r\n`), /^HTTP\/1.1 200/);
    assert.deepEqual(reached, ['/after']);
  });

  it('HTTP/1.1 upgrade requests are held to the same limits', async () => {
    const up = `GET /ws HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: websocket\r\n${headers(100)}\r\n`;
    assert.match(await raw(up), /^HTTP\/1.1 431/);
    assert.deepEqual(reached, []);
  });

  it('HTTP/2: 101 headers get 431, a 62 KiB header block gets 431, nothing reaches the handler', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const status = (h: Record<string, string>, path: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = session.request({ ':path': path, ...h });
        req.on('response', (r) => resolve(Number(r[':status'])));
        req.on('error', reject);
        req.resume();
        req.end();
      });
    const many = (n: number, size = 8): Record<string, string> =>
      Object.fromEntries(Array.from({ length: n }, (_, i) => [`x-h${i}`, 'v'.repeat(size)]));
    try {
      assert.equal(await status(many(100), '/ok'), 200);
      assert.equal(await status(many(101), '/many'), 431);
      assert.equal(await status(many(62, 1000), '/big'), 431);
    } finally {
      session.close();
    }
    assert.deepEqual(reached, ['/ok']);
  });
});

describe('Service port protocols', () => {
  const cases: [string | undefined, string | undefined, string][] = [
    ['http', undefined, 'http'],
    ['http-web', undefined, 'http'],
    ['h2c', undefined, 'http'],
    ['grpc', undefined, 'http'],
    ['grpc-web', undefined, 'http'],
    ['web', undefined, 'detect'],
    [undefined, undefined, 'detect'],
    ['httpd', undefined, 'detect'],
    ['web', 'HTTP', 'http'],
    ['web', 'kubernetes.io/h2c', 'http'],
    ['web', 'grpc', 'http'],
    ['http', 'tcp', 'opaque'],
    ['db', 'postgresql', 'opaque'],
    ['http', 'https', 'detect'],
  ];
  it("inbound: a pod's own port takes the protocol of the Service ports that send to it", () => {
    const pod = { name: 'p', namespace: 'shop', ip: '10.0.0.5', serviceAccount: 'p', meshed: true };
    const view = buildProxyView(
      [
        ...serviceWithEndpoints('shop', 'web', '10.96.0.1', [[80, 8080, 'http']], [pod]),
        ...serviceWithEndpoints('shop', 'db', '10.96.0.2', [[5432, 5432, 'db']], [pod], 'postgresql'),
        ...serviceWithEndpoints('shop', 'misc', '10.96.0.3', [[9000, 9000, 'misc']], [pod]),
        // Another Service sends to 8080 as opaque: HTTP still wins for the port.
        ...serviceWithEndpoints('other', 'raw', '10.96.0.4', [[81, 8080, 'raw']], [pod], 'tcp'),
      ],
      'shop',
      'cluster.local',
    );
    assert.equal(inboundPortProtocol(view, '10.0.0.5', 8080), 'http');
    assert.equal(inboundPortProtocol(view, '::ffff:10.0.0.5', 8080), 'http');
    assert.equal(inboundPortProtocol(view, '10.0.0.5', 5432), 'opaque');
    assert.equal(inboundPortProtocol(view, '10.0.0.5', 9000), 'detect');
    assert.equal(inboundPortProtocol(view, '10.0.0.6', 8080), 'detect');
    assert.equal(inboundPortProtocol(undefined, '10.0.0.5', 8080), 'detect');
  });
  for (const [name, appProtocol, want] of cases)
    it(`${name ?? '(no name)'} / ${appProtocol ?? '(no appProtocol)'} → ${want}`, () =>
      assert.equal(servicePortProtocol({ name, appProtocol }), want));
});
