/**
 * What the sidecar's outbound HTTP/1.1 path allocates per request (loopback only, no root):
 *
 *   node bench/request-garbage.ts [TREE...]   (BENCH_REQUESTS, default 30000; BENCH_TOP, default 25)
 *
 * For each checkout TREE (default: this one; e.g. /tmp/base-main for a before/after in one run), a proxy
 * process of that tree's forwarding path (one Service, one endpoint) in front of a node:http app with 1 KiB
 * replies, driven by keep-alive requests at concurrency 8: 5,000 to warm up, then the measured ones, under
 * V8's sampling heap profiler keeping what the GC collected (a request's garbage, not only what survives).
 * Prints bytes allocated per request, scavenges per 10,000 requests at a fixed 4 MiB semi-space, and the
 * functions that allocated most (bytes per request). Lower noise than CPU time on a busy machine.
 */
import http from 'node:http';
import { spawn } from 'node:child_process';
import { Session } from 'node:inspector/promises';
import type { AddressInfo } from 'node:net';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { loopbackService, startLoopbackApp } from './loopback-service.ts';

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 30_000);
const TOP = Number(process.env.BENCH_TOP ?? 25);
const VIP = '10.96.0.1';

interface Result {
  bytesPerRequest: number;
  scavengesPer10k: number;
  top: [string, number][];
}

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

/** The proxy process: `request-garbage.ts --proxy TREE APP_PORT`; "start" and "stop N" on stdin. */
async function proxy(tree: string, appPort: number): Promise<void> {
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
  const server = createHttpServers((req, res) =>
    forwardOutbound(deps, view, routing, destination, req, res),
  ).http1;
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
  createInterface({ input: process.stdin }).on('line', (line) => {
    void (async () => {
      const [command, n] = line.split(' ');
      if (command === 'start') {
        scavenges = 0;
        await session.post('HeapProfiler.startSampling', {
          samplingInterval: 512,
          includeObjectsCollectedByMajorGC: true,
          includeObjectsCollectedByMinorGC: true,
        });
        return void process.stdout.write('started\n');
      }
      const requests = Number(n);
      const { profile } = (await session.post('HeapProfiler.stopSampling')) as {
        profile: { head: ProfileNode };
      };
      const sites = new Map<string, number>();
      let total = 0;
      const walk = (node: ProfileNode): void => {
        const f = node.callFrame;
        const site = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(node_modules\/)?/, '')}:${f.lineNumber + 1}`;
        total += node.selfSize;
        sites.set(site, (sites.get(site) ?? 0) + node.selfSize);
        node.children.forEach(walk);
      };
      walk(profile.head);
      const result: Result = {
        bytesPerRequest: total / requests,
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

async function measure(tree: string): Promise<Result> {
  const { app, port: appPort } = await startLoopbackApp();
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
  const port = Number(await next());
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const headers = { host: 'svc.app', 'user-agent': 'bench/1', accept: '*/*' };
  const one = (): Promise<void> =>
    new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/api/items?id=42', agent, headers }, (res) => {
          res.resume();
          res.on('end', resolve);
        })
        .on('error', reject);
    });
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
  agent.destroy();
  app.close();
  return result;
}

if (process.argv[2] === '--proxy') await proxy(process.argv[3]!, Number(process.argv[4]));
else {
  const trees =
    process.argv.length > 2 ? process.argv.slice(2) : [fileURLToPath(new URL('..', import.meta.url))];
  for (const tree of trees) {
    const r = await measure(tree.replace(/\/$/, ''));
    console.log(
      `${tree}: ${r.bytesPerRequest.toFixed(0)} bytes per request, ${r.scavengesPer10k.toFixed(1)} scavenges (4 MiB semi-space) per 10,000`,
    );
    for (const [site, bytes] of r.top) console.log(`${bytes.toFixed(0).padStart(7)}  ${site}`);
  }
}
