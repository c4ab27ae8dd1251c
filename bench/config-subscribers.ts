/**
 * Simulated sidecars for the config benchmarks (config-fanout.ts, controller-push.ts): child processes,
 * each holding many config streams. A subscriber is the sidecar's ConfigStream (TLS, HTTP/2, NDJSON
 * splitting, frame checks, version chain) without the object map and view rebuild: N parsed copies of the
 * mesh would not fit in one process.
 *
 * A child reports when all its streams have their snapshot, and, per generation of the marker route (an
 * upsert of an object named `marker`), the monotonic clock (process.hrtime, shared by all processes on
 * the host) at which each of its streams applied it.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { parseIdentity, type Identity, type IdentityPem } from '../pki/identity.ts';
import { ConfigStream } from '../sidecar/controller-config-source.ts';

type ToChild =
  | { type: 'start'; port: number; controllerSpiffeId: string; marker: string; clients: IdentityPem[] }
  | { type: 'stop' };
export type FromSubscribers =
  | { type: 'connected'; clients: number; failed: number; snapshotBytes: number }
  | { type: 'applied'; generation: number; appliedAt: string[] }
  | { type: 'stats'; cpuSeconds: number; rssMb: number };

const CHILD_FLAG = '--config-subscribers';

/** What the controller Deployment sets for Node and glibc; the benchmarks run their controller with it. */
const RUNTIME_VARIABLES = /^(NODE_OPTIONS|MALLOC_\w+)$/;

/**
 * The NODE_OPTIONS and MALLOC_* values of the controller container in manifests/controller-deployment.yaml
 * (V8 heap sizes, glibc arenas), so that the benchmarks measure the memory settings production runs with.
 */
export function controllerRuntimeEnv(): Record<string, string> {
  const manifest = fileURLToPath(new URL('../manifests/controller-deployment.yaml', import.meta.url));
  const doc = parse(readFileSync(manifest, 'utf8')) as {
    spec?: {
      template?: { spec?: { containers?: { name?: string; env?: { name: string; value?: string }[] }[] } };
    };
  };
  const container = doc.spec?.template?.spec?.containers?.find((c) => c.name === 'controller');
  const env: Record<string, string> = {};
  for (const v of container?.env ?? []) {
    if (RUNTIME_VARIABLES.test(v.name) && typeof v.value === 'string') env[v.name] = v.value;
  }
  return env;
}

/** The environment without the controller's runtime settings: subscribers stand in for sidecars. */
function sidecarEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !RUNTIME_VARIABLES.test(name)));
}

function runChild(): void {
  const streams: ConfigStream[] = [];
  const send = (m: FromSubscribers): void => void process.send!(m);
  process.on('message', (raw) => {
    const m = raw as ToChild;
    if (m.type === 'stop') {
      for (const s of streams) s.stop();
      const cpu = process.cpuUsage();
      send({
        type: 'stats',
        cpuSeconds: (cpu.user + cpu.system) / 1e6,
        rssMb: process.memoryUsage().rss / 2 ** 20,
      });
      setTimeout(() => process.exit(0), 50);
      return;
    }
    const applied = new Map<number, string[]>();
    let connected = 0;
    let failed = 0;
    let snapshotBytes = 0;
    const total = m.clients.length;
    const reportConnect = (): void => {
      if (connected + failed === total)
        send({ type: 'connected', clients: connected, failed, snapshotBytes });
    };
    // Connect in batches: a thousand simultaneous handshakes only measure the handshake queue.
    const start = (i: number): void => {
      if (i >= total) return;
      const identity: Identity = parseIdentity(m.clients[i]!);
      let first = true;
      const stream: ConfigStream = new ConfigStream(
        {
          address: `127.0.0.1:${m.port}`,
          identity,
          controllerSpiffeId: m.controllerSpiffeId,
          watchdogMs: 120_000,
        },
        {
          onSnapshot: (frame) => {
            if (!first) return;
            first = false;
            connected++;
            snapshotBytes = Math.max(snapshotBytes, JSON.stringify(frame.objects).length);
            reportConnect();
            start(i + batch);
          },
          onDelta: (frame) => {
            const at = process.hrtime.bigint().toString();
            for (const o of frame.upserts) {
              if (o.metadata?.name !== m.marker) continue;
              const g = o.metadata.generation ?? 0;
              const list = applied.get(g) ?? [];
              list.push(at);
              applied.set(g, list);
              if (list.length === connected) send({ type: 'applied', generation: g, appliedAt: list });
            }
          },
          onDisconnect: (reason) => {
            if (first) {
              first = false;
              failed++;
              process.stderr.write(`client ${i}: ${reason}\n`);
              stream.stop();
              reportConnect();
              start(i + batch);
            }
          },
        },
      );
      streams.push(stream);
      stream.start();
    };
    const batch = 25;
    for (let i = 0; i < batch; i++) start(i);
  });
}

export interface SubscriberPool {
  readonly children: readonly ChildProcess[];
  /** Resolves with the next `count` messages of `type` (from any child), or rejects after timeoutMs. */
  collect<T extends FromSubscribers>(
    type: T['type'],
    count: number,
    timeoutMs: number,
    match?: (m: T) => boolean,
  ): Promise<T[]>;
  /** Streams stopped, children's own CPU and RSS reported, children exit. */
  stop(): Promise<Extract<FromSubscribers, { type: 'stats' }>[]>;
  /** Kills the children at once (cleanup after a failure). */
  kill(): void;
}

/** Forks `procs` children sharing `clients` (one identity per stream) and starts connecting. */
export function startSubscribers(params: {
  port: number;
  controllerSpiffeId: string;
  marker: string;
  clients: readonly IdentityPem[];
  procs: number;
}): SubscriberPool {
  const children: ChildProcess[] = [];
  const listeners = new Set<(m: FromSubscribers) => void>();
  const perChild = Math.ceil(params.clients.length / params.procs);
  for (let p = 0; p < params.procs; p++) {
    const clients = params.clients.slice(p * perChild, (p + 1) * perChild);
    if (clients.length === 0) break;
    const child = fork(fileURLToPath(import.meta.url), [CHILD_FLAG], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // Not the controller's V8 flags and allocator settings (fork would pass on both).
      execArgv: [],
      env: sidecarEnv(),
    });
    child.on('message', (m) => {
      for (const l of listeners) l(m as FromSubscribers);
    });
    children.push(child);
    child.send({
      type: 'start',
      port: params.port,
      controllerSpiffeId: params.controllerSpiffeId,
      marker: params.marker,
      clients,
    } satisfies ToChild);
  }
  const collect = <T extends FromSubscribers>(
    type: T['type'],
    count: number,
    timeoutMs: number,
    match?: (m: T) => boolean,
  ) =>
    new Promise<T[]>((resolve, reject) => {
      const got: T[] = [];
      const timer = setTimeout(() => {
        listeners.delete(listener);
        reject(new Error(`timed out waiting for ${count} '${type}' messages (got ${got.length})`));
      }, timeoutMs);
      const listener = (m: FromSubscribers): void => {
        if (m.type !== type || (match && !match(m as T))) return;
        got.push(m as T);
        if (got.length === count) {
          clearTimeout(timer);
          listeners.delete(listener);
          resolve(got);
        }
      };
      listeners.add(listener);
    });
  return {
    children,
    collect,
    stop: async () => {
      const stats = collect<Extract<FromSubscribers, { type: 'stats' }>>('stats', children.length, 10_000);
      for (const c of children) if (c.connected) c.send({ type: 'stop' } satisfies ToChild);
      return stats;
    },
    kill: () => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    },
  };
}

if (process.argv.includes(CHILD_FLAG)) runChild();
