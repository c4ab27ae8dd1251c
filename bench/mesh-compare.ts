/**
 * Sluice against the floor and the reference, in one run (npm run bench:compare [-- --quick] [--rounds N]
 * [--json FILE]; needs root, one netns user at a time: flock /tmp/sluice-netns.lock):
 *   direct:  load generator pod → app pod                                              (no proxies)
 *   sluice:  app → Sluice sidecar → mTLS → Sluice sidecar → app   (meshed pods, iptables capture, Service VIP)
 *   node:    app → bench/node-floor-proxy.ts (node:http → undici Pool) → mTLS → (node:https → undici) → app
 *   nginx:   app → nginx (1 worker) → mTLS, upstream keep-alive → nginx (1 worker) → app
 * Each proxy pair has one proxy in the client pod and one in the server pod, as sidecars do. HTTP/1.1 and
 * h2c from the app (every pair speaks HTTP/1.1 over mTLS between its proxies except Sluice, which picks its
 * own), 1 KiB replies, 16 connections. Each round visits direct, then the proxy pairs forward in even rounds
 * and backward in odd ones (A B, B A: the idle gap before a pair's turn, and with it whether its sidecars
 * released memory while idle, ADR 0016, alternates, so ordering cancels over two rounds; each round's line
 * says whether a Sluice pair released before it): `--warm` seconds at the fixed rate, not measured (the
 * re-optimisation after a release is paid there), then an open-loop fixed rate (latency from the intended
 * send time) and a closed-loop maximum. Per proxy pair: CPU from /proc (user + system, both proxies, per
 * 1,000 requests at the fixed rate), RSS idle and peak (process trees, so nginx counts master + worker), new
 * connections into the server pod per 1,000 requests (SYNs counted by an iptables rule there). Medians over
 * the rounds, a table of ratios against the Node floor and nginx, and one summary line. No assertions.
 * `--overload S`: then S seconds of HTTP/1.1 at 2× the median max rps (256 connections unless
 * `--overload-connections N`, 2 s client timeout)
 * for Sluice and the Node floor, and for direct and nginx at Sluice's offered rate: goodput, where the
 * requests went (in time, late, given up, 503), the CPU of the generator, the app and the proxies, new
 * upstream connections per 1,000 requests, RSS peak and `--after` seconds after.
 * Each round's line also has the CPU per 1,000 requests at max of the proxies and of the app behind them,
 * and the idle line the anonymous part of each proxy's RSS.
 * `--memory-limit 256Mi`: every proxy runs in its own memory cgroup of that limit from its start, as a pod's
 * container does (Node sizes V8's heap from it; bench/memory-cgroup.ts), and the end has each cgroup's peak
 * usage, limit hits and OOM kills; `--baseline-memory-limit` the same for the baseline's pair.
 * nginx comes from Debian, installed here when missing (cluster/host-packages.ts).
 */
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureHostPackages } from '../cluster/host-packages.ts';
import { MeshFixture, APP_PORT, type MeshPod } from '../test/support/mesh-fixture.ts';
import { netnsUnavailableReason, nodeBin } from '../test/support/netns.ts';
import { releasesSince, startSidecarPairs } from './sidecar-pair.ts';
import type { LoadResult } from './load-generator.ts';
import { serverCert } from '../test/support/server-cert.ts';
import { waitFor } from '../test/support/wait-for.ts';
import { PROXY_NODE_OPTIONS } from '../mesh-model/endpoints.ts';
import { procStats, threadCpuMs, tree } from './proc-stats.ts';
import { createMemoryCgroup, removeStaleMemoryCgroups, type MemoryCgroup } from './memory-cgroup.ts';
import { parseMemoryQuantity } from '../protocol/proxy-resources.ts';

const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const option = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const ROUNDS = Number(option('--rounds') ?? (QUICK ? 1 : 3));
const RATE_SECONDS = Number(process.env.BENCH_SECONDS ?? (QUICK ? 2 : 6));
const MAX_SECONDS = Number(process.env.BENCH_MAX_SECONDS ?? (QUICK ? 2 : 6));
/**
 * `--warm S`: seconds at the fixed rate through a pair before its measured phases, not counted; 4× that in
 * the first round. A fresh proxy needs 20–30 s at 1,000 rps before V8 is done compiling, and one idle 15 s
 * releases memory and pays re-optimisation in its next seconds of load (ADR 0016): the CPU per request of a
 * round is meant as the steady state's. 0: no warm-up.
 */
const WARM_SECONDS = Number(option('--warm') ?? (QUICK ? 0 : 7));
/**
 * `--idle-wait S`: seconds from start-up to the idle RSS reading (default 2). 20 lets a sidecar's start-up
 * release run (15 s idle after start, ADR 0016, tenth session); 2 is the reading of earlier runs.
 */
const IDLE_WAIT_SECONDS = Number(option('--idle-wait') ?? 2);
const RPS = 1000;
/** Seconds of overload (2× the variant's median max rps, 256 connections, 2 s client timeout); 0: none. */
const OVERLOAD_SECONDS = Number(option('--overload') ?? 0);
/** `--overload-connections N`: the client's connections under overload (the most requests a proxy holds). */
const OVERLOAD_CONNECTIONS = Number(option('--overload-connections') ?? 256);
const CONNECTIONS = 16;
const VIP = '10.96.0.10';
const BASE_VIP = '10.96.0.11';
const SERVER_NAME = 'server.bench';
const PORTS = {
  nodeH1: 15101,
  nodeH2: 15111,
  nodeServer: 15201,
  nginxH1: 15102,
  nginxH2: 15112,
  nginxServer: 15202,
};

type Protocol = 'h1' | 'h2';
/** `--protocols h1`: only these (both by default); keeps a run short. */
const PROTOCOLS = (option('--protocols')?.split(',') ?? ['h1', 'h2']) as Protocol[];
type Variant = 'direct' | 'sluice' | 'base' | 'node' | 'nginx';
/** `--variants sluice,node`: only these proxy pairs (direct always runs: the added latency needs it). */
const CHOSEN = option('--variants')?.split(',');
/**
 * `--baseline FILE`: a second Sluice pair running another build's dist/cli/main.js (e.g. the commit before a
 * change, compiled elsewhere), measured in the same rounds as variant "base": before/after on a busy machine.
 */
const BASELINE = option('--baseline');
const VARIANTS: Variant[] = (['direct', 'sluice', 'base', 'node', 'nginx'] as const).filter(
  (v) => v === 'direct' || (v === 'base' ? BASELINE !== undefined : !CHOSEN || CHOSEN.includes(v)),
);
const PROXIES: Variant[] = ['sluice', ...(BASELINE ? (['base'] as const) : []), 'node', 'nginx'];
/** `--profile DIR`: the sidecars run with --cpu-prof into DIR (written when they exit, at the end). */
const PROFILE_DIR = option('--profile');
const PROFILING = PROFILE_DIR ? `--cpu-prof --cpu-prof-dir=${PROFILE_DIR}` : undefined;
/** A sidecar's own NODE_OPTIONS replace the process's, so they carry the profiling flags too. */
const withProfiling = (env: Record<string, string>): Record<string, string> =>
  PROFILING && env.NODE_OPTIONS !== undefined
    ? { ...env, NODE_OPTIONS: `${env.NODE_OPTIONS} ${PROFILING}` }
    : env;
/**
 * `--sluice-env 'NODE_OPTIONS=--max-semi-space-size=1 MALLOC_ARENA_MAX=2'`: environment of the measured
 * sidecars only (not the baseline's): V8 and allocator settings compared in one run. Without it they run with
 * the NODE_OPTIONS injected pods and gateways get (PROXY_NODE_OPTIONS); `--sluice-env ''` for V8's defaults.
 */
const envOption = (name: string): Record<string, string> =>
  option(name) === undefined
    ? { NODE_OPTIONS: PROXY_NODE_OPTIONS }
    : Object.fromEntries(
        (option(name) ?? '')
          .split(/ (?=[A-Z_]+=)/)
          .filter(Boolean)
          .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
      );
const SLUICE_ENV = envOption('--sluice-env');
/** `--baseline-env '…'`: the same for the baseline's sidecars (two settings of one build in one run). */
const BASELINE_ENV = envOption('--baseline-env');
/**
 * `--floor-h2`: the Node floor keeps h2c from the app HTTP/2 on every hop, as Sluice does (HTTP/1.1 else). Its
 * server role is then an HTTP/2 server that also takes HTTP/1.1: compare with `--protocols h2`.
 */
const FLOOR_H2 = args.includes('--floor-h2');
/**
 * `--low-load RPS`: after the overload's memory reading, 60 s of HTTP/1.1 at that rate: whether the idle
 * memory release runs again and again under steady light load.
 */
const LOW_LOAD_RPS = Number(option('--low-load') ?? 0);
/** Seconds after the overload before the "after" RSS reading. */
const AFTER_SECONDS = Number(option('--after') ?? 30);
const memoryLimit = (name: string): number | undefined => {
  const text = option(name);
  if (text === undefined) return undefined;
  const bytes = parseMemoryQuantity(text, Infinity);
  if (typeof bytes !== 'number') throw new Error(`${name} ${bytes.error}`);
  return bytes;
};
const MEMORY_LIMIT = memoryLimit('--memory-limit');
const BASELINE_MEMORY_LIMIT = memoryLimit('--baseline-memory-limit');

interface Sample {
  p50Ms: number;
  p99Ms: number;
  maxRps: number;
  cpuMsPer1k: number;
  connsPer1k: number;
  errors: number;
}

/** Per 1,000 requests, the threads that used CPU between two readings, most first. */
const byThread = (before: Map<string, number>, after: Map<string, number>, requests: number): string =>
  [...after]
    .map(([name, ms]) => [name, ((ms - (before.get(name) ?? 0)) * 1000) / requests] as const)
    .filter(([, ms]) => ms >= 1)
    .sort((a, b) => b[1] - a[1])
    .map(([name, ms]) => `${name} ${ms.toFixed(0)}`)
    .join(', ') || '-';

const median = (xs: number[]): number => {
  const s = [...xs].filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

function nginxConfig(dir: string, role: 'client' | 'server', serverIp: string): string {
  const common = `daemon off;
master_process on;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
`;
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((t) => `  ${t}_temp_path ${dir}/${t};`)
    .join('\n');
  const keepAlive = `keepalive 64;\n    keepalive_requests 1000000;\n    keepalive_timeout 60s;`;
  const proxied = `proxy_http_version 1.1;\n      proxy_set_header Connection "";`;
  if (role === 'client') {
    return `${common}http {
  access_log off;
${temp}
  upstream peer {
    server ${serverIp}:${PORTS.nginxServer};
    ${keepAlive}
  }
  server {
    listen 127.0.0.1:${PORTS.nginxH1};
    listen 127.0.0.1:${PORTS.nginxH2} http2;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    location / {
      proxy_pass https://peer;
      ${proxied}
      proxy_ssl_certificate ${dir}/cert.pem;
      proxy_ssl_certificate_key ${dir}/key.pem;
      proxy_ssl_trusted_certificate ${dir}/ca.pem;
      proxy_ssl_verify on;
      proxy_ssl_name ${SERVER_NAME};
      proxy_ssl_session_reuse on;
    }
  }
}
`;
  }
  return `${common}http {
  access_log off;
${temp}
  upstream app {
    server 127.0.0.1:${APP_PORT};
    ${keepAlive}
  }
  server {
    listen ${serverIp}:${PORTS.nginxServer} ssl;
    ssl_certificate ${dir}/cert.pem;
    ssl_certificate_key ${dir}/key.pem;
    ssl_client_certificate ${dir}/ca.pem;
    ssl_verify_client on;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    location / {
      proxy_pass http://app;
      ${proxied}
    }
  }
}
`;
}

async function main(): Promise<void> {
  const reason = netnsUnavailableReason();
  if (reason) throw new Error(reason);
  await ensureHostPackages('tests');
  const installed = await ensureHostPackages('bench');
  if (installed.length > 0) console.log(`installed ${installed.join(' ')}`);
  const loadBefore = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

  removeStaleMemoryCgroups();
  const cgroups = new Map<string, MemoryCgroup>();
  /** The memory cgroup of one proxy (`variant-role`), when its pair runs with a limit. */
  const cgroupOf = (variant: Variant, role: string): string | undefined => {
    const limit = variant === 'base' ? BASELINE_MEMORY_LIMIT : MEMORY_LIMIT;
    if (limit === undefined) return undefined;
    const cgroup = createMemoryCgroup(`${variant}-${role}`, limit);
    cgroups.set(`${variant}-${role}`, cgroup);
    return cgroup.dir;
  };
  const mesh = await MeshFixture.create();
  try {
    // --sluice-args '--max-upstream-connections 64': extra flags for both sidecars.
    const proxyArgs = (option('--sluice-args') ?? '').split(' ').filter(Boolean);
    const pod = (
      name: string,
      meshed: boolean,
      entry?: string,
      env?: Record<string, string>,
      memoryCgroup?: string,
    ): Promise<MeshPod> =>
      mesh.addPod({
        name,
        namespace: 'bench',
        serviceAccount: name,
        meshed,
        proxyArgs,
        ...(entry ? { entry } : {}),
        ...(env && Object.keys(env).length > 0 ? { env: withProfiling(env) } : {}),
        ...(memoryCgroup ? { memoryCgroup } : {}),
      });
    const client = await pod('client', true, undefined, SLUICE_ENV, cgroupOf('sluice', 'client'));
    const server = await pod('server', true, undefined, SLUICE_ENV, cgroupOf('sluice', 'server'));
    const baseClient = BASELINE
      ? await pod('bclient', true, BASELINE, BASELINE_ENV, cgroupOf('base', 'client'))
      : undefined;
    const baseServer = BASELINE
      ? await pod('bserver', true, BASELINE, BASELINE_ENV, cgroupOf('base', 'server'))
      : undefined;
    const pclient = await pod('pclient', false); // direct, Node floor and nginx
    const pserver = await pod('pserver', false);
    if (PROFILE_DIR) {
      mkdirSync(PROFILE_DIR, { recursive: true, mode: 0o777 });
      chmodSync(PROFILE_DIR, 0o777);
      process.env.NODE_OPTIONS = PROFILING;
    }
    await startSidecarPairs(mesh, [
      { client, server, service: 'server', vip: VIP },
      ...(baseClient && baseServer
        ? [{ client: baseClient, server: baseServer, service: 'bserver', vip: BASE_VIP }]
        : []),
    ]);
    delete process.env.NODE_OPTIONS;

    // Certificates for the Node and nginx pairs, from the same CA as the sidecars'.
    const dirs = { client: join(mesh.dir, 'pair-client'), server: join(mesh.dir, 'pair-server') };
    for (const [role, dir] of Object.entries(dirs)) {
      mkdirSync(dir, { recursive: true });
      const pem = await serverCert(mesh.ca, role === 'server' ? SERVER_NAME : 'client.bench');
      writeFileSync(join(dir, 'cert.pem'), pem.cert);
      writeFileSync(join(dir, 'key.pem'), pem.key, { mode: 0o600 });
      writeFileSync(join(dir, 'ca.pem'), mesh.ca.certPem);
      writeFileSync(join(dir, 'nginx.conf'), nginxConfig(dir, role as 'client' | 'server', pserver.ip));
    }
    const inCgroup = (variant: Variant, p: MeshPod): { cgroup?: string } => {
      const cgroup = cgroupOf(variant, p === pclient ? 'client' : 'server');
      return cgroup ? { cgroup } : {};
    };
    const floor = (p: MeshPod, spec: Record<string, unknown>, dir: string): number =>
      mesh.harness.exec(
        p,
        nodeBin,
        [
          // Profiled like the sidecars, to compare where each spends its time (written at SIGTERM).
          ...(PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] : []),
          'bench/node-floor-proxy.ts',
          JSON.stringify({
            ...spec,
            cert: join(dir, 'cert.pem'),
            key: join(dir, 'key.pem'),
            ca: join(dir, 'ca.pem'),
          }),
        ],
        inCgroup('node', p),
      ).pid!;
    const nginx = (p: MeshPod, dir: string): number => {
      const child = mesh.harness.exec(
        p,
        'nginx',
        ['-p', dir, '-c', join(dir, 'nginx.conf')],
        inCgroup('nginx', p),
      );
      child.stderr!.on('data', (d: Buffer) => process.stderr.write(`[nginx ${p.name}] ${d.toString()}`));
      return child.pid!;
    };
    const pids: Record<Exclude<Variant, 'direct'>, number[]> = {
      sluice: [client.sidecar!.pid!, server.sidecar!.pid!],
      base: baseClient && baseServer ? [baseClient.sidecar!.pid!, baseServer.sidecar!.pid!] : [],
      node: [
        floor(
          pclient,
          {
            role: 'client',
            port: PORTS.nodeH1,
            h2cPort: PORTS.nodeH2,
            upstream: `https://${pserver.ip}:${PORTS.nodeServer}`,
            serverName: SERVER_NAME,
            h2: FLOOR_H2,
          },
          dirs.client,
        ),
        floor(
          pserver,
          { role: 'server', port: PORTS.nodeServer, upstream: `http://127.0.0.1:${APP_PORT}`, h2: FLOOR_H2 },
          dirs.server,
        ),
      ],
      nginx: [nginx(pclient, dirs.client), nginx(pserver, dirs.server)],
    };
    for (const port of [PORTS.nodeH1, PORTS.nodeH2, PORTS.nginxH1, PORTS.nginxH2]) {
      await mesh.harness.waitForPort(pclient, '127.0.0.1', port);
    }
    for (const port of [PORTS.nodeServer, PORTS.nginxServer]) {
      await mesh.harness.waitForPort(pserver, pserver.ip, port);
    }
    // Count every connection opened into the server pods (a rule without a target only counts).
    for (const p of [server, pserver, ...(baseServer ? [baseServer] : [])]) {
      await mesh.harness.runIn(p, 'iptables', [
        '-t',
        'filter',
        '-I',
        'INPUT',
        '1',
        '-i',
        'eth0',
        '-p',
        'tcp',
        '--syn',
      ]);
    }
    /** A sidecar's failure and overflow counters (`sluice_errors_total` by cause, `sluice_overflow_total` by cap). */
    const failureCounts = async (p: MeshPod): Promise<Map<string, number>> => {
      const counts = new Map<string, number>();
      for (const line of (await mesh.admin(p, '/metrics')).body.split('\n')) {
        const m = /^sluice_(errors|overflow)_total\{(.*)\} (\d+)/.exec(line);
        if (m) counts.set(`${m[1]}{${m[2]!.replace(/"/g, '')}}`, Number(m[3]));
      }
      return counts;
    };
    /**
     * Stuck connections in a pod once load has ended and settled: established TCP connections with bytes
     * still queued unsent (Send-Q) or unread (Recv-Q), out of all open; for a sidecar also the upstream
     * requests it still holds (sluice_upstream_requests_in_flight). Idle keep-alive connections are not stuck.
     */
    const stuck = async (p: MeshPod, sidecar: boolean): Promise<string> => {
      const out = await mesh.harness.runIn(p, 'ss', ['-tnH', 'state', 'established']);
      const rows = out.split('\n').filter((l) => l.trim() !== '');
      const queued = rows.filter((l) => {
        const [recvQ, sendQ] = l.trim().split(/\s+/).map(Number);
        return recvQ! > 0 || sendQ! > 0;
      });
      for (const l of queued) process.stderr.write(`stuck in ${p.name}: ${l.trim()}\n`);
      const held = sidecar
        ? /^sluice_upstream_requests_in_flight (\d+)/m.exec((await mesh.admin(p, '/metrics')).body)?.[1]
        : undefined;
      return `${p.name} ${queued.length} of ${rows.length} open${held === undefined ? '' : `, ${held} in flight`}`;
    };
    const syns = async (p: MeshPod): Promise<number> => {
      const out = await mesh.harness.runIn(p, 'iptables', [
        '-t',
        'filter',
        '-L',
        'INPUT',
        '1',
        '-v',
        '-x',
        '-n',
      ]);
      return Number(out.trim().split(/\s+/)[0]);
    };
    // Idle: after start-up has settled (nginx forks its worker, Node finishes loading).
    await waitFor('nginx workers', () => pids.nginx.every((pid) => tree(pid).length >= 2), {
      timeoutMs: 30_000,
      intervalMs: 100,
    });
    await new Promise((r) => setTimeout(r, IDLE_WAIT_SECONDS * 1000)); // start-up settled before the reading
    const idle = Object.fromEntries(
      PROXIES.map((v) => [v, pids[v as keyof typeof pids].map((pid) => procStats(tree(pid)).rssMb)]),
    ) as Record<string, number[]>;
    // The rest of an idle RSS is mapped files, mostly the node binary's pages (shared between processes).
    console.log(
      `RSS idle, anonymous MB (c/s): ${PROXIES.map((v) => `${v} ${pids[v as keyof typeof pids].map((pid) => procStats(tree(pid)).anonMb.toFixed(1)).join(' / ')}`).join(', ')}`,
    );
    const peak = Object.fromEntries(PROXIES.map((v) => [v, [0, 0]])) as Record<string, number[]>;

    const load = async (p: MeshPod, spec: Record<string, unknown>): Promise<LoadResult> => {
      const out = await mesh.harness.runIn(p, nodeBin, ['bench/load-generator.ts', JSON.stringify(spec)], {
        timeoutMs: 120_000 + Number(spec.durationMs),
      });
      return JSON.parse(out) as LoadResult;
    };
    const target = (v: Variant, protocol: Protocol): { pod: MeshPod; url: string } => {
      const path = '/?size=1024';
      switch (v) {
        case 'direct':
          return { pod: pclient, url: `http://${pserver.ip}:${APP_PORT}${path}` };
        case 'sluice':
          return { pod: client, url: `http://${VIP}${path}` };
        case 'base':
          return { pod: baseClient!, url: `http://${BASE_VIP}${path}` };
        case 'node':
          return {
            pod: pclient,
            url: `http://127.0.0.1:${protocol === 'h1' ? PORTS.nodeH1 : PORTS.nodeH2}${path}`,
          };
        case 'nginx':
          return {
            pod: pclient,
            url: `http://127.0.0.1:${protocol === 'h1' ? PORTS.nginxH1 : PORTS.nginxH2}${path}`,
          };
      }
    };
    // Idle again after a few requests through each proxy pair: what a sidecar that has carried traffic holds
    // at rest (the client's undici, ~10 MB, loads at its first request). The overload's "back to idle" compares
    // with this reading.
    for (const v of PROXIES)
      for (const protocol of PROTOCOLS)
        await load(target(v, protocol).pod, {
          url: target(v, protocol).url,
          protocol,
          mode: 'rate',
          rps: 20,
          durationMs: 1000,
          connections: 1,
        });
    await new Promise((r) => setTimeout(r, 2000));
    const idleWarm = Object.fromEntries(
      PROXIES.map((v) => [v, pids[v as keyof typeof pids].map((pid) => procStats(tree(pid)).rssMb)]),
    ) as Record<string, number[]>;
    console.log(
      `RSS idle after 20 requests per protocol, MB (c/s): ${PROXIES.map((v) => `${v} ${idleWarm[v]!.map((n) => n.toFixed(0)).join(' / ')}`).join(', ')}`,
    );
    const samples = new Map<string, Sample[]>();
    const started = Date.now();
    const proxyOrder = VARIANTS.filter((v) => v !== 'direct');
    const sidecarsOf = (v: Variant): MeshPod[] =>
      v === 'sluice' ? [client, server] : v === 'base' ? [baseClient!, baseServer!] : [];
    const lastRun = new Map<Variant, number>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const protocol of PROTOCOLS) {
        const order = ['direct' as const, ...(round % 2 ? [...proxyOrder].reverse() : proxyOrder)];
        for (const v of order) {
          const released = sidecarsOf(v)
            .map((p) => releasesSince(p, lastRun.get(v) ?? started).join(', ') || 'none')
            .join(' / ');
          const { pod: from, url } = target(v, protocol);
          const counted = v === 'sluice' ? server : v === 'base' ? baseServer! : pserver;
          const procs = v === 'direct' ? [] : pids[v].map(tree);
          const common = { url, protocol, connections: CONNECTIONS };
          if (WARM_SECONDS > 0 && v !== 'direct') {
            const durationMs = (round === 0 ? 4 : 1) * WARM_SECONDS * 1000;
            await load(from, { ...common, mode: 'rate', rps: RPS, durationMs });
          }
          // CPU and its system part, both proxies, from one reading of each process tree.
          const cpuOf = (): { cpu: number; sys: number } =>
            procs
              .map(procStats)
              .reduce((a, p) => ({ cpu: a.cpu + p.cpuMs, sys: a.sys + p.sysMs }), { cpu: 0, sys: 0 });
          const at0 = cpuOf();
          const threads0 = threadCpuMs(procs.flat());
          const syn0 = await syns(counted);
          const rate = await load(from, {
            ...common,
            mode: 'rate',
            rps: RPS,
            durationMs: RATE_SECONDS * 1000,
          });
          const at1 = cpuOf();
          const threads1 = threadCpuMs(procs.flat());
          // At max every process shares the 2 cores: the proxies' and the app's CPU per request say what a
          // max rps is bounded by (the app serves h2c behind Sluice, HTTP/1.1 behind the floor).
          const app = counted.app?.pid ?? 0;
          const atMax0 = { proxies: procs.map((t) => procStats(t).cpuMs), app: procStats([app]).cpuMs };
          const sampling = { on: true };
          const sampler = (async () => {
            while (sampling.on) {
              if (v !== 'direct') {
                pids[v].forEach((pid, i) => {
                  peak[v]![i] = Math.max(peak[v]![i]!, procStats(tree(pid)).rssMb);
                });
              }
              await new Promise((r) => setTimeout(r, 100));
            }
          })();
          const max = await load(from, { ...common, mode: 'max', durationMs: MAX_SECONDS * 1000 });
          sampling.on = false;
          await sampler;
          const maxK = (max.sent + max.warmupSent) / 1000;
          const proxiesAtMax =
            (procs.reduce((a, t) => a + procStats(t).cpuMs, 0) - atMax0.proxies.reduce((a, b) => a + b, 0)) /
            maxK;
          const appAtMax = (procStats([app]).cpuMs - atMax0.app) / maxK;
          const syn1 = await syns(counted);
          lastRun.set(v, Date.now());
          const rateRequests = rate.sent + rate.warmupSent;
          const allRequests = rateRequests + max.sent + max.warmupSent;
          const key = `${v}/${protocol}`;
          samples.set(key, [
            ...(samples.get(key) ?? []),
            {
              p50Ms: rate.p50Ms,
              p99Ms: rate.p99Ms,
              maxRps: max.rps,
              cpuMsPer1k: procs.length === 0 ? NaN : (at1.cpu - at0.cpu) / (rateRequests / 1000),
              connsPer1k: (syn1 - syn0) / (allRequests / 1000),
              errors: rate.errors + max.errors,
            },
          ]);
          process.stderr.write(
            `round ${round + 1}/${ROUNDS} ${key}: p50 ${rate.p50Ms.toFixed(2)} p99 ${rate.p99Ms.toFixed(2)} ms, max ${max.rps.toFixed(0)} rps, CPU ${samples.get(key)!.at(-1)!.cpuMsPer1k.toFixed(0)} ms/1k (system ${((at1.sys - at0.sys) / (rateRequests / 1000)).toFixed(0)}; by thread ${byThread(threads0, threads1, rateRequests)}), errors ${rate.errors + max.errors}; CPU ms/1k at max: proxies ${proxiesAtMax.toFixed(0)} app ${appAtMax.toFixed(0)}${released ? `; idle releases before it (c/s): ${released}` : ''}\n`,
          );
        }
      }
    }
    const overloadRows: string[] = [];
    let sluiceStuck: string | undefined;
    // Direct and nginx get Sluice's offered rate: whether the generator and app keep up with it without
    // Sluice in the way says whether Sluice or the machine is the bound.
    const sluiceMax = median((samples.get('sluice/h1') ?? []).map((s) => s.maxRps));
    for (const v of OVERLOAD_SECONDS > 0
      ? (['direct', 'nginx', 'sluice', 'base', 'node'] as const).filter((x) => VARIANTS.includes(x))
      : []) {
      const { pod: from, url } = target(v, 'h1');
      const counted = v === 'sluice' ? server : v === 'base' ? baseServer! : pserver;
      const maxRps = median((samples.get(`${v}/h1`) ?? []).map((s) => s.maxRps));
      const offered = Math.round(2 * (v === 'direct' || v === 'nginx' ? sluiceMax : maxRps));
      const procs = v === 'direct' ? [] : pids[v].map(tree);
      const app = counted.app?.pid ?? 0;
      const cpu0 = { proxies: procs.map((t) => procStats(t).cpuMs), app: procStats([app]).cpuMs };
      const syn0 = await syns(counted);
      const meshPods = sidecarsOf(v);
      const causes0 = await Promise.all(meshPods.map((p) => failureCounts(p)));
      const overloadStarted = Date.now();
      const peakRss = [0, 0];
      const sampling = { on: true };
      const sampler = (async () => {
        while (sampling.on && v !== 'direct') {
          pids[v].forEach((pid, i) => (peakRss[i] = Math.max(peakRss[i]!, procStats(tree(pid)).rssMb)));
          await new Promise((r) => setTimeout(r, 200));
        }
      })();
      const over = await load(from, {
        url,
        protocol: 'h1',
        connections: OVERLOAD_CONNECTIONS,
        mode: 'rate',
        rps: offered,
        durationMs: OVERLOAD_SECONDS * 1000,
        timeoutMs: 2000,
      });
      sampling.on = false;
      await sampler;
      const syn1 = await syns(counted);
      // Cores used over the measured run (the proxies' and the app's include the generator's warm-up).
      const cores = (ms: number): string => (ms / 1000 / over.seconds).toFixed(2);
      const proxyCpu = procs.map((t, i) => procStats(t).cpuMs - cpu0.proxies[i]!);
      const appCpu = procStats([app]).cpuMs - cpu0.app;
      const o = over.outcomes;
      // Which cap answered the 503s (sidecars' own counters over the overload, client then server).
      const causes = (await Promise.all(meshPods.map((p) => failureCounts(p)))).map((after, i) =>
        [...after]
          .map(([k, n]) => [k, n - (causes0[i]!.get(k) ?? 0)] as const)
          .filter(([, n]) => n > 0)
          .map(([k, n]) => `${k} ${n}`)
          .join(', '),
      );
      const row = [
        v,
        `${offered} rps offered`,
        `goodput ${over.rps.toFixed(0)} rps (${((100 * over.rps) / maxRps).toFixed(0)} % of max)`,
        `in time ${o.inTime} (${((100 * o.inTime) / over.sent).toFixed(0)} %), late ${o.late}, given up ${o.gaveUp}, 503 ${o.overloaded}, failed ${o.failed} of ${over.sent}`,
        `cores: generator ${cores(over.cpuMs)} app ${cores(appCpu)} proxies ${proxyCpu.map(cores).join('/') || '-'}; send lag p99 ${over.sendLagP99Ms.toFixed(0)} ms`,
        `new upstream conns/1k ${((1000 * (syn1 - syn0)) / (over.sent + over.warmupSent)).toFixed(2)}`,
        ...(meshPods.length > 0
          ? [`failures in the sidecars: ${causes.map((c) => c || 'none').join(' / ')}`]
          : []),
        `p50/p99 ${over.p50Ms.toFixed(0)}/${over.p99Ms.toFixed(0)} ms (once sent ${over.serviceP50Ms.toFixed(0)}/${over.serviceP99Ms.toFixed(0)})`,
      ];
      if (v !== 'direct') {
        // Then: how far memory came back, every 5 s (when the idle release ran) and its anonymous part at the end.
        const series: string[] = [];
        for (let t = 5; t <= AFTER_SECONDS; t += 5) {
          await new Promise((r) => setTimeout(r, 5000));
          series.push(pids[v].map((pid) => procStats(tree(pid)).rssMb.toFixed(0)).join('/'));
        }
        const after = pids[v].map((pid) => procStats(tree(pid)).rssMb);
        const afterAnon = pids[v].map((pid) => procStats(tree(pid)).anonMb.toFixed(0));
        // Sluice: what the memory is (V8 heap, buffers, the rest: malloc and code) before and after a full GC.
        const mb = (n: number): string => (n / 2 ** 20).toFixed(0);
        const breakdown = (u: NodeJS.MemoryUsage): string =>
          `rss ${mb(u.rss)} heap ${mb(u.heapUsed)}/${mb(u.heapTotal)} ext ${mb(u.external)} ab ${mb(u.arrayBuffers)} other ${mb(u.rss - u.heapTotal - u.external)}`;
        row.push(
          `RSS peak ${peakRss.map((n) => n.toFixed(0)).join('/')} MB, ${AFTER_SECONDS} s after ${after.map((n) => n.toFixed(0)).join('/')} MB (idle ${idle[v]!.map((n) => n.toFixed(0)).join('/')}, after the first requests ${idleWarm[v]!.map((n) => n.toFixed(0)).join('/')}; anonymous ${afterAnon.join('/')}; every 5 s ${series.join(', ')})`,
        );
        const stuckPods = meshPods.length > 0 ? meshPods : [from, counted];
        const stuckCounts = await Promise.all(stuckPods.map((p) => stuck(p, meshPods.length > 0)));
        row.push(`stuck connections (bytes queued) ${AFTER_SECONDS} s after: ${stuckCounts.join('; ')}`);
        if (v === 'sluice') sluiceStuck = stuckCounts.join('; ');
        for (const p of meshPods) {
          const before = JSON.parse((await mesh.admin(p, '/memory?gc=0')).body) as NodeJS.MemoryUsage;
          const gced = JSON.parse((await mesh.admin(p, '/memory')).body) as NodeJS.MemoryUsage;
          row.push(`${p.name}: ${breakdown(before)} → after GC ${breakdown(gced)}`);
        }
        const released = (since: number): string =>
          meshPods.map((p) => `${p.name} ${releasesSince(p, since).join(', ') || 'none'}`).join('; ');
        if (meshPods.length > 0) row.push(`idle releases: ${released(overloadStarted)}`);
        if (LOW_LOAD_RPS > 0 && meshPods.length > 0) {
          const lowStarted = Date.now();
          const cpuBefore = pids[v].map((pid) => procStats(tree(pid)).cpuMs);
          const low = await load(from, {
            url,
            protocol: 'h1',
            connections: CONNECTIONS,
            mode: 'rate',
            rps: LOW_LOAD_RPS,
            durationMs: 60_000,
          });
          const cpuMs = pids[v].map((pid, i) => (procStats(tree(pid)).cpuMs - cpuBefore[i]!).toFixed(0));
          row.push(
            `then 60 s at ${LOW_LOAD_RPS} rps (${low.ok} ok, sidecar CPU ${cpuMs.join('/')} ms, RSS after ${pids[v].map((pid) => procStats(tree(pid)).rssMb.toFixed(0)).join('/')} MB): idle releases ${released(lowStarted)}`,
          );
        }
      }
      overloadRows.push(row.join(' | '));
      process.stderr.write(`overload ${overloadRows.at(-1)!}\n`);
    }
    const loadAfter = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

    const m = (v: Variant, p: Protocol, f: keyof Sample): number =>
      median((samples.get(`${v}/${p}`) ?? []).map((s) => s[f]));
    const f1 = (n: number, d = 1): string => (Number.isNaN(n) ? '-' : n.toFixed(d));
    console.log(
      `Sluice vs Node floor vs nginx, node ${process.version}, ${ROUNDS} round(s) of ${WARM_SECONDS}s warm-up + ${RATE_SECONDS}s at ${RPS} rps + ${MAX_SECONDS}s max, ` +
        `${CONNECTIONS} connections, 1 KiB replies, ${((Date.now() - started) / 1000).toFixed(0)} s; load average before ${loadBefore}, after ${loadAfter} (2 cores)`,
    );
    const summary: string[] = [];
    const json: Record<string, unknown> = {
      loadBefore,
      loadAfter,
      rounds: ROUNDS,
      samples: Object.fromEntries(samples),
      idle,
      idleWarm,
      peak,
    };
    for (const p of PROTOCOLS) {
      console.log(`\n${p === 'h1' ? 'HTTP/1.1' : 'h2c'} from the app (medians)`);
      console.log(
        'variant | p50 ms @1k | p99 ms @1k | max rps | CPU ms/1k req (both proxies) | new upstream conns/1k | RSS idle MB (c/s) | RSS peak MB (c/s) | errors',
      );
      for (const v of VARIANTS) {
        const rss = (x: Record<string, number[]>): string =>
          v === 'direct' ? '-' : x[v]!.map((n) => f1(n)).join(' / ');
        console.log(
          [
            v,
            f1(m(v, p, 'p50Ms'), 2),
            f1(m(v, p, 'p99Ms'), 2),
            f1(m(v, p, 'maxRps'), 0),
            f1(m(v, p, 'cpuMsPer1k'), 0),
            f1(m(v, p, 'connsPer1k'), 2),
            rss(idle),
            rss(peak),
            f1(m(v, p, 'errors'), 0),
          ].join(' | '),
        );
      }
      const ratio = (a: number, b: number): string =>
        Number.isFinite(a / b) ? `${(a / b).toFixed(2)}x` : '-';
      const added = (v: Variant, f: 'p50Ms' | 'p99Ms'): number => m(v, p, f) - m('direct', p, f);
      console.log(`Sluice ratio | vs Node floor | vs nginx${BASELINE ? ' | vs baseline build' : ''}`);
      const rows: [string, (v: Variant) => number][] = [
        ['CPU per request', (v) => m(v, p, 'cpuMsPer1k')],
        ['max rps', (v) => m(v, p, 'maxRps')],
        ['added p50 @1k rps', (v) => added(v, 'p50Ms')],
        ['added p99 @1k rps', (v) => added(v, 'p99Ms')],
        ['RSS idle (both)', (v) => idle[v]!.reduce((a, b) => a + b, 0)],
        ['RSS peak (both)', (v) => peak[v]!.reduce((a, b) => a + b, 0)],
      ];
      for (const [label, get] of rows)
        console.log(
          [
            label,
            ratio(get('sluice'), get('node')),
            ratio(get('sluice'), get('nginx')),
            ...(BASELINE ? [ratio(get('sluice'), get('base'))] : []),
          ].join(' | '),
        );
      summary.push(
        `${p}: CPU ${ratio(m('sluice', p, 'cpuMsPer1k'), m('node', p, 'cpuMsPer1k'))} floor / ${ratio(m('sluice', p, 'cpuMsPer1k'), m('nginx', p, 'cpuMsPer1k'))} nginx, ` +
          `max rps ${ratio(m('sluice', p, 'maxRps'), m('node', p, 'maxRps'))} floor` +
          (BASELINE
            ? `, vs baseline CPU ${ratio(m('sluice', p, 'cpuMsPer1k'), m('base', p, 'cpuMsPer1k'))} max rps ${ratio(m('sluice', p, 'maxRps'), m('base', p, 'maxRps'))}`
            : '') +
          `, +${f1(added('sluice', 'p50Ms'), 2)}/+${f1(added('sluice', 'p99Ms'), 2)} ms p50/p99`,
      );
    }
    if (sluiceStuck) summary.push(`stuck connections after overload (bytes queued of open): ${sluiceStuck}`);
    if (overloadRows.length > 0) {
      console.log(
        `\nOverload, HTTP/1.1, ${OVERLOAD_SECONDS} s at 2x max rps, ${OVERLOAD_CONNECTIONS} connections, 2 s client timeout:`,
      );
      for (const r of overloadRows) console.log(r);
    }
    if (cgroups.size > 0) {
      const readings = Object.fromEntries([...cgroups].map(([k, c]) => [k, c.readings()]));
      json.memoryCgroups = readings;
      const limit = (bytes: number | undefined): string =>
        bytes === undefined ? 'none' : `${(bytes / 2 ** 20).toFixed(0)} MiB`;
      console.log(
        `\nmemory cgroups (limit ${limit(MEMORY_LIMIT)}${BASELINE ? `, baseline ${limit(BASELINE_MEMORY_LIMIT)}` : ''}), ` +
          `over the whole run: ${Object.entries(readings)
            .map(
              ([k, r]) =>
                `${k} peak ${r.peakMb.toFixed(0)} MB, limit hits ${r.limitHits}, OOM kills ${r.oomKills}`,
            )
            .join('; ')}`,
      );
    }
    console.log(`\nsummary: Sluice ${summary.join('; ')}; load average ${loadBefore} → ${loadAfter}`);
    const jsonFile = option('--json');
    if (jsonFile) writeFileSync(jsonFile, JSON.stringify(json, null, 2));
    if (PROFILE_DIR) {
      // A profile is written when the process exits: a graceful stop (SIGTERM drains, then exits).
      for (const p of [client, server]) p.sidecar!.kill('SIGTERM');
      for (const pid of pids.node) process.kill(pid, 'SIGTERM');
      await waitFor(
        'the profiled sidecars to exit',
        () => [client, server].every((p) => p.sidecar!.exitCode !== null),
        {
          timeoutMs: 30_000,
          intervalMs: 200,
        },
      );
      await waitFor(
        'the profiled floor proxies to exit',
        () => pids.node.every((pid) => tree(pid).length === 0),
        {
          timeoutMs: 30_000,
          intervalMs: 200,
        },
      );
    }
  } finally {
    await mesh.destroy();
    for (const cgroup of cgroups.values()) await cgroup.remove();
  }
}

await main();
