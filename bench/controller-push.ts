/**
 * Controller push benchmark against the local cluster (issue: ≤500 ms p99 at 1,000 subscribers, ≤300 MB
 * RSS). Run as root, with the cluster up (`npm run cluster:up`):
 *
 *   node_modules/.bin/node bench/controller-push.ts
 *   (env: BENCH_CLIENTS=1000 BENCH_PROCS=1 BENCH_ROUNDS=20 BENCH_NAMESPACES=100 BENCH_SERVICES=1000)
 *
 * Creates namespaces sluice-bench-<n> with BENCH_SERVICES Services without selectors, one hand-made
 * EndpointSlice each (so no Pods are needed) and one HTTPRoute each with a Service parent (10% consumer
 * routes), plus a marker route. Runs the real `sluice controller` as a child process in its own
 * control-plane namespace (sluice-bench-system: its own Lease and CA Secret), and BENCH_CLIENTS simulated
 * sidecars (config-subscribers.ts) connecting over mTLS with certificates issued here from the controller's
 * CA Secret. Measures time to first sync, the time from a PATCH of the marker route to the delta applied in
 * every subscriber, and the controller's RSS and CPU from /proc. Prints a table; no assertions. Everything
 * created is deleted at the end, also on failure and Ctrl-C.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { clusterPaths } from '../cluster/paths.ts';
import { CA_SECRET_NAME, loadCaSecret } from '../controller/ca-root-secret.ts';
import { CONTROLLER_SERVICE_ACCOUNT } from '../protocol/config-protocol.ts';
import { MERGE_PATCH } from '../lib/kube/kube-api.ts';
import { loadKubeConfig } from '../lib/kube/kube-config.ts';
import { issueWorkloadCert } from '../pki/ca.ts';
import type { IdentityPem } from '../pki/identity.ts';
import { generateKeyPair, privateKeyToPem } from '../pki/keys.ts';
import { workloadSpiffeId } from '../pki/spiffe-id.ts';
import { ensureGatewayApiCrds, kubectl, requireCluster } from '../test/support/kube.ts';
import {
  controllerRuntimeEnv,
  startSubscribers,
  type FromSubscribers,
  type SubscriberPool,
} from './config-subscribers.ts';
import { freePort } from '../test/support/free-port.ts';
import { canaryRule, CLIENTS, NAMESPACES, PROCS, ROUNDS, SERVICES, TD } from './config-bench-routes.ts';
import { percentile } from './stats.ts';
import { eventually } from '../lib/eventually.ts';

const SYSTEM_NS = 'sluice-bench-system';
const BENCH_LABEL = 'sluice.dev/bench';
const BENCH_LABEL_VALUE = 'controller-push';
const MARKER = 'bench-marker';
const CHUNK = 250;
/** Set to 1 for a heap snapshot of the controller with 1,000 streams, summarized by constructor. */
const HEAP_SNAPSHOT = process.env.BENCH_HEAP_SNAPSHOT === '1';
const ROUTES_API = 'gateway.networking.k8s.io/v1';
const repo = fileURLToPath(new URL('..', import.meta.url));
const paths = clusterPaths();

const ns = (n: number): string => `sluice-bench-${n}`;
const mib = (kb: number): string => `${(kb / 1024).toFixed(0)} MiB`;
const ms = (n: number): string => `${n.toFixed(0)} ms`;

// ---------------------------------------------------------------- the bench objects

function route(namespace: string, name: string, parent: [string, string], path: string): object {
  return {
    apiVersion: ROUTES_API,
    kind: 'HTTPRoute',
    metadata: { namespace, name, labels: { [BENCH_LABEL]: BENCH_LABEL_VALUE } },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', namespace: parent[0], name: parent[1] }],
      rules: [canaryRule(parent, path)],
    },
  };
}

function benchObjects(): { namespaces: object[]; services: object[]; slices: object[]; routes: object[] } {
  const labels = { [BENCH_LABEL]: BENCH_LABEL_VALUE };
  const namespaces = [SYSTEM_NS, ...Array.from({ length: NAMESPACES }, (_, n) => ns(n))].map((name) => ({
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name, labels },
  }));
  const services: object[] = [];
  const slices: object[] = [];
  const routes: object[] = [];
  for (let s = 0; s < SERVICES; s++) {
    const namespace = ns(s % NAMESPACES);
    const name = `svc-${s}`;
    services.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { namespace, name, labels },
      spec: { ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] },
    });
    slices.push({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        namespace,
        name: `${name}-1`,
        labels: {
          ...labels,
          'kubernetes.io/service-name': name,
          // Not the mirroring controller's: it leaves slices of other managers alone.
          'endpointslice.kubernetes.io/managed-by': 'bench.sluice.dev',
        },
      },
      addressType: 'IPv4',
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      endpoints: [1, 2].map((k) => ({
        addresses: [`10.${200 + (s >> 8)}.${s & 255}.${k}`],
        conditions: { ready: true },
      })),
    });
    routes.push(
      s % 10 === 9
        ? route(ns((s + 1) % NAMESPACES), `consumer-${s}`, [namespace, name], `/c${s}`)
        : route(namespace, `route-${s}`, [namespace, name], `/r${s}`),
    );
  }
  routes.push(route(ns(0), MARKER, [ns(0), 'svc-0'], '/marker/0'));
  return { namespaces, services, slices, routes };
}

/** Server-side apply in chunks; returns the seconds it took. */
async function applyAll(objects: readonly object[]): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < objects.length; i += CHUNK) {
    const list = { apiVersion: 'v1', kind: 'List', items: objects.slice(i, i + CHUNK) };
    await kubectl(['apply', '--server-side', '--field-manager=sluice-bench', '-o', 'name', '-f', '-'], {
      input: JSON.stringify(list),
      timeoutMs: 300_000,
    });
  }
  return (performance.now() - start) / 1000;
}

async function deleteBenchNamespaces(): Promise<number> {
  const start = performance.now();
  await kubectl(
    ['delete', 'namespace', '-l', `${BENCH_LABEL}=${BENCH_LABEL_VALUE}`, '--wait=true', '--timeout=600s'],
    { timeoutMs: 620_000 },
  );
  return (performance.now() - start) / 1000;
}

// ---------------------------------------------------------------- API requests as the cluster admin

const api = loadKubeConfig({ kubeconfigPath: paths.kubeconfig }).api;

function apiRequest(method: string, path: string, body?: object): Promise<Record<string, unknown>> {
  return api.request(method, path, { ...(body ? { body, contentType: MERGE_PATCH } : {}) });
}

const markerPath = `/apis/${ROUTES_API}/namespaces/${ns(0)}/httproutes/${MARKER}`;
const generationOf = (o: Record<string, unknown>): number =>
  Number((o.metadata as { generation?: number } | undefined)?.generation);

// ---------------------------------------------------------------- the controller process

interface ProcSample {
  rssKb: number;
  peakRssKb: number;
  cpuSeconds: number;
}

function procSample(pid: number): ProcSample {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)?.[1]);
  // Fields after "(comm)": state is field 3, utime 14, stime 15 (clock ticks, 100 per second).
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return {
    rssKb: kb('VmRSS'),
    peakRssKb: kb('VmHWM'),
    cpuSeconds: (Number(fields[11]) + Number(fields[12])) / 100,
  };
}

const snapshotDir = HEAP_SNAPSHOT ? mkdtempSync(join(tmpdir(), 'sluice-bench-heap-')) : '';

/** Asks the controller for a heap snapshot and sums self sizes by node type and name (top `top`). */
async function heapBreakdown(c: ControllerProcess, top: number): Promise<string[]> {
  c.child.kill('SIGUSR2');
  let file = '';
  let size = -1;
  await waitFor('heap snapshot written', 300_000, async () => {
    await sleep(1000);
    const name = readdirSync(snapshotDir).find((f) => f.endsWith('.heapsnapshot'));
    if (!name) return false;
    file = join(snapshotDir, name);
    const now = statSync(file).size;
    const done = now === size && now > 0;
    size = now;
    return done;
  });
  const snapshot = JSON.parse(readFileSync(file, 'utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  rmSync(snapshotDir, { recursive: true, force: true });
  const fields = snapshot.snapshot.meta.node_fields;
  const [typeAt, nameAt, sizeAt] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f)) as [
    number,
    number,
    number,
  ];
  const types = snapshot.snapshot.meta.node_types[0];
  const sums = new Map<string, { bytes: number; count: number }>();
  let total = 0;
  for (let i = 0; i < snapshot.nodes.length; i += fields.length) {
    const type = types[snapshot.nodes[i + typeAt]!]!;
    const name = type === 'object' || type === 'native' ? snapshot.strings[snapshot.nodes[i + nameAt]!]! : '';
    const key = `${type}${name ? ` ${name.slice(0, 60)}` : ''}`;
    const bytes = snapshot.nodes[i + sizeAt]!;
    total += bytes;
    const sum = sums.get(key) ?? { bytes: 0, count: 0 };
    sum.bytes += bytes;
    sum.count++;
    sums.set(key, sum);
  }
  return [
    `heap snapshot ${(size / 2 ** 20).toFixed(0)} MiB file, ${(total / 2 ** 20).toFixed(0)} MiB live (self sizes):`,
    ...[...sums]
      .sort((a, b) => b[1].bytes - a[1].bytes)
      .slice(0, top)
      .map(
        ([key, s]) =>
          `  ${(s.bytes / 2 ** 20).toFixed(1).padStart(7)} MiB ${String(s.count).padStart(8)}  ${key}`,
      ),
  ];
}

interface ControllerProcess {
  child: ChildProcess;
  adminPort: number;
  configPort: number;
  /** Log lines by message, first occurrence. */
  logged: Map<string, Record<string, unknown>>;
  exited: Promise<void>;
}

function startController(configPort: number, adminPort: number): ControllerProcess {
  const child = spawn(
    process.execPath,
    [
      ...(HEAP_SNAPSHOT ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${snapshotDir}`] : []),
      'bin/sluice.js',
      'controller',
      '--kubeconfig',
      paths.kubeconfig,
      '--namespace',
      SYSTEM_NS,
      '--trust-domain',
      TD,
      '--port',
      String(configPort),
      '--admin-port',
      String(adminPort),
    ],
    {
      cwd: repo,
      stdio: ['ignore', 'pipe', 'pipe'],
      // The Deployment's V8 and malloc settings (NODE_OPTIONS, MALLOC_ARENA_MAX).
      env: { ...process.env, ...controllerRuntimeEnv(), POD_NAME: 'sluice-bench' },
    },
  );
  const logged = new Map<string, Record<string, unknown>>();
  let rest = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop()!;
    for (const line of lines) {
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(line) as Record<string, unknown>;
      } catch {
        process.stderr.write(`controller: ${line}\n`);
        continue;
      }
      const msg = String(record.msg);
      if (!logged.has(msg)) logged.set(msg, record);
      if (record.level === 'error') process.stderr.write(`controller: ${line}\n`);
    }
  });
  child.stderr
    .setEncoding('utf8')
    .on('data', (chunk: string) => process.stderr.write(`controller: ${chunk}`));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { child, adminPort, configPort, logged, exited };
}

async function admin(c: ControllerProcess, path: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://127.0.0.1:${c.adminPort}${path}`);
  return { status: res.status, text: await res.text() };
}

function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : NaN;
}

/** RSS and V8 heap of the controller from its own /metrics. */
async function memoryText(c: ControllerProcess): Promise<string> {
  const text = (await admin(c, '/metrics')).text;
  const m = (name: string): string => `${(metric(text, name) / 2 ** 20).toFixed(0)} MiB`;
  return (
    `RSS ${m('process_resident_memory_bytes')}, JS heap used ${m('nodejs_heap_size_used_bytes')} of ` +
    `${m('nodejs_heap_size_total_bytes')}, external ${m('nodejs_external_memory_bytes')}`
  );
}

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  await eventually(what, check, timeoutMs, 50);
}

/** Waits until the status writer has nothing queued or in flight for 2 s in a row. */
async function waitStatusIdle(c: ControllerProcess, timeoutMs: number): Promise<void> {
  let idleSince = 0;
  await waitFor('route status writes settle', timeoutMs, async () => {
    const text = (await admin(c, '/metrics')).text;
    const busy = metric(text, 'sluice_status_queue_depth') + metric(text, 'sluice_status_in_flight');
    if (busy > 0 || Number.isNaN(busy)) idleSince = 0;
    else idleSince ||= Date.now();
    return idleSince > 0 && Date.now() - idleSince >= 2000;
  });
}

// ---------------------------------------------------------------- run

async function identity(issuer: Awaited<ReturnType<typeof loadCaSecret>>, namespace: string) {
  const keys = await generateKeyPair();
  const spiffeId = workloadSpiffeId({ trustDomain: TD, namespace, serviceAccount: 'app' });
  const leaf = await issueWorkloadCert({ ca: issuer.ca, spiffeId, publicKey: keys.publicKey });
  return {
    certPem: leaf + issuer.chainPem,
    keyPem: await privateKeyToPem(keys.privateKey),
    bundlePem: issuer.trustBundlePem,
  } satisfies IdentityPem;
}

let controller: ControllerProcess | undefined;
let pool: SubscriberPool | undefined;
let createdNamespaces = false;
let cleaning: Promise<void> | undefined;

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    pool?.kill();
    if (controller && controller.child.exitCode === null && controller.child.signalCode === null) {
      controller.child.kill('SIGTERM');
      const timer = setTimeout(() => controller?.child.kill('SIGKILL'), 10_000);
      await controller.exited;
      clearTimeout(timer);
    }
    api.close();
    if (snapshotDir) rmSync(snapshotDir, { recursive: true, force: true });
    if (createdNamespaces) {
      const seconds = await deleteBenchNamespaces();
      console.log(`cleanup: bench namespaces deleted in ${seconds.toFixed(1)} s`);
    }
  })();
  return cleaning;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  });
}

async function run(): Promise<void> {
  await requireCluster();
  await ensureGatewayApiCrds();
  const rows: [string, string][] = [];
  const row = (what: string, value: string): void => {
    rows.push([what, value]);
    console.log(`  ${what}: ${value}`);
  };
  console.log(
    `controller push: ${SERVICES} Services (no selectors) + ${SERVICES} EndpointSlices + ${SERVICES + 1} ` +
      `HTTPRoutes in ${NAMESPACES} namespaces; ${CLIENTS} subscribers in ${PROCS} process(es)`,
  );

  // Leftovers of an interrupted run would make the counts wrong.
  createdNamespaces = true;
  await deleteBenchNamespaces();
  const objects = benchObjects();
  const tNs = await applyAll(objects.namespaces);
  const tSvc = await applyAll(objects.services);
  const tSlices = await applyAll(objects.slices);
  const tRoutes = await applyAll(objects.routes);
  row(
    'create (server-side apply, 250/request)',
    `namespaces ${tNs.toFixed(1)} s, Services ${tSvc.toFixed(1)} s, EndpointSlices ${tSlices.toFixed(1)} s, ` +
      `HTTPRoutes ${tRoutes.toFixed(1)} s, total ${(tNs + tSvc + tSlices + tRoutes).toFixed(1)} s`,
  );

  const started = performance.now();
  controller = startController(await freePort(), await freePort());
  const c = controller;
  const exitedEarly = c.exited.then(() => {
    throw new Error(`controller exited (code ${c.child.exitCode ?? c.child.signalCode})`);
  });
  exitedEarly.catch(() => undefined); // also exits on cleanup, when nobody waits any more
  await Promise.race([
    exitedEarly,
    waitFor('controller ready', 180_000, async () => (await admin(c, '/ready')).status === 200),
  ]);
  const readyMs = performance.now() - started;
  const synced = c.logged.get('informers synced');
  row(
    'time to first sync',
    `ready ${ms(readyMs)} after spawn (informers listed in ${String(synced?.ms)} ms: ` +
      `${JSON.stringify(synced?.objects)})`,
  );
  row('controller memory when ready', await memoryText(c));
  await Promise.race([exitedEarly, waitStatusIdle(c, 600_000)]);
  const statusMetrics = (await admin(c, '/metrics')).text;
  row(
    'initial route status (leader)',
    `done ${((performance.now() - started) / 1000).toFixed(1)} s after spawn; ` +
      `${metric(statusMetrics, 'sluice_status_writes_total{outcome="written"}')} written, ` +
      `${metric(statusMetrics, 'sluice_status_conflicts_total')} conflicts`,
  );
  const idle = procSample(c.child.pid!);
  row('controller idle after sync', `${await memoryText(c)}, CPU so far ${idle.cpuSeconds.toFixed(1)} s`);

  const secret = JSON.parse(
    (await kubectl(['get', 'secret', '-n', SYSTEM_NS, CA_SECRET_NAME, '-o', 'json'])).stdout,
  ) as unknown;
  const issuer = await loadCaSecret(secret, { trustDomain: TD });
  const perNamespace: IdentityPem[] = [];
  for (let n = 0; n < NAMESPACES; n++) perNamespace.push(await identity(issuer, ns(n)));

  const connectStart = performance.now();
  const cpuBeforeConnect = procSample(c.child.pid!).cpuSeconds;
  pool = startSubscribers({
    port: c.configPort,
    controllerSpiffeId: workloadSpiffeId({
      trustDomain: TD,
      namespace: SYSTEM_NS,
      serviceAccount: CONTROLLER_SERVICE_ACCOUNT,
    }),
    marker: MARKER,
    clients: Array.from({ length: CLIENTS }, (_, i) => perNamespace[i % NAMESPACES]!),
    procs: PROCS,
  });
  const subscribers = pool;
  const connected = await subscribers.collect<Extract<FromSubscribers, { type: 'connected' }>>(
    'connected',
    subscribers.children.length,
    600_000,
  );
  const ok = connected.reduce((n, x) => n + x.clients, 0);
  const failed = connected.reduce((n, x) => n + x.failed, 0);
  const afterConnect = procSample(c.child.pid!);
  row(
    'subscribers connected',
    `${ok} (${failed} failed) in ${ms(performance.now() - connectStart)}, snapshot ` +
      `${(Math.max(...connected.map((x) => x.snapshotBytes)) / 2 ** 20).toFixed(1)} MiB each; controller ` +
      `CPU ${(afterConnect.cpuSeconds - cpuBeforeConnect).toFixed(1)} s`,
  );
  await sleep(3000);
  const withStreams = procSample(c.child.pid!);
  row(`controller with ${ok} streams`, await memoryText(c));
  const smaps = readFileSync(`/proc/${c.child.pid!}/smaps_rollup`, 'utf8');
  const smap = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(smaps)?.[1]);
  row(
    `controller RSS by kind (smaps)`,
    `anonymous (heaps, buffers) ${mib(smap('Anonymous'))}, file-backed ${mib(smap('Rss') - smap('Anonymous'))}`,
  );
  const heap = HEAP_SNAPSHOT ? await heapBreakdown(c, 25) : [];

  let generation = generationOf(await apiRequest('GET', markerPath));
  const latencies: number[] = [];
  const slowest: number[] = [];
  const cpuBeforeRounds = procSample(c.child.pid!).cpuSeconds;
  for (let r = 1; r <= ROUNDS; r++) {
    const expected = generation + 1;
    const applied = subscribers.collect<Extract<FromSubscribers, { type: 'applied' }>>(
      'applied',
      subscribers.children.length,
      60_000,
      (m) => m.generation === expected,
    );
    const t0 = process.hrtime.bigint();
    const patched = await apiRequest('PATCH', markerPath, {
      spec: { rules: [canaryRule([ns(0), 'svc-0'], `/marker/${r}`)] },
    });
    generation = generationOf(patched);
    if (generation !== expected) throw new Error(`marker generation ${generation}, expected ${expected}`);
    const lat = (await applied).flatMap((x) => x.appliedAt.map((t) => Number(BigInt(t) - t0) / 1e6));
    latencies.push(...lat);
    slowest.push(Math.max(...lat));
    await sleep(1000); // the controller's status write for the change, and quiet before the next
  }
  const afterRounds = procSample(c.child.pid!);
  latencies.sort((a, b) => a - b);
  slowest.sort((a, b) => a - b);
  row(
    `route PATCH → applied in every subscriber (${ROUNDS} changes, ${latencies.length} applications)`,
    `p50 ${ms(percentile(latencies, 50))}, p99 ${ms(percentile(latencies, 99))}, max ` +
      `${ms(latencies.at(-1)!)}; slowest subscriber per change p50 ${ms(percentile(slowest, 50))}, p99 ` +
      `${ms(percentile(slowest, 99))}  (target p99 ≤ 500 ms)`,
  );
  const pushMetrics = (await admin(c, '/metrics')).text;
  row(
    'controller CPU per change',
    `${(((afterRounds.cpuSeconds - cpuBeforeRounds) / ROUNDS) * 1000).toFixed(0)} ms (incl. its status ` +
      `write; 10 ms ticks); total since spawn ${afterRounds.cpuSeconds.toFixed(1)} s; ` +
      `${metric(pushMetrics, 'sluice_config_dropped_subscribers_total')} subscribers dropped`,
  );
  row(
    'controller RSS',
    `idle ${mib(idle.rssKb)}, ${ok} streams ${mib(withStreams.rssKb)}, after changes ` +
      `${mib(afterRounds.rssKb)}, peak ${mib(afterRounds.peakRssKb)}  (target ≤ 300 MB = 286 MiB)`,
  );
  const childStats = await subscribers.stop();
  row(
    'subscriber processes',
    `CPU ${childStats.map((s) => `${s.cpuSeconds.toFixed(1)} s`).join(', ')}, RSS ` +
      childStats.map((s) => `${s.rssMb.toFixed(0)} MiB`).join(', '),
  );

  const width = Math.max(...rows.map(([w]) => w.length));
  console.log(`\n${'-'.repeat(width + 60)}`);
  for (const [what, value] of rows) console.log(`${what.padEnd(width)}  ${value}`);
  console.log('-'.repeat(width + 60));
  if (heap.length > 0) console.log(heap.join('\n'));
}

try {
  await run();
} catch (error) {
  console.error(`controller-push failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
