/**
 * Many concurrent HTTP/2 streams through the sidecar's outbound path on loopback, with the default limits
 * (node --expose-gc bench/h2-session-streams.ts; no root, no namespaces). The proxy (the sidecar's HTTP
 * servers and forwarder, DEFAULT_LIMITS) runs in a child process of its own, whose RSS, V8 heap and external
 * memory are read after a full GC; the app (h2c, holds every stream until released) and the clients run here.
 *   1. One h2c client connection opens streams 250 at a time up to the server's SETTINGS_MAX_CONCURRENT_STREAMS
 *      (1,000): memory per 1,000 open streams (each is a downstream stream and an upstream stream).
 *   2. A client that ignores that setting opens 1,001 streams on one connection: what the 1,001st gets.
 *   3. More connections of 1,000 streams each up to the upstream session's cap (its concurrency 1,000 + the
 *      queue 10,000 = 11,000 streams to one endpoint), then 100 more requests: what they get.
 *   4. The app answers everything: every held stream gets its 200, the proxy's in-flight gauge returns to 0.
 */
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import http2 from 'node:http2';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { DEFAULT_LIMITS } from '../sidecar/limits.ts';
import { LoadBalancer } from '../sidecar/load-balancer.ts';
import { ProxyMetrics } from '../sidecar/metrics.ts';
import { poolOptionsFor, UpstreamPools } from '../sidecar/upstream-pools.ts';
import {
  LOOPBACK_SERVICE,
  loopbackServiceView,
  startLoopbackForwarder,
} from '../test/support/loopback-forwarder.ts';
import { frame, H2_PREFACE } from '../test/support/fuzz/h2-frames.ts';
import { waitFor } from '../test/support/wait-for.ts';

interface ProxyReport {
  rssMb: number;
  heapMb: number;
  externalMb: number;
  inFlight: number;
  overflows: string;
  connections: number;
}

const mb = (n: number): number => n / 2 ** 20;

/** The child: the sidecar's outbound HTTP path to the app at 127.0.0.1:`appPort`, reporting on request. */
async function runProxy(appPort: number): Promise<void> {
  // The cost of one endpoint's own bounds, so without the sidecar-wide one (4,096 held) that now caps them.
  const pools = new UpstreamPools(() => undefined, poolOptionsFor({ ...DEFAULT_LIMITS, maxHeldRequests: 0 }));
  const metrics = new ProxyMetrics();
  metrics.upstreamInFlight = () => pools.inFlight();
  const deps = { pools, lb: new LoadBalancer(), metrics };
  const forwarder = await startLoopbackForwarder(deps, loopbackServiceView(appPort), LOOPBACK_SERVICE, {
    h2: true,
  });
  const sendReport = async (): Promise<void> => {
    (globalThis as { gc?: () => void }).gc?.();
    const u = process.memoryUsage();
    const connections = await new Promise<number>((r) =>
      forwarder.servers.h2.getConnections((_err, n) => r(n)),
    );
    const report: ProxyReport = {
      rssMb: mb(u.rss),
      heapMb: mb(u.heapUsed),
      externalMb: mb(u.external),
      inFlight: pools.inFlight(),
      overflows: /^sluice_overflow_total\{.*$/m.exec(metrics.render())?.[0] ?? 'none',
      connections,
    };
    process.send!(report);
  };
  process.on('message', (m) => {
    if (m !== 'exit') return void sendReport();
    forwarder.close();
    process.exit(0);
  });
  process.send!({ h2Port: forwarder.h2Port });
}

/** A raw h2c connection that opens `n` GET streams at once, whatever the server's settings say. */
async function rawStreams(
  port: number,
  n: number,
): Promise<{
  resets: Map<number, number>;
  readonly goaway: number | undefined;
  readonly closed: boolean;
}> {
  const socket = net.connect({ host: '127.0.0.1', port });
  // :method GET, :scheme http, :path / (static table), :authority "svc" (literal, not indexed).
  const block = Buffer.from([0x82, 0x86, 0x84, 0x01, 3, ...Buffer.from('svc')]);
  const resets = new Map<number, number>();
  let goaway: number | undefined;
  let closed = false;
  let pending = Buffer.alloc(0);
  let sent = false;
  socket.on('data', (d: Buffer) => {
    pending = Buffer.concat([pending, d]);
    while (pending.length >= 9 && pending.length >= 9 + pending.readUIntBE(0, 3)) {
      const len = pending.readUIntBE(0, 3);
      const [type, flags] = [pending[3]!, pending[4]!];
      const payload = pending.subarray(9, 9 + len);
      pending = pending.subarray(9 + len);
      if (type === 4 && (flags & 1) === 0 && !sent) {
        sent = true;
        const frames = [frame(4, 1, 0, Buffer.alloc(0))];
        for (let i = 0; i < n; i++) frames.push(frame(1, 0x5, 1 + 2 * i, block));
        socket.write(Buffer.concat(frames));
      }
      if (type === 3) resets.set(payload.readUInt32BE(0), (resets.get(payload.readUInt32BE(0)) ?? 0) + 1);
      if (type === 7) goaway = payload.readUInt32BE(4);
    }
  });
  socket.on('error', () => undefined);
  socket.on('close', () => (closed = true));
  socket.write(Buffer.concat([H2_PREFACE, frame(4, 0, 0, Buffer.alloc(0))]));
  closers.push(() => socket.destroy());
  await waitFor('the raw streams sent', () => sent);
  return {
    resets,
    get goaway() {
      return goaway;
    },
    get closed() {
      return closed;
    },
  };
}

const closers: (() => void)[] = [];

async function main(): Promise<void> {
  const held: http2.ServerHttp2Stream[] = [];
  const app = http2.createServer();
  app.on('stream', (stream) => held.push(stream));
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  const proxy: ChildProcess = fork(
    fileURLToPath(import.meta.url),
    ['proxy', String((app.address() as AddressInfo).port)],
    {
      execArgv: ['--expose-gc'],
    },
  );
  const h2Port = await new Promise<number>((r) =>
    proxy.once('message', (m) => r((m as { h2Port: number }).h2Port)),
  );
  const report = (): Promise<ProxyReport> =>
    new Promise((r) => {
      proxy.once('message', (m) => r(m as ProxyReport));
      proxy.send('memory');
    });
  const line = (what: string, p: ProxyReport): void =>
    console.log(
      `${what}: proxy RSS ${p.rssMb.toFixed(1)} MB, heap ${p.heapMb.toFixed(1)}, external ${p.externalMb.toFixed(1)}, in flight ${p.inFlight}; app holds ${held.filter((s) => !s.closed).length} open of ${held.length}; client outcomes ${JSON.stringify([...statuses])}`,
    );
  const statuses = new Map<string, number>();
  const open = (client: http2.ClientHttp2Session, n: number): void => {
    for (let i = 0; i < n; i++) {
      const req = client.request({ ':path': '/' });
      req.on('response', (h) =>
        statuses.set(String(h[':status']), (statuses.get(String(h[':status'])) ?? 0) + 1),
      );
      req.on('error', (err: NodeJS.ErrnoException) =>
        statuses.set(err.code ?? 'error', (statuses.get(err.code ?? 'error') ?? 0) + 1),
      );
      req.resume();
      req.end();
    }
  };
  const connect = (): http2.ClientHttp2Session => {
    const c = http2.connect(`http://127.0.0.1:${h2Port}`);
    c.on('error', () => undefined);
    closers.push(() => c.close());
    return c;
  };
  const reachApp = (n: number): Promise<boolean> =>
    waitFor(`${n} streams held by the app`, () => held.length >= n, { timeoutMs: 60_000 });

  const idle = await report();
  line('idle', idle);
  // 1. One connection, up to the server's concurrency.
  const first = connect();
  const perStep: number[] = [];
  let last = idle;
  for (let n = 250; n <= 1000; n += 250) {
    open(first, 250);
    await reachApp(n);
    const r = await report();
    line(`one connection, ${n} streams open`, r);
    perStep.push((r.rssMb - last.rssMb) * 4);
    last = r;
  }
  const oneConn = last;
  console.log(
    `RSS per 1,000 open streams on one connection: ${((oneConn.rssMb - idle.rssMb) / 1).toFixed(1)} MB (steps of 250, scaled to 1,000: ${perStep.map((x) => x.toFixed(1)).join(', ')}); heap ${(oneConn.heapMb - idle.heapMb).toFixed(1)} MB`,
  );
  // 2. A client past the concurrency the server advertised.
  const raw = await rawStreams(h2Port, 1001);
  await reachApp(2000);
  await waitFor('the 1,001st stream answered', () => raw.resets.size > 0 || raw.closed, {
    timeoutMs: 10_000,
  }).catch(() => undefined);
  console.log(
    `a client ignoring SETTINGS_MAX_CONCURRENT_STREAMS opens 1,001: app got ${held.length - 1000}, RST_STREAM codes ${JSON.stringify([...raw.resets])}, GOAWAY ${raw.goaway ?? 'none'}, connection ${raw.closed ? 'closed' : 'open'}`,
  );
  line('after the raw connection', await report());
  // 3. Up to the upstream session's cap, then one more connection.
  for (let c = 0; c < 9; c++) {
    open(connect(), 1000);
    await reachApp(3000 + 1000 * c);
  }
  const atCap = await report();
  line(`${held.length} streams open to one endpoint over 11 connections`, atCap);
  const before = new Map(statuses);
  // The app's own concurrency may hold fewer: the rest of the cap waits in nghttp2, then 503s.
  const room = 11_000 - atCap.inFlight;
  // Each connection carries at most the server's 1,000 concurrent streams (more wait in the client).
  for (let left = room + 100; left > 0; left -= 1000) open(connect(), Math.min(1000, left));
  await waitFor(
    'the extra connection answered',
    () => [...statuses.values()].reduce((a, b) => a + b, 0) >= 100,
    {
      timeoutMs: 30_000,
    },
  );
  console.log(
    `${room + 100} more requests on new connections: ${JSON.stringify([...statuses])} (held ${held.length}; before ${JSON.stringify([...before])})`,
  );
  line('at the cap', await report());
  // 4. Release.
  statuses.clear();
  for (const s of held) {
    if (s.closed) continue;
    s.respond({ ':status': 200 });
    s.end('ok');
  }
  await waitFor('every client stream answered', () => (statuses.get('200') ?? 0) >= 11_000, {
    timeoutMs: 60_000,
  });
  await waitFor('the proxy holds nothing', async () => (await report()).inFlight === 0, {
    timeoutMs: 30_000,
    intervalMs: 200,
  });
  line(`released (${JSON.stringify([...statuses])})`, await report());
  assert.equal(proxy.exitCode, null, 'the proxy is still running');
  for (const c of closers) c();
  await waitFor('the client connections closed', async () => (await report()).connections === 0, {
    timeoutMs: 30_000,
    intervalMs: 200,
  });
  line('client connections closed', await report());
  proxy.send('exit');
  app.close();
}

if (process.argv[2] === 'proxy') await runProxy(Number(process.argv[3]));
else await main();
