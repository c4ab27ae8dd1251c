import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { LoadBalancer } from '../../sidecar/load-balancer.ts';
import { UpstreamPools, type UpstreamPoolOptions } from '../../sidecar/upstream-pools.ts';
import { HeldRequests } from '../../sidecar/held-requests.ts';
import { ProxyMetrics } from '../../sidecar/metrics.ts';
import {
  LOOPBACK_SERVICE,
  loopbackServiceView,
  startLoopbackForwarder,
  warningLog,
} from '../support/loopback-forwarder.ts';
import { waitFor } from '../support/wait-for.ts';

// Overload on loopback: one upstream connection per endpoint and a queue of one. The app holds every
// request until the test answers it, so what is running, queued and refused is decided by the test alone.

describe('upstream overload: capped connections, a bounded queue, 503 past it', function () {
  this.timeout(30_000);
  const closers: (() => void)[] = [];
  afterEach(() => {
    for (const c of closers.splice(0).reverse()) c();
  });

  async function setUp(poolOptions: UpstreamPoolOptions = { maxConnections: 1, maxQueued: 1 }) {
    const held = new Map<string, http.ServerResponse>();
    let accepted = 0;
    const app = http.createServer((req, res) => held.set(req.url!, res));
    app.on('connection', () => accepted++);
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const view = loopbackServiceView((app.address() as AddressInfo).port);
    const { log, warnings } = warningLog();
    const deps = {
      pools: new UpstreamPools(() => undefined, poolOptions),
      lb: new LoadBalancer(),
      metrics: new ProxyMetrics(),
      log,
    };
    deps.metrics.upstreamInFlight = () => deps.pools.inFlight();
    const forwarder = await startLoopbackForwarder(deps, view, LOOPBACK_SERVICE);
    closers.push(() => {
      forwarder.close();
      app.closeAllConnections();
      app.close();
    });
    const servers = forwarder.servers;
    const base = `http://127.0.0.1:${forwarder.port}`;
    const sidecarConnections = (): Promise<number> =>
      new Promise((resolve, reject) =>
        servers.http1.getConnections((err, n) => (err ? reject(err) : resolve(n))),
      );
    return { held, accepted: () => accepted, deps, warnings, base, sidecarConnections };
  }

  it('one running, one queued, the next refused with 503 at once (counted, logged); the queued one runs after', async () => {
    const s = await setUp();
    const first = fetch(`${s.base}/first`);
    await waitFor('the first request at the app', () => s.held.has('/first'));
    const second = fetch(`${s.base}/second`);
    await waitFor(
      'the second request queued in the sidecar',
      async () => (await s.sidecarConnections()) === 2,
    );
    assert.match(
      s.deps.metrics.render(),
      /^sluice_upstream_requests_in_flight 2$/m,
      'one running, one queued',
    );
    const third = await fetch(`${s.base}/third`);
    assert.equal(third.status, 503);
    assert.match(await third.text(), /queue full/);
    assert.match(
      s.deps.metrics.render(),
      /sluice_overflow_total\{direction="outbound",limit="upstream_connections"\} 1/,
    );
    assert.deepEqual(
      s.warnings.map((w) => [w.msg, w.fields?.cause]),
      [['upstream overflow: 503', 'upstream_overflow']],
    );
    s.held.get('/first')!.end('one');
    assert.equal(await (await first).text(), 'one');
    await waitFor('the queued request at the app', () => s.held.has('/second'));
    s.held.get('/second')!.end('two');
    assert.equal(await (await second).text(), 'two');
    assert.equal(s.accepted(), 1, 'the backlog waited for the one connection instead of opening more');
    await waitFor('nothing held in the sidecar', () => s.deps.pools.inFlight() === 0);
  });

  it('a queued request whose client goes frees its place and never reaches the app', async () => {
    const s = await setUp();
    const first = fetch(`${s.base}/first`);
    await waitFor('the first request at the app', () => s.held.has('/first'));
    const abort = new AbortController();
    const cancelled = fetch(`${s.base}/cancelled`, { signal: abort.signal }).catch((e: unknown) => e);
    await waitFor('the request queued in the sidecar', async () => (await s.sidecarConnections()) === 2);
    abort.abort();
    await cancelled;
    await waitFor('the sidecar to see its client go', async () => (await s.sidecarConnections()) === 1);
    assert.equal(s.deps.pools.inFlight(), 1, 'the cancelled request no longer counts');
    // Nothing was answered and no metric counts it: the log line is its only trace.
    const gone = s.warnings.filter((w) => w.msg === 'request cancelled by the client');
    assert.deepEqual(
      gone.map((w) => [w.fields?.backend, w.fields?.attempts, w.fields?.responseStarted]),
      [['app/svc:80', 1, false]],
    );
    // Its place in the queue is free again: the next request waits instead of getting a 503.
    const next = fetch(`${s.base}/next`);
    await waitFor('the next request queued in the sidecar', async () => (await s.sidecarConnections()) === 2);
    s.held.get('/first')!.end('one');
    assert.equal(await (await first).text(), 'one');
    await waitFor('the next request at the app', () => s.held.has('/next'), {
      detail: () => `the app has ${[...s.held.keys()].join(', ')}; accepted ${s.accepted()}`,
    });
    s.held.get('/next')!.end('next');
    assert.equal((await next).status, 200);
    assert.equal(s.held.has('/cancelled'), false, 'the cancelled request never reached the app');
    assert.equal(s.accepted(), 1, 'one connection served all of it');
    await waitFor('nothing held in the sidecar', () => s.deps.pools.inFlight() === 0);
    assert.doesNotMatch(s.deps.metrics.render(), /sluice_overflow_total\{[^}]*\} [1-9]/);
  });

  it('past the sidecar-wide bound on held requests, 503 at once (its own limit label); a place again after', async () => {
    const s = await setUp({ maxConnections: 4, maxQueued: 4, held: new HeldRequests(2) });
    const first = fetch(`${s.base}/first`);
    const second = fetch(`${s.base}/second`);
    await waitFor('both requests at the app', () => s.held.has('/first') && s.held.has('/second'));
    const third = await fetch(`${s.base}/third`);
    assert.equal(third.status, 503);
    assert.match(await third.text(), /held at the limit/);
    assert.match(
      s.deps.metrics.render(),
      /sluice_overflow_total\{direction="outbound",limit="held_requests"\} 1/,
    );
    assert.deepEqual(
      s.warnings.map((w) => [w.msg, w.fields?.cause]),
      [['upstream overflow: 503', 'upstream_overflow']],
    );
    s.held.get('/first')!.end('one');
    s.held.get('/second')!.end('two');
    assert.equal(await (await first).text(), 'one');
    assert.equal(await (await second).text(), 'two');
    await waitFor('nothing held in the sidecar', () => s.deps.pools.inFlight() === 0);
    const fourth = fetch(`${s.base}/fourth`);
    await waitFor('the next request at the app', () => s.held.has('/fourth'));
    s.held.get('/fourth')!.end('four');
    assert.equal((await fourth).status, 200);
  });
});
