/**
 * What a warm Sluice pair (netns, mTLS between the sidecars, idle release off) does during an idle gap, traced
 * (ADR 0016): `node bench/idle-reopt-mesh.ts [IDLE_S] [WARM] [V8 FLAGS...]` as root, under the netns lock.
 * WARM (default 3) × 10 s at 1,000 rps, IDLE_S (default 45) idle, 2 × 10 s at 1,000 rps. Prints per phase and
 * sidecar the threads' CPU, GCs, optimizations and deopts (with their functions and reasons), the deopts and
 * GCs during the gap with their time, and the established connections in both pods during it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { MeshFixture, type MeshPod } from '../test/support/mesh-fixture.ts';
import { nodeBin } from '../test/support/netns.ts';
import { PROXY_NODE_OPTIONS } from '../mesh-model/endpoints.ts';
import { startSidecarPairs } from './sidecar-pair.ts';
import type { LoadResult } from './load-generator.ts';

const IDLE_S = Number(process.argv[2] ?? 45);
const WARM = Number(process.argv[3] ?? 3);
const FLAGS = process.argv.slice(4).join(' ') || '--trace-gc --trace-deopt --trace-opt';
const PRELOAD = fileURLToPath(new URL('v8-trace-flags.ts', import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const mesh = await MeshFixture.create();
try {
  const env = {
    NODE_OPTIONS: `${PROXY_NODE_OPTIONS} --import ${PRELOAD}`,
    BENCH_V8_FLAGS: FLAGS,
    SLUICE_IDLE_MEMORY_RELEASE: 'off',
  };
  const pod = (name: string): Promise<MeshPod> =>
    mesh.addPod({ name, namespace: 'bench', serviceAccount: name, meshed: true, env });
  const client = await pod('c0');
  const server = await pod('s0');
  await startSidecarPairs(mesh, [{ client, server, service: 's0', vip: '10.96.0.20' }]);
  let idleStart = 0;
  const counts = new Map<string, Map<string, number>>();
  for (const p of [client, server]) {
    const c = new Map<string, number>();
    counts.set(p.name, c);
    createInterface({ input: p.sidecar!.stdout! }).on('line', (line) => {
      if (line.startsWith('{')) return;
      const gc = /ms: (Scavenge|Mark-Compact|Minor Mark-Sweep)[^;]*\) (.*?)[;]/.exec(line);
      let key: string | undefined;
      if (gc) key = `gc ${gc[1]} (${gc[2]})`;
      else if (line.startsWith('[completed compiling')) key = `optimize ${/target (\w+)/.exec(line)?.[1]}`;
      else if (line.startsWith('[bailout'))
        key = `deopt ${/<JSFunction (\S+)/.exec(line)?.[1]} (${/reason: ([^)]*)/.exec(line)?.[1]})`;
      else if (line.startsWith('[marking dependent code'))
        key = `dependent ${/<SharedFunctionInfo (\S*)>/.exec(line)?.[1]} (${/reason: (.*)\]$/.exec(line)?.[1]})`;
      if (key && idleStart && !key.startsWith('optimize'))
        console.log(`  +${((Date.now() - idleStart) / 1000).toFixed(1)} s ${p.name} ${key}`);
      if (key) c.set(key, (c.get(key) ?? 0) + 1);
    });
  }
  const threads = (pid: number): Map<string, number> => {
    const m = new Map<string, number>();
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      const comm = readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim();
      const ns = Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
      m.set(comm, (m.get(comm) ?? 0) + ns / 1e6);
    }
    return m;
  };
  const last = new Map([client, server].map((p) => [p.name, threads(p.sidecar!.pid!)]));
  const mark = (phase: string, requests = 0): void => {
    console.log(
      `== ${phase} (load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')})`,
    );
    for (const p of [client, server]) {
      const now = threads(p.sidecar!.pid!);
      const cpu = [...now]
        .map(([k, v]) => `${k} ${Math.round(v - (last.get(p.name)!.get(k) ?? 0))}`)
        .join(', ');
      last.set(p.name, now);
      console.log(`  ${p.name} cpu ms: ${cpu}${requests ? ` (${requests} requests)` : ''}`);
      const c = counts.get(p.name)!;
      const top = [...c].sort((a, b) => b[1] - a[1]);
      const agg = new Map<string, number>();
      for (const [k, n] of top) {
        const kind = k.startsWith('dependent')
          ? `dependent (${k.slice(k.indexOf('(') + 1)}`
          : k.startsWith('deopt')
            ? 'deopt'
            : k;
        agg.set(kind, (agg.get(kind) ?? 0) + n);
      }
      console.log(`    ${JSON.stringify(Object.fromEntries(agg))}`);
      for (const [k, n] of top)
        if (!k.startsWith('optimize') && !k.startsWith('gc')) console.log(`    ${n} ${k}`);
      c.clear();
    }
  };
  const load = async (ms: number): Promise<number> => {
    const spec = {
      url: 'http://10.96.0.20/?size=1024',
      protocol: 'h1',
      connections: 16,
      mode: 'rate',
      rps: 1000,
      durationMs: ms,
      warmupMs: 0,
    };
    const out = await mesh.harness.runIn(client, nodeBin, ['bench/load-generator.ts', JSON.stringify(spec)], {
      timeoutMs: 60_000,
    });
    return (JSON.parse(out) as LoadResult).sent;
  };
  mark('start');
  for (let i = 1; i <= WARM; i++) mark(`warm ${i}`, await load(10_000));
  const idleFrom = Date.now();
  idleStart = idleFrom;
  for (const at of [1, 8, 20, 35, IDLE_S - 1]) {
    await sleep(idleFrom + at * 1000 - Date.now());
    const ss = async (p: MeshPod): Promise<string> =>
      (await mesh.harness.runIn(p, 'ss', ['-Htn', 'state', 'established']))
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split(/\s+/).slice(2, 4).join('>'))
        .sort()
        .join(' ');
    console.log(`  idle +${at} s established: c0 ${await ss(client)}\n    s0 ${await ss(server)}`);
  }
  await sleep(idleFrom + IDLE_S * 1000 - Date.now());
  mark(`idle ${IDLE_S} s`);
  idleStart = 0;
  mark('load2', await load(10_000));
  mark('load3', await load(10_000));
} finally {
  await mesh.destroy();
}
