/**
 * Config fan-out (ADR 0005): the controller's hub + HTTP/2 mTLS server with N subscribed sidecar streams on
 * loopback, a mesh of 1,000 Services (each with an EndpointSlice and 2 Pods) and 1,000 routes.
 * Measures the time from an upsert to the delta being applied in every subscriber (p50/p99 over all
 * subscribers and rounds; the 50 ms debounce is included), the same for a batch changing every route,
 * snapshot time for N connecting clients, and the controller process's CPU and RSS. Prints numbers; no
 * assertions.
 *
 * Run: node bench/config-fanout.ts   (env: BENCH_CLIENTS=1000 BENCH_PROCS=1 BENCH_ROUNDS=20
 * BENCH_MASS_ROUNDS=3 BENCH_NAMESPACES=100 BENCH_SERVICES=1000; BENCH_MALLOC=1 adds glibc's malloc
 * statistics and trims after each, which lowers the RSS printed after it; `node --expose-gc` collects
 * garbage before each memory line)
 *
 * The controller runs in this process, with the NODE_OPTIONS and MALLOC_* settings of
 * manifests/controller-deployment.yaml (the bench starts itself again with them; BENCH_DEPLOYMENT_ENV=0 to
 * run with your own); the subscribers (config-subscribers.ts) run in BENCH_PROCS child
 * processes, so that the CPU and RSS printed for the controller are its own. The view rebuild a sidecar
 * pays per change (subscribers skip it) is measured separately at the start.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import koffi from 'koffi';
import { createRequire } from 'node:module';
import { ConfigHub, type PushInfo } from '../controller/config-hub.ts';
import { ConfigServer } from '../controller/config-server.ts';
import { controllerSpiffeId } from '../protocol/config-protocol.ts';
import { inScope, stripObject } from '../protocol/config-scope.ts';
import { buildProxyView } from '../mesh-model/proxy-view.ts';
import { createCa, issueWorkloadCert, loadCa, type CertificateAuthority } from '../pki/ca.ts';
import { parseIdentity, type IdentityPem } from '../pki/identity.ts';
import { generateKeyPair, privateKeyToPem } from '../pki/keys.ts';
import { MeshTlsCredentials } from '../pki/tls-options.ts';
import { controllerRuntimeEnv, startSubscribers, type FromSubscribers } from './config-subscribers.ts';
import {
  benchMesh as mesh,
  benchRoute as route,
  CLIENTS,
  NAMESPACES,
  PROCS,
  ROUNDS,
  SERVICES,
  TD,
} from './config-bench-routes.ts';
import { percentile } from './stats.ts';

const MASS_ROUNDS = Number(process.env.BENCH_MASS_ROUNDS ?? 3);
const MARKER = 'bench-marker';
const REEXECUTED = 'SLUICE_BENCH_DEPLOYMENT_ENV_APPLIED';

function ms(n: number): string {
  return `${n.toFixed(1)} ms`;
}

const mib = (n: number): string => (n / 2 ** 20).toFixed(0);

/** Kernel's view of the process: anonymous memory (heaps, malloc) apart from mapped files (the binary). */
function procStatusMib(field: string): string {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? mib(Number(m[1]) * 1024) : '?';
  } catch {
    return '?';
  }
}

/**
 * RSS and where it is: JS heap used/committed, external (Buffers and other memory V8 is told about),
 * ArrayBuffers (Buffers alone). Under `node --expose-gc` a full GC runs first, so the heap numbers are live
 * data and the rest of RSS is V8 slack, malloc fragmentation or native memory (TLS, HTTP/2).
 */
function memoryLine(): string {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const m = process.memoryUsage();
  return (
    `${mib(m.rss)} MiB (anon ${procStatusMib('RssAnon')}, file ${procStatusMib('RssFile')}; ` +
    `JS heap ${mib(m.heapUsed)}/${mib(m.heapTotal)} (new space ${mib(space('new_space'))}), ` +
    `external ${mib(m.external)}, buffers ${mib(m.arrayBuffers)}` +
    `${gc ? ', after a full GC' : ''}${mallocLine()})`
  );
}

function space(name: string): number {
  return v8.getHeapSpaceStatistics().find((s) => s.space_name === name)?.space_size ?? 0;
}

/** BENCH_MALLOC=1: glibc's malloc in use / free (mallinfo2), and RSS after malloc_trim(0) gave free pages back. */
const { loadMallinfo2 } = createRequire(import.meta.url)('./mallinfo.cjs') as {
  loadMallinfo2: (k: typeof koffi) => () => Record<string, number>;
};
const glibc = process.env.BENCH_MALLOC === '1' ? loadMallocStats() : undefined;

function loadMallocStats(): { info: () => number[]; trim: () => void } {
  const mallinfo2 = loadMallinfo2(koffi);
  const mallocTrim = koffi.load('libc.so.6').func('int malloc_trim(size_t)') as (pad: number) => number;
  return {
    info: () => {
      const i = mallinfo2();
      return ['arena', 'hblkhd', 'uordblks', 'fordblks'].map((f) => i[f]!);
    },
    trim: () => void mallocTrim(0),
  };
}

function mallocLine(): string {
  if (!glibc) return '';
  const [arena, mmapped, used, free] = glibc.info() as [number, number, number, number];
  glibc.trim();
  return (
    `; malloc arena ${mib(arena)} (used ${mib(used)}, free ${mib(free)}), mmapped ${mib(mmapped)}; ` +
    `RSS after malloc_trim ${mib(process.memoryUsage().rss)}`
  );
}

async function identityPem(ca: CertificateAuthority, spiffeId: string): Promise<IdentityPem> {
  const keys = await generateKeyPair();
  const certPem = await issueWorkloadCert({ ca, spiffeId, publicKey: keys.publicKey });
  return { certPem, keyPem: await privateKeyToPem(keys.privateKey), bundlePem: ca.certPem };
}

// ---------------------------------------------------------------- controller process

async function runController(): Promise<void> {
  console.log(
    `config fan-out: ${CLIENTS} subscribers in ${PROCS} process(es), ${NAMESPACES} namespaces, ` +
      `${SERVICES} Services (+${SERVICES} EndpointSlices, ${2 * SERVICES} Pods), ${SERVICES} routes`,
  );
  const objects = mesh();

  // What a sidecar pays per applied change: a full view rebuild of its scope.
  const scope = objects.map((o) => stripObject(o)!).filter((o) => inScope(o, 'ns-1'));
  const rebuilds: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t = performance.now();
    buildProxyView(scope, 'ns-1', TD);
    rebuilds.push(performance.now() - t);
  }
  rebuilds.sort((a, b) => a - b);
  console.log(
    `sidecar view rebuild (${scope.length} objects in scope): median ${ms(percentile(rebuilds, 50))}`,
  );

  const ca = await loadCa(await createCa({ trustDomain: TD }));
  const controller = parseIdentity(await identityPem(ca, controllerSpiffeId(TD)));
  const perNamespace: IdentityPem[] = [];
  for (let n = 0; n < NAMESPACES; n++)
    perNamespace.push(await identityPem(ca, `spiffe://${TD}/ns/ns-${n}/sa/app`));

  const pushes: PushInfo[] = [];
  let drops = 0;
  const hub = new ConfigHub({ metrics: { onPush: (p) => pushes.push(p), onDrop: () => drops++ } });
  const loadStart = performance.now();
  for (const o of objects) hub.upsert(o);
  hub.upsert(route('ns-0', MARKER, ['ns-0', 'svc-0'], '/marker', 0));
  hub.markSynced();
  console.log(
    `controller: ${hub.stats().objects} objects stripped and indexed in ${ms(performance.now() - loadStart)}`,
  );
  const server = new ConfigServer({
    hub,
    credentials: new MeshTlsCredentials(controller),
    port: 0,
    host: '127.0.0.1',
  });
  const port = await server.listen();

  let peakRss = 0;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
  const rssMb = (): string => memoryLine();
  console.log(`controller RSS before subscribers: ${rssMb()}`);

  const pool = startSubscribers({
    port,
    controllerSpiffeId: controllerSpiffeId(TD),
    marker: MARKER,
    clients: Array.from({ length: CLIENTS }, (_, i) => perNamespace[i % NAMESPACES]!),
    procs: PROCS,
  });
  const { children } = pool;
  const collect = pool.collect.bind(pool);
  let cpu = process.cpuUsage();
  const cpuSince = (): string => {
    const d = process.cpuUsage(cpu);
    cpu = process.cpuUsage();
    return `${((d.user + d.system) / 1e6).toFixed(2)} s`;
  };
  const connectStart = performance.now();
  const connected = await collect<Extract<FromSubscribers, { type: 'connected' }>>(
    'connected',
    children.length,
    600_000,
  );
  const ok = connected.reduce((n, c) => n + c.clients, 0);
  const failed = connected.reduce((n, c) => n + c.failed, 0);
  console.log(
    `snapshots: ${ok} subscribers connected and applied their snapshot (${failed} failed) in ` +
      `${ms(performance.now() - connectStart)}; snapshot ~${(connected[0]!.snapshotBytes / 2 ** 20).toFixed(1)} MiB; ` +
      `controller CPU ${cpuSince()}, RSS ${rssMb()} (${server.streams} streams)`,
  );

  const round = async (generation: number, change: () => void): Promise<number[]> => {
    const waiting = collect<Extract<FromSubscribers, { type: 'applied' }>>(
      'applied',
      children.length,
      60_000,
    );
    const t0 = process.hrtime.bigint();
    change();
    const replies = await waiting;
    return replies.flatMap((r) => r.appliedAt.map((t) => Number(BigInt(t) - t0) / 1e6));
  };

  const single: number[] = [];
  const slowest: number[] = [];
  const pushStart = pushes.length;
  for (let r = 1; r <= ROUNDS; r++) {
    const lat = await round(r, () => hub.upsert(route('ns-0', MARKER, ['ns-0', 'svc-0'], `/marker/${r}`, r)));
    single.push(...lat);
    slowest.push(Math.max(...lat));
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const cpuSingleUs = process.cpuUsage(cpu);
  const cpuSingle = `${cpuSince()} (${((cpuSingleUs.user + cpuSingleUs.system) / 1e3 / ROUNDS).toFixed(0)} ms per change)`;
  single.sort((a, b) => a - b);
  slowest.sort((a, b) => a - b);
  const fanout = pushes.slice(pushStart).map((p) => p.latencyMs);
  fanout.sort((a, b) => a - b);
  console.log(
    `one route changed (${ROUNDS} rounds, ${single.length} applications): upsert → applied ` +
      `p50 ${ms(percentile(single, 50))}, p99 ${ms(percentile(single, 99))}, max ${ms(single.at(-1)!)}; ` +
      `last subscriber per round p50 ${ms(percentile(slowest, 50))}; controller first change → last write ` +
      `p50 ${ms(percentile(fanout, 50))}; controller CPU ${cpuSingle}, RSS ${rssMb()}`,
  );

  // Every route changes at once (a rollout touching all of them), in one batch.
  const mass: number[] = [];
  const massFrames: PushInfo[] = [];
  const next = mesh(2);
  for (let r = 0; r < MASS_ROUNDS; r++) {
    const g = ROUNDS + 1 + r;
    const before = pushes.length;
    const routes = (r % 2 === 0 ? next : objects).filter((o) => o.kind === 'HTTPRoute');
    const lat = await round(g, () => {
      for (const o of routes) hub.upsert(o);
      hub.upsert(route('ns-0', MARKER, ['ns-0', 'svc-0'], `/marker/${g}`, g));
    });
    mass.push(...lat);
    massFrames.push(...pushes.slice(before));
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  mass.sort((a, b) => a - b);
  const bytesPerSub =
    massFrames.reduce((n, p) => n + p.bytes, 0) /
    Math.max(
      1,
      massFrames.reduce((n, p) => n + p.subscribers, 0),
    );
  if (mass.length > 0) {
    console.log(
      `all ${SERVICES} routes changed (${MASS_ROUNDS} batches): upsert → applied p50 ${ms(percentile(mass, 50))}, ` +
        `p99 ${ms(percentile(mass, 99))}, max ${ms(mass.at(-1)!)}; ~${(bytesPerSub / 1024).toFixed(0)} KiB per ` +
        `subscriber per batch; controller CPU ${cpuSince()}, RSS ${rssMb()}`,
    );
  }

  clearInterval(sampler);
  const childStats = await pool.stop();
  console.log(
    `controller peak RSS ${(peakRss / 2 ** 20).toFixed(0)} MiB, slow subscribers dropped: ${drops}; ` +
      `subscriber processes: CPU ${childStats.map((s) => `${s.cpuSeconds.toFixed(1)} s`).join(', ')}, ` +
      `RSS ${childStats.map((s) => `${s.rssMb.toFixed(0)} MiB`).join(', ')}`,
  );
  await server.close();
  hub.close();
}

// The controller runs with the Deployment's Node and glibc settings: the bench starts itself again with them
// (BENCH_DEPLOYMENT_ENV=0 runs it as started, e.g. to try other flags).
if (process.env.BENCH_DEPLOYMENT_ENV === '0' || process.env[REEXECUTED] === '1') {
  await runController();
} else {
  const env = controllerRuntimeEnv();
  console.log(`controller runtime (manifests/controller-deployment.yaml): ${JSON.stringify(env)}`);
  const run = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
    stdio: 'inherit',
    env: { ...process.env, ...env, [REEXECUTED]: '1' },
  });
  process.exitCode = run.status ?? 1;
}
