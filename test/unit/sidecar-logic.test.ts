import assert from 'node:assert/strict';
import tls from 'node:tls';
import net from 'node:net';
import { classify, clientHelloAlpn } from '../../sidecar/protocol-sniff.ts';
import { LoadBalancer } from '../../sidecar/load-balancer.ts';
import { forwardHeaders, forwardResponseHeaders } from '../../sidecar/http-headers.ts';
import { ProxyMetrics } from '../../sidecar/metrics.ts';
import type { Endpoint } from '../../mesh-model/endpoints.ts';

describe('protocol detection', () => {
  const cases: [string, Buffer, string | undefined][] = [
    ['HTTP/1.1 request line', Buffer.from('GET / HTTP/1.1\r\n'), 'http1'],
    ['long method', Buffer.from('OPTIONS * HTTP/1.1\r\n'), 'http1'],
    ['partial method', Buffer.from('GE'), undefined],
    ['h2c preface', Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), 'h2c'],
    ['partial h2c preface', Buffer.from('PRI * HTTP/2'), undefined],
    ['TLS handshake', Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), 'tls'],
    ['binary protocol', Buffer.from([0x00, 0x01, 0x02, 0x03]), 'tcp'],
    ['lowercase text line', Buffer.from('hello world\r\n'), 'tcp'],
    ['text that may still become a request line', Buffer.from('hello world'), undefined],
    ['redis-like', Buffer.from('*1\r\n$4\r\nPING\r\n'), 'tcp'],
    ['memcached-like', Buffer.from('get some-key\r\n'), 'tcp'],
    ['leading empty lines, as parsers allow', Buffer.from('\r\n\r\nGET / HTTP/1.1\r\n'), 'http1'],
    ['only empty lines so far', Buffer.from('\r\n\r\n'), undefined],
    ['M-SEARCH', Buffer.from('M-SEARCH * HTTP/1.1\r\n'), 'http1'],
    ['any token method, any case', Buffer.from('get /x HTTP/1.1\r\n'), 'http1'],
    ['unknown token method', Buffer.from('X_Y.Z! / HTTP/1.0\r\n'), 'http1'],
    ['request line without version yet', Buffer.from('PURGE /a/b'), undefined],
  ];
  for (const [name, head, want] of cases) it(name, () => assert.equal(classify(head), want));

  it('on a port declared HTTP, everything but h2c and TLS is HTTP/1.1 (garbage gets 400 from the parser)', () => {
    assert.equal(classify(Buffer.from('hello world\r\n'), true), 'http1');
    assert.equal(classify(Buffer.from([0x00, 0x01]), true), 'http1');
    assert.equal(classify(Buffer.from([0x16, 0x00, 0x00]), true), 'http1');
    assert.equal(classify(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), true), 'h2c');
    assert.equal(classify(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), true), 'tls');
  });

  it('reads the ALPN list of a real ClientHello and rejects truncated ones without throwing', async () => {
    const hello = await new Promise<Buffer>((resolve) => {
      const server = net.createServer((s) => {
        s.once('data', (d: Buffer) => {
          resolve(d);
          s.destroy();
          server.close();
        });
      });
      server.listen(0, '127.0.0.1', () => {
        const port = (server.address() as net.AddressInfo).port;
        tls
          .connect({ port, host: '127.0.0.1', ALPNProtocols: ['h2', 'sluice/1'] })
          .on('error', () => undefined);
      });
    });
    assert.deepEqual(clientHelloAlpn(hello), ['h2', 'sluice/1']);
    for (let n = 0; n < hello.length; n += 7) assert.equal(clientHelloAlpn(hello.subarray(0, n)), undefined);
    const junk = Buffer.from(hello);
    for (let i = 5; i < junk.length; i += 3) junk[i] = 0xff;
    assert.doesNotThrow(() => clientHelloAlpn(junk));
  });
});

describe('load balancer (P2C + peak EWMA)', () => {
  const ep = (n: number, ready = true): Endpoint => ({
    address: `10.0.0.${n}`,
    port: 80,
    ready,
    serving: ready,
    terminating: false,
    identity: undefined,
    pod: undefined,
  });

  /** Returns the given values in turn, like Math.random would. */
  const sequence = (...values: number[]) => {
    let i = 0;
    return () => values[i++ % values.length]!;
  };
  /** A seeded generator (xorshift32), so a run is the same every time. */
  const seeded = (seed: number) => () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32;
  };

  it('compares the two endpoints the random source names, by latency × (in flight + 1)', () => {
    const eps = [ep(1), ep(2), ep(3)];
    const pick = (...values: number[]): string | undefined => {
      const lb = new LoadBalancer({ random: sequence(...values) });
      lb.start(eps[2]!); // one request in flight: twice the cost of the others
      return lb.pick(eps)?.address;
    };
    assert.equal(pick(0, 0.5), '10.0.0.1', 'endpoints 1 and 3 (the second index skips the first)');
    assert.equal(pick(0.9, 0), '10.0.0.1', 'endpoints 3 and 1');
    assert.equal(pick(0.4, 0.6), '10.0.0.2', 'endpoints 2 and 3');
    assert.equal(pick(0.4, 0), '10.0.0.2', 'endpoints 2 and 1 cost the same: the first drawn wins');
  });

  it('never picks unready or excluded endpoints', () => {
    const lb = new LoadBalancer({ random: seeded(7) });
    const eps = [ep(1, false), ep(2), ep(3), ep(4)];
    const seen = new Set<string | undefined>();
    for (let i = 0; i < 200; i++) seen.add(lb.pick(eps, new Set([eps[2]!]))?.address);
    assert.deepEqual([...seen].sort(), ['10.0.0.2', '10.0.0.4']);
    assert.equal(lb.pick([ep(1, false)]), undefined);
  });

  it('stops sending traffic to an endpoint once it answered slowly', () => {
    const lb = new LoadBalancer({ random: seeded(42) });
    const eps = [ep(1), ep(2), ep(3)];
    const counts = new Map<string, number>();
    let now = 1;
    for (let i = 0; i < 3000; i++) {
      const chosen = lb.pick(eps)!;
      counts.set(chosen.address, (counts.get(chosen.address) ?? 0) + 1);
      const s = lb.start(chosen);
      lb.finish(s, chosen.address === '10.0.0.1' ? 50e6 : 1e6, (now += 1));
    }
    // Its peak EWMA only decays with new samples: after one slow answer every pair has a cheaper endpoint.
    assert.ok((counts.get('10.0.0.1') ?? 0) <= 1, JSON.stringify([...counts]));
    assert.ok((counts.get('10.0.0.2') ?? 0) > 1000 && (counts.get('10.0.0.3') ?? 0) > 1000);
  });

  it('skips an endpoint in failure backoff while others are healthy, uses it as last resort', () => {
    const lb = new LoadBalancer({ random: seeded(1) });
    const eps = [ep(1), ep(2)];
    lb.failed(lb.start(eps[0]!));
    for (let i = 0; i < 50; i++) assert.equal(lb.pick(eps)?.address, '10.0.0.2');
    assert.equal(lb.pick([eps[0]!])?.address, '10.0.0.1');
  });

  it('a terminating endpoint whose connection failed is no last resort, for a minute', () => {
    const lb = new LoadBalancer({ random: seeded(1) });
    const gone = (n: number): Endpoint => ({ ...ep(n, false), serving: true, terminating: true });
    const eps = [gone(1), gone(2)];
    const t0 = Date.now();
    lb.failed(lb.start(eps[0]!), true, t0);
    assert.equal(lb.pick(eps, undefined, t0 + 1)?.address, '10.0.0.2');
    lb.failed(lb.start(eps[1]!), true, t0);
    assert.equal(lb.pick(eps, undefined, t0 + 10_000), undefined);
    assert.equal(lb.pick([eps[0]!], undefined, t0 + 10_000), undefined);
    assert.equal(lb.pick([eps[0]!], undefined, t0 + 61_000)?.address, '10.0.0.1');
  });
});

describe('hop-by-hop headers', () => {
  it('never forwards a caller-supplied identity header', () => {
    const out = forwardHeaders({
      'x-sluice-peer-identity': 'spiffe://x/ns/a/sa/admin, forged',
      'x-end': 'kept',
    });
    assert.deepEqual(out, { 'x-end': 'kept' });
    assert.deepEqual(forwardHeaders({ 'x-sluice-peer-identity': 'a', upgrade: 'websocket' }, true), {
      connection: 'upgrade',
      upgrade: 'websocket',
    });
  });
  it('drops connection-specific headers and those Connection names, keeps te: trailers', () => {
    const out = forwardHeaders({
      connection: 'keep-alive, x-hop',
      'keep-alive': 'timeout=5',
      'x-hop': '1',
      'transfer-encoding': 'chunked',
      te: 'trailers, deflate',
      upgrade: 'websocket',
      'proxy-connection': 'x',
      'x-end': 'kept',
      ':path': '/h2-pseudo',
    });
    assert.deepEqual(out, { te: 'trailers', 'x-end': 'kept' });
  });

  it('keeps the upgrade handshake for upgrades', () => {
    assert.deepEqual(forwardHeaders({ connection: 'Upgrade', upgrade: 'websocket', host: 'a' }, true), {
      host: 'a',
      connection: 'upgrade',
      upgrade: 'websocket',
    });
  });

  it('response side', () => {
    assert.deepEqual(forwardResponseHeaders({ 'keep-alive': 'x', ':status': '200', 'content-type': 'a' }), {
      'content-type': 'a',
    });
  });

  it('an app cannot send the retry signals that only an inbound sidecar gives', () => {
    const signals = { 'x-sluice-not-processed': '1', 'x-sluice-reset-by-app': '1', 'content-type': 'a' };
    assert.deepEqual(forwardResponseHeaders(signals), { 'content-type': 'a' });
  });
});

describe('metrics', () => {
  it('renders Prometheus text with escaped labels and cumulative buckets', () => {
    const m = new ProxyMetrics();
    m.requests.inc(['outbound', 'ns/"r"', 'ns/b:80', '200']);
    m.latency.observe(['outbound', 'r', 'b'], 0.003);
    const text = m.render();
    assert.match(
      text,
      /sluice_requests_total\{direction="outbound",route="ns\/\\"r\\"",backend="ns\/b:80",code="200"\} 1/,
    );
    assert.match(
      text,
      /sluice_request_duration_seconds_bucket\{direction="outbound",route="r",backend="b",le="0.0025"\} 0/,
    );
    assert.match(
      text,
      /sluice_request_duration_seconds_bucket\{direction="outbound",route="r",backend="b",le="0.005"\} 1/,
    );
    assert.match(
      text,
      /sluice_request_duration_seconds_count\{direction="outbound",route="r",backend="b"\} 1/,
    );
  });
});
