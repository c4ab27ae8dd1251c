/**
 * Which optimized code an idle gap throws away (ADR 0016), one forwarder per process on loopback:
 *
 *   node bench/idle-reopt.ts sluice|floor keep|close [IDLE_S]   (V8 flags after `--`, e.g. -- --trace-deopt)
 *
 * A proxy child (Sluice's outbound path as in bench/request-garbage.ts, or the floor's undici Pool forwarder)
 * in front of a node:http app with 1 KiB replies: 10 s at 1,000 rps, then twice: IDLE_S (default 40) idle,
 * 2 × 10 s at 1,000 rps. `keep`: no connection closes during the gap; `close`: the client's and the app's connections
 * close at its start, as keep-alive timeouts do. The child prints `### PHASE` markers into its stdout (where
 * V8's traces go) with its threads' CPU since the last marker; the parent prints them per phase.
 */
import http from 'node:http';
import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ProxyView } from '../mesh-model/proxy-view.ts';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { getHeapSpaceStatistics } from 'node:v8';
import { threadRunUs } from './thread-cpu.ts';
import { loopbackService, startLoopbackApp } from './loopback-service.ts';

const VIP = '10.96.0.1';
const LOAD_S = 10;
const HOUR = 3_600_000;

/** CPU ms per thread name since the last call (an ended thread's time is lost; V8's workers persist). */
function threadCpu(): () => Record<string, number> {
  let last = new Map<string, number>();
  return () => {
    const now = new Map<string, number>();
    for (const t of readdirSync('/proc/self/task')) {
      const task = `/proc/self/task/${t}`;
      now.set(`${t} ${readFileSync(`${task}/comm`, 'utf8').trim()}`, threadRunUs(task));
    }
    const byName: Record<string, number> = {};
    for (const [key, us] of now) {
      const name = key.slice(key.indexOf(' ') + 1);
      byName[name] = Math.round((byName[name] ?? 0) + (us - (last.get(key) ?? 0)) / 1000);
    }
    last = now;
    return byName;
  };
}

async function sluiceHandler(appPort: number): Promise<http.RequestListener> {
  const { StandaloneConfigSource } = await import('../sidecar/config-source.ts');
  const { forwardOutbound } = await import('../sidecar/http-forward.ts');
  const { LoadBalancer } = await import('../sidecar/load-balancer.ts');
  const { UpstreamPools } = await import('../sidecar/upstream-pools.ts');
  const { ProxyMetrics } = await import('../sidecar/metrics.ts');
  // Read from a manifest directory as a sidecar does, which also polls it every 5 s when idle.
  const dir = mkdtempSync(join(tmpdir(), 'idle-reopt-'));
  const { service, route } = loopbackService(VIP, appPort);
  const manifests = [...service, route];
  writeFileSync(join(dir, 'svc.yaml'), manifests.map((m) => JSON.stringify(m)).join('\n---\n'));
  const view = await new Promise<ProxyView>((resolve, reject) =>
    new StandaloneConfigSource({ dir, namespace: 'app', trustDomain: 'cluster.local' }).start(
      resolve,
      reject,
    ),
  );
  const deps = {
    pools: new UpstreamPools(() => undefined, { idleMs: HOUR }),
    lb: new LoadBalancer(),
    metrics: new ProxyMetrics(),
  };
  const routing = view.byDestination.get(`${VIP}:80`);
  const destination = { address: VIP, port: 80 };
  return (req, res) => forwardOutbound(deps, view, routing, destination, req, res);
}

/** The floor's HTTP/1.1 forwarding (bench/node-floor-proxy.ts) without TLS. */
async function floorHandler(appPort: number): Promise<http.RequestListener> {
  const { Pool } = await import('undici');
  const pool = new Pool(`http://127.0.0.1:${appPort}`, {
    connections: 64,
    keepAliveTimeout: HOUR,
    keepAliveMaxTimeout: HOUR,
  });
  return (req, res) => {
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(req.headers))
      if (value !== undefined && name !== 'connection') headers[name] = value;
    pool.request({ path: req.url ?? '/', method: req.method as 'GET', headers }).then(
      (upstream) => {
        const out: Record<string, string | string[]> = {};
        for (const [name, value] of Object.entries(upstream.headers))
          if (value !== undefined && name !== 'connection' && name !== 'keep-alive') out[name] = value;
        res.writeHead(upstream.statusCode, out);
        upstream.body.pipe(res);
      },
      () => {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      },
    );
  };
}

async function proxy(kind: string, appPort: number): Promise<void> {
  const cpu = threadCpu();
  const handler = kind === 'floor' ? await floorHandler(appPort) : await sluiceHandler(appPort);
  let server: http.Server;
  if (kind === 'floor') server = http.createServer({ keepAliveTimeout: HOUR }, handler);
  else {
    const { createHttpServers } = await import('../sidecar/http-servers.ts');
    server = createHttpServers(handler as Parameters<typeof createHttpServers>[0]).http1;
  }
  server.listen(0, '127.0.0.1', () => {
    cpu();
    process.stdout.write(`${(server.address() as AddressInfo).port}\n`);
  });
  // The young generation's size each second (MiB): V8 shrinks it when it sees little allocation.
  let young: number[] = [];
  setInterval(() => {
    const space = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
    young.push(Math.round((space?.space_size ?? 0) / 2 ** 19) / 2);
  }, 1000).unref();
  createInterface({ input: process.stdin }).on('line', (phase) => {
    if (phase === 'gc') return globalThis.gc?.();
    process.stdout.write(`### ${phase} ${JSON.stringify({ ...cpu(), young: young.join(' ') })}\n`);
    young = [];
  });
}

/** What a V8 trace line says, for counting (undefined: a continuation line). */
function traceKind(line: string): string | undefined {
  const gc = /ms: (Scavenge|Mark-Compact|Minor Mark-Sweep)[^;]*\) (.*?)[;]/.exec(line);
  if (gc) return `gc ${gc[1]} (${gc[2]})`;
  if (line.startsWith('[completed compiling'))
    return `optimize ${/target (\w+)/.exec(line)?.[1] ?? ''}${line.includes(' OSR ') ? ' OSR' : ''}`;
  if (line.startsWith('[bailout')) return `deopt (${/reason: ([^)]*)/.exec(line)?.[1] ?? ''})`;
  if (line.startsWith('[marking dependent code'))
    return `dependent code (${/reason: (.*)\]$/.exec(line)?.[1] ?? ''})`;
  return undefined;
}

async function main(kind: string, mode: string, idleS: number, v8Flags: string[]): Promise<void> {
  const { app, port: appPort } = await startLoopbackApp({ keepAliveTimeout: HOUR });
  const child = spawn(
    process.execPath,
    [
      '--max-semi-space-size=4',
      ...(mode === 'gc' ? ['--expose-gc'] : []),
      ...v8Flags,
      fileURLToPath(import.meta.url),
      '--proxy',
      kind,
      String(appPort),
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout });
  let port = 0;
  let marked = (): void => undefined;
  // Per phase: V8's trace lines by their first words, and the child's thread CPU.
  const raw = process.env.BENCH_RAW ? createWriteStream(process.env.BENCH_RAW) : undefined;
  let counts = new Map<string, number>();
  const functions = new Map<string, number>();
  lines.on('line', (line) => {
    if (port === 0 && /^\d+$/.test(line)) return void (port = Number(line));
    // V8 writes its traces to the same descriptor unbuffered: a marker can land in the middle of one.
    if (line.includes('### ')) {
      const [, phase, cpu] = /### (\S+) (.*)$/.exec(line)!;
      console.log(`${phase}: cpu ms ${cpu}`);
      console.log(`  ${JSON.stringify(Object.fromEntries(counts))}`);
      const top = [...functions].sort((a, b) => b[1] - a[1]).slice(0, 25);
      for (const [f, n] of top) console.log(`  ${String(n).padStart(4)} ${f}`);
      counts = new Map();
      functions.clear();
      return marked();
    }
    raw?.write(`${line}\n`);
    const key = traceKind(line);
    if (key === undefined) return;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    const fn = /<JSFunction (\S+)|<SharedFunctionInfo (\S+)>/.exec(line);
    if (fn && !key.startsWith('optimize')) {
      const site = `${key}: ${fn[1] ?? fn[2]}`;
      functions.set(site, (functions.get(site) ?? 0) + 1);
    }
  });
  while (port === 0) await new Promise((r) => setTimeout(r, 50));
  let agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const headers = { host: 'svc.app', 'user-agent': 'bench/1', accept: '*/*' };
  const load = async (): Promise<void> => {
    let outstanding = 0;
    let errors = 0;
    const end = Date.now() + LOAD_S * 1000;
    await new Promise<void>((resolve) => {
      const tick = setInterval(() => {
        if (Date.now() >= end) {
          clearInterval(tick);
          const wait = setInterval(() => outstanding === 0 && (clearInterval(wait), resolve()), 5);
          return;
        }
        for (let i = 0; i < 10; i++) {
          outstanding++;
          http
            .get({ host: '127.0.0.1', port, path: '/api/items?id=42', agent, headers }, (res) => {
              res.resume();
              res.on('end', () => outstanding--);
            })
            .on('error', () => (errors++, outstanding--));
        }
      }, 10);
    });
    if (errors) console.log(`  ${errors} errors`);
  };
  const mark = async (phase: string): Promise<void> => {
    child.stdin.write(`${phase}\n`);
    await new Promise<void>((resolve) => (marked = resolve));
  };
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  console.log(
    `${kind} ${mode} idle ${idleS} s, flags ${v8Flags.join(' ')}, load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`,
  );
  await mark('start');
  await load();
  await mark('load1');
  // Two gaps: whether what the first one threw away is thrown away again.
  for (const gap of [1, 2]) {
    if (mode === 'close') {
      agent.destroy();
      agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
      app.closeIdleConnections();
    }
    if (mode === 'gc') {
      await sleep((idleS * 1000) / 2);
      child.stdin.write('gc\n');
      await sleep((idleS * 1000) / 2);
    } else await sleep(idleS * 1000);
    await mark(`idle${gap}`);
    await load();
    await mark(`after${gap}`);
    await load();
    await mark(`then${gap}`);
  }
  console.log(`load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  child.kill();
  agent.destroy();
  app.close();
}

if (process.argv[2] === '--proxy') await proxy(process.argv[3]!, Number(process.argv[4]));
else {
  const [kind = 'sluice', mode = 'keep', idle = '40'] = process.argv.slice(2).filter((a) => a !== '--');
  const dash = process.argv.indexOf('--');
  await main(kind, mode, Number(idle), dash < 0 ? [] : process.argv.slice(dash + 1));
}
