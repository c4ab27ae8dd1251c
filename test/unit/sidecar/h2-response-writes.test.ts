// How the outbound listener writes an HTTP/2 response it forwards (h2c app → sidecar → h2c app, as addressed):
// one socket write per response when the request takes no trailers (END_STREAM on the last DATA frame, not
// in an empty frame of its own), and the trailers forwarded when it does (`te: trailers`).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { setConnectionInfo } from '../../../sidecar/connection-info.ts';
import { createOutboundListener } from '../../../sidecar/outbound-listener.ts';
import { LoadBalancer } from '../../../sidecar/load-balancer.ts';
import { ProxyMetrics } from '../../../sidecar/metrics.ts';
import { UpstreamPools } from '../../../sidecar/upstream-pools.ts';
import type { ProxyView } from '../../../mesh-model/proxy-view.ts';
import { eventually } from '../../../lib/eventually.ts';

describe('sidecar: HTTP/2 response writes', () => {
  const closers: (() => void)[] = [];
  afterEach(() => {
    for (const close of closers.splice(0)) close();
  });

  const listen = async (server: net.Server | http2.Http2Server): Promise<number> => {
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    server.on('connection', (socket: net.Socket) => closers.push(() => socket.destroy()));
    closers.push(() => server.close());
    return (server.address() as AddressInfo).port;
  };

  /** An h2c app, the outbound listener forwarding to it as addressed, and a client session counting reads. */
  async function setUp(): Promise<{
    client: http2.ClientHttp2Session;
    reads: () => number;
    metrics: ProxyMetrics;
  }> {
    const app = http2.createServer();
    app.on('stream', (stream, headers) => {
      // '/compat': as Node's compatibility API answers, its END_STREAM in a write of its own after the body.
      const compat = headers[':path'] === '/compat';
      const trailers = compat || headers.te === 'trailers';
      stream.respond(
        { ':status': 200, 'content-type': 'text/plain', 'content-length': 1024 },
        { waitForTrailers: trailers },
      );
      if (trailers)
        stream.on('wantTrailers', () => stream.sendTrailers(compat ? {} : { 'x-checksum': 'abc' }));
      stream.end('x'.repeat(1024));
    });
    const appPort = await listen(app);
    const pools = new UpstreamPools(() => undefined);
    closers.push(() => pools.destroy());
    const view = { byDestination: new Map(), endpoints: new Map() } as unknown as ProxyView;
    const metrics = new ProxyMetrics();
    const { http } = createOutboundListener({
      deps: { pools, lb: new LoadBalancer(), metrics },
      view: () => view,
      detectTimeoutMs: 1000,
      ownPorts: new Set(),
    });
    // The listener's connections as protocol detection hands them over.
    const front = net.createServer((socket) => {
      setConnectionInfo(socket, { address: '127.0.0.1', port: appPort, peerIdentity: undefined });
      http.h2.emit('connection', socket);
    });
    const frontPort = await listen(front);
    // A relay between the client and the listener that counts what comes back, read by read.
    let reads = 0;
    const relay = net.createServer((socket) => {
      const upstream = net.connect(frontPort, '127.0.0.1');
      socket.pipe(upstream);
      upstream.on('data', (chunk: Buffer) => {
        reads++;
        socket.write(chunk);
      });
      closers.push(() => upstream.destroy());
    });
    const port = await listen(relay);
    const client = http2.connect(`http://127.0.0.1:${port}`);
    closers.push(() => client.close());
    return { client, reads: () => reads, metrics };
  }

  function get(client: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders = {}, path = '/') {
    return new Promise<{ body: string; trailers: http2.IncomingHttpHeaders | undefined }>(
      (resolve, reject) => {
        const stream = client.request({ ':path': path, ...headers });
        let body = '';
        let trailers: http2.IncomingHttpHeaders | undefined;
        stream.setEncoding('utf8').on('data', (c: string) => (body += c));
        stream.on('trailers', (t: http2.IncomingHttpHeaders) => (trailers = t));
        stream.on('end', () => resolve({ body, trailers }));
        stream.on('error', reject);
      },
    );
  }

  it('a response to a request without te: trailers goes out in one write', async () => {
    const { client, reads } = await setUp();
    await get(client); // the session's own frames (SETTINGS and their acks) go first
    const before = reads();
    for (let i = 0; i < 10; i++) assert.equal((await get(client)).body.length, 1024);
    assert.equal(reads() - before, 10);
  });

  it('so does one whose upstream ends it in a write of its own, by its content-length', async () => {
    const { client, reads, metrics } = await setUp();
    await get(client, {}, '/compat');
    const before = reads();
    for (let i = 0; i < 10; i++) assert.equal((await get(client, {}, '/compat')).body.length, 1024);
    assert.equal(reads() - before, 10);
    // Each one counted as answered, though its caller was done before the upstream's END_STREAM came.
    const answered = /http_client_request_duration_seconds_count\{[^}]*"200"[^}]*\} 11\n/;
    await eventually('each answer counted', () => answered.test(metrics.render()), 5000, 20);
  });

  it('forwards the trailers of a request with te: trailers', async () => {
    const { client } = await setUp();
    const res = await get(client, { te: 'trailers' });
    assert.equal(res.body.length, 1024);
    assert.equal(res.trailers?.['x-checksum'], 'abc');
  });
});
