/**
 * What the sidecar's outbound HTTP/1.1 or HTTP/2 path allocates per request (loopback only, no root):
 *
 *   node bench/request-garbage.ts [TREE...]   (BENCH_REQUESTS, default 30000; BENCH_TOP, default 25)
 *
 * `BENCH_PROTOCOL=h2`: h2c from the client, through the proxy's HTTP/2 server, h2c to a node:http2 app; the
 * TREE `floor` is then a bare node:http2 forwarder (bench/node-floor-h2.ts, the floor pair's HTTP/2 hop) in the same
 * process shape. `BENCH_CPU=1`: no heap profiler; the proxy process's CPU per request instead (µs),
 * `BENCH_ROUNDS` rounds with the trees alternating, medians at the end.
 *
 * For each checkout TREE (default: this one; e.g. /tmp/base-main for a before/after in one run), a proxy
 * process of that tree's forwarding path (one Service, one endpoint) in front of a node:http app with 1 KiB
 * replies, driven by keep-alive requests at concurrency 8: 5,000 to warm up, then the measured ones, under
 * V8's sampling heap profiler keeping what the GC collected (a request's garbage, not only what survives).
 * Prints bytes allocated per request, scavenges per 10,000 requests at a fixed 4 MiB semi-space, and the
 * functions that allocated most (bytes per request). Lower noise than CPU time on a busy machine.
 */
import http from 'node:http';
import http2 from 'node:http2';
import { spawn } from 'node:child_process';
import { Session } from 'node:inspector/promises';
import type { AddressInfo } from 'node:net';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { loopbackService, startLoopbackApp } from './loopback-service.ts';
import { h2Forwarder } from './node-floor-h2.ts';
import { percentile } from './stats.ts';

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 30_000);
const TOP = Number(process.env.BENCH_TOP ?? 25);
const H2 = process.env.BENCH_PROTOCOL === 'h2';
const CPU = process.env.BENCH_CPU === '1';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 1);
const VIP = '10.96.0.1';

interface Result {
  bytesPerRequest: number;
  cpuMicrosPerRequest: number;
  scavengesPer10k: number;
  top: [string, number][];
}

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

/** The floor's HTTP/2 hop (bench/node-floor-h2.ts): one h2c session to the app, pipes. */
function floorH2(appPort: number): http2.Http2Server {
  return http2.createServer(h2Forwarder(() => http2.connect(`http://127.0.0.1:${appPort}`)));
}

async function sidecarServer(tree: string, appPort: number): Promise<http.Server | http2.Http2Server> {
  type Forward = typeof import('../sidecar/http-forward.ts');
  const { buildProxyView } = (await import(
    `${tree}/mesh-model/proxy-view.ts`
  )) as typeof import('../mesh-model/proxy-view.ts');
  const { forwardOutbound } = (await import(`${tree}/sidecar/http-forward.ts`)) as Forward;
  const { createHttpServers } = (await import(
    `${tree}/sidecar/http-servers.ts`
  )) as typeof import('../sidecar/http-servers.ts');
  const { LoadBalancer } = (await import(
    `${tree}/sidecar/load-balancer.ts`
  )) as typeof import('../sidecar/load-balancer.ts');
  const { UpstreamPools } = (await import(
    `${tree}/sidecar/upstream-pools.ts`
  )) as typeof import('../sidecar/upstream-pools.ts');
  const { ProxyMetrics } = (await import(
    `${tree}/sidecar/metrics.ts`
  )) as typeof import('../sidecar/metrics.ts');
  const { service, route } = loopbackService(VIP, appPort);
  const view = buildProxyView([...service, route], 'app', 'cluster.local');
  const deps = {
    pools: new UpstreamPools(() => undefined),
    lb: new LoadBalancer(),
    metrics: new ProxyMetrics(),
  };
  const routing = view.byDestination.get(`${VIP}:80`);
  const destination = { address: VIP, port: 80 };
  const servers = createHttpServers((req, res) =>
    forwardOutbound(deps, view, routing, destination, req, res),
  );
  return H2 ? servers.h2 : servers.http1;
}

/** The proxy process: `request-garbage.ts --proxy TREE APP_PORT`; "start" and "stop N" on stdin. */
async function proxy(tree: string, appPort: number): Promise<void> {
  const server = tree === 'floor' ? floorH2(appPort) : await sidecarServer(tree, appPort);
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${(server.address() as AddressInfo).port}\n`);
  });
  let scavenges = 0;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries())
      if ((e as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR)
        scavenges++;
  }).observe({ entryTypes: ['gc'] });
  const session = new Session();
  session.connect();
  let cpu = process.cpuUsage();
  createInterface({ input: process.stdin }).on('line', (line) => {
    void (async () => {
      const [command, n] = line.split(' ');
      if (command === 'start') {
        scavenges = 0;
        if (!CPU)
          await session.post('HeapProfiler.startSampling', {
            samplingInterval: 512,
            includeObjectsCollectedByMajorGC: true,
            includeObjectsCollectedByMinorGC: true,
          });
        cpu = process.cpuUsage();
        return void process.stdout.write('started\n');
      }
      const used = process.cpuUsage(cpu);
      const requests = Number(n);
      const head: ProfileNode = CPU
        ? { callFrame: { functionName: '', url: '', lineNumber: 0 }, selfSize: 0, children: [] }
        : ((await session.post('HeapProfiler.stopSampling')) as { profile: { head: ProfileNode } }).profile
            .head;
      const sites = new Map<string, number>();
      let total = 0;
      const walk = (node: ProfileNode): void => {
        const f = node.callFrame;
        const site = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(node_modules\/)?/, '')}:${f.lineNumber + 1}`;
        total += node.selfSize;
        sites.set(site, (sites.get(site) ?? 0) + node.selfSize);
        node.children.forEach(walk);
      };
      walk(head);
      const result: Result = {
        bytesPerRequest: total / requests,
        cpuMicrosPerRequest: (used.user + used.system) / requests,
        scavengesPer10k: (scavenges * 10_000) / requests,
        top: [...sites]
          .sort((a, b) => b[1] - a[1])
          .slice(0, TOP)
          .map(([site, bytes]) => [site, bytes / requests]),
      };
      process.stdout.write(`${JSON.stringify(result)}\n`);
    })();
  });
}

/** The h2c app: the same 1 KiB reply as startLoopbackApp's. */
async function startH2App(): Promise<{ app: http2.Http2Server; port: number }> {
  const body = Buffer.alloc(1024, 'x');
  const app = http2.createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  return { app, port: (app.address() as AddressInfo).port };
}

/** One request's round trip through the proxy at `port`, and closing the client. */
function client(port: number): { one: () => Promise<void>; close: () => void } {
  const headers = { host: 'svc.app', 'user-agent': 'bench/1', accept: '*/*' };
  const path = '/api/items?id=42';
  if (H2) {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const h2Headers = {
      ':path': path,
      ':authority': headers.host,
      'user-agent': headers['user-agent'],
      accept: '*/*',
    };
    return {
      one: () =>
        new Promise((resolve, reject) => {
          const stream = session.request(h2Headers, { endStream: true });
          stream.resume();
          stream.on('end', resolve);
          stream.on('error', reject);
        }),
      close: () => session.close(),
    };
  }
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  return {
    one: () =>
      new Promise((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path, agent, headers }, (res) => {
            res.resume();
            res.on('end', resolve);
          })
          .on('error', reject);
      }),
    close: () => agent.destroy(),
  };
}

async function measure(tree: string): Promise<Result> {
  const { app, port: appPort } = await (H2 ? startH2App() : startLoopbackApp());
  const child = spawn(
    process.execPath,
    [
      '--max-semi-space-size=4',
      '--min-semi-space-size=4',
      fileURLToPath(import.meta.url),
      '--proxy',
      tree,
      String(appPort),
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async (): Promise<string> => String((await lines.next()).value);
  const { one, close } = client(Number(await next()));
  const run = async (n: number): Promise<void> => {
    let sent = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (sent++ < n) await one();
      }),
    );
  };
  await run(5000);
  child.stdin.write('start\n');
  await next();
  await run(REQUESTS);
  child.stdin.write(`stop ${REQUESTS}\n`);
  const result = JSON.parse(await next()) as Result;
  child.kill();
  close();
  app.close();
  return result;
}

if (process.argv[2] === '--proxy') await proxy(process.argv[3]!, Number(process.argv[4]));
else {
  const trees =
    process.argv.length > 2 ? process.argv.slice(2) : [fileURLToPath(new URL('..', import.meta.url))];
  const cpu = new Map<string, number[]>(trees.map((t) => [t, []]));
  for (let round = 0; round < ROUNDS; round++)
    for (const tree of round % 2 === 0 ? trees : [...trees].reverse()) {
      const r = await measure(tree === 'floor' ? tree : tree.replace(/\/$/, ''));
      const scavenges = `${r.scavengesPer10k.toFixed(1)} scavenges (4 MiB semi-space) per 10,000`;
      if (CPU) {
        cpu.get(tree)!.push(r.cpuMicrosPerRequest);
        console.log(`${tree}: ${r.cpuMicrosPerRequest.toFixed(1)} µs CPU per request, ${scavenges}`);
        continue;
      }
      console.log(`${tree}: ${r.bytesPerRequest.toFixed(0)} bytes per request, ${scavenges}`);
      for (const [site, bytes] of r.top) console.log(`${bytes.toFixed(0).padStart(7)}  ${site}`);
    }
  if (CPU)
    for (const [tree, us] of cpu)
      console.log(
        `${tree}: median ${percentile(
          [...us].sort((a, b) => a - b),
          50,
        ).toFixed(1)} µs (${us.map((u) => u.toFixed(1)).join(', ')})`,
      );
}
