import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import { LoadBalancer } from '../../sidecar/load-balancer.ts';
import { ProxyMetrics } from '../../sidecar/metrics.ts';
import { UpstreamPools } from '../../sidecar/upstream-pools.ts';
import {
  LOOPBACK_SERVICE,
  loopbackServiceView,
  startLoopbackForwarder,
  warningLog,
} from '../support/loopback-forwarder.ts';

// An HTTP/2 upstream whose connection ends while a stream waits for its response (the peer closed it
// cleanly, or destroyed its session): Node closes the stream without an 'error' event. The sidecar must
// answer anyway instead of leaving the request to its caller's timeout.

describe('upstream HTTP/2: a connection that ends under an open stream', function () {
  this.timeout(30_000);
  const closers: (() => void)[] = [];
  afterEach(() => {
    for (const c of closers.splice(0).reverse()) c();
  });

  /** A forwarder in front of `app` (HTTP/2 both sides) and a client of it; closed after the test. */
  async function forwardTo(app: http2.Http2Server): Promise<{
    client: http2.ClientHttp2Session;
    warnings: ReturnType<typeof warningLog>['warnings'];
  }> {
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const view = loopbackServiceView((app.address() as AddressInfo).port);
    const { log, warnings } = warningLog();
    const deps = {
      pools: new UpstreamPools(() => undefined),
      lb: new LoadBalancer(),
      metrics: new ProxyMetrics(),
      log,
    };
    const forwarder = await startLoopbackForwarder(deps, view, LOOPBACK_SERVICE, { h2: true });
    const client = http2.connect(`http://127.0.0.1:${forwarder.h2Port}`);
    closers.push(() => {
      client.destroy();
      forwarder.close();
      app.close();
    });
    return { client, warnings };
  }

  it('is a failure of the attempt: logged, and answered 502 rather than left waiting', async () => {
    let streams = 0;
    const app = http2.createServer();
    const sockets = new Set<Socket>();
    app.on('connection', (socket: Socket) => sockets.add(socket));
    // Every stream is left unanswered and the connection ended under it (FIN, no RST_STREAM, no GOAWAY).
    app.on('stream', () => {
      streams++;
      for (const socket of sockets) socket.end();
      sockets.clear();
    });
    const { client, warnings } = await forwardTo(app);
    const status = await new Promise<number>((resolve, reject) => {
      const stream = client.request({ ':method': 'POST', ':path': '/', 'content-length': '2' });
      stream.on('response', (headers) => resolve(Number(headers[':status'])));
      stream.on('close', () => reject(new Error(`closed without a response (rst ${stream.rstCode})`)));
      stream.resume();
      stream.end('{}');
    });
    assert.equal(status, 502);
    assert.equal(streams, 1, 'a POST that may have reached the app is not sent again');
    assert.deepEqual(
      warnings.map((w) => [w.msg, w.fields?.code, w.fields?.failure]),
      [['upstream error', 'ERR_HTTP2_STREAM_CLOSED', 'reset']],
    );
  });

  it('a response cut after it started reaches an HTTP/2 caller as a reset stream, not a clean end', async () => {
    const app = http2.createServer();
    const sockets = new Set<Socket>();
    app.on('connection', (socket: Socket) => sockets.add(socket));
    // Headers and part of the body, then the connection is destroyed (an app that dies mid-response).
    app.on('stream', (stream) => {
      stream.respond({ ':status': 200 });
      stream.write('part', () => {
        for (const socket of sockets) socket.destroy();
      });
    });
    const { client, warnings } = await forwardTo(app);
    const seen = await new Promise<{ status: number; body: string; rstCode: number }>((resolve) => {
      const stream = client.request({ ':path': '/' });
      let status = 0;
      let body = '';
      stream.on('response', (headers) => (status = Number(headers[':status'])));
      stream.on('data', (chunk: Buffer) => (body += String(chunk)));
      stream.on('error', () => undefined);
      stream.on('close', () => resolve({ status, body, rstCode: stream.rstCode }));
      stream.end();
    });
    assert.equal(seen.status, 200);
    assert.equal(seen.body, 'part');
    // RST_STREAM(NO_ERROR) would read as a complete response: a truncated body, a gRPC call without status.
    assert.equal(seen.rstCode, http2.constants.NGHTTP2_INTERNAL_ERROR);
    // What ended it, in the log: a lost connection (CANCEL), not a peer's reset (INTERNAL_ERROR, a peer
    // sidecar passing on its app's cut).
    assert.deepEqual(
      warnings.map((w) => [w.msg, w.fields?.cause, w.fields?.bytes]),
      [['upstream response cut', `closed, rst ${http2.constants.NGHTTP2_CANCEL}`, 4]],
    );
  });
});
