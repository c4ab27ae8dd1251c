/**
 * What the idle memory release costs the load after it (ADR 0016), one sidecar pair per flavour in one run
 * (npm run bench:idle-release [-- --rounds N] [-- --flavours 'off,last-resort,gc,trim,last-resort
 * --no-allocation-site-pretenuring']; needs root, one netns user at a time: flock /tmp/sluice-netns.lock).
 * A flavour is a SLUICE_IDLE_MEMORY_RELEASE value (off; last-resort: V8's last-resort full GC + malloc_trim;
 * gc: a regular full GC + malloc_trim; trim: malloc_trim only), optionally followed by V8 flags for that pair
 * (set at start-up by bench/v8-trace-flags.ts: only those V8 reads at run time take effect).
 * Each round, in a rotated order, every pair resumes after an idle gap long enough to release (the others'
 * turns): 3 × 10 s at 1,000 rps (HTTP/1.1, 16 connections, 1 KiB replies; each segment measured apart), then
 * 3 s at max so that the next gap has memory to release. Per segment and per pair (both sidecars): CPU per
 * 1,000 requests by thread (main, V8's workers), scavenges and mark-compacts (perf_hooks, bench/gc-probe.ts),
 * TurboFan/Maglev compilations and deopts (--trace-opt --trace-deopt), V8's young generation (new_space
 * committed); per gap: the release logged, RSS and the young generation after it. Round 0 follows the
 * start-up release and the code's first warm-up: printed, not counted in the medians. "off" is the control:
 * what the same idle gap costs without a release (V8's memory reducer may run full GCs of its own in it).
 * The preloads are TypeScript, so every sidecar also holds Node's type stripper (about +21 MB RSS): compare the
 * pairs' RSS with each other, not with a sidecar's.
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { MeshFixture, type MeshPod } from '../test/support/mesh-fixture.ts';
import { netnsUnavailableReason, nodeBin } from '../test/support/netns.ts';
import { waitFor } from '../test/support/wait-for.ts';
import { ensureHostPackages } from '../cluster/host-packages.ts';
import { PROXY_NODE_OPTIONS } from '../mesh-model/endpoints.ts';
import { releasesSince, startSidecarPairs, type SidecarPair } from './sidecar-pair.ts';
import { procStats, threadCpuMs } from './proc-stats.ts';
import type { LoadResult } from './load-generator.ts';

const args = process.argv.slice(2);
const arg = (name: string): string | undefined =>
  args.includes(name) ? args[args.indexOf(name) + 1] : undefined;
const ROUNDS = Number(arg('--rounds') ?? 2) || 2;
const FLAVOURS = (arg('--flavours') ?? 'off,last-resort,gc,trim').split(',');
const GAP_WATCH_S = Number(arg('--gap-watch') ?? 0);
const SEGMENTS = 3;
const SEGMENT_MS = 10_000;
const preload = (file: string): string => `--import ${fileURLToPath(new URL(file, import.meta.url))}`;
const loadAverage = (): string => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

type Pair = SidecarPair & { flavour: string };
/** Cumulative counters of both sidecars of a pair. */
type Counts = Record<string, number>;
interface Probe {
  gc: Counts;
  spaces: Record<string, number>;
  rssMb: number;
}

/** --trace-opt / --trace-deopt lines counted per pod. */
const traces = new Map<MeshPod, Counts>();
function countTraces(pod: MeshPod): void {
  const c: Counts = {};
  traces.set(pod, c);
  createInterface({ input: pod.sidecar!.stdout! }).on('line', (line) => {
    const key = line.startsWith('[completed compiling')
      ? /target (\w+)/.exec(line)?.[1] === 'TURBOFAN_JS'
        ? 'turbofan'
        : 'maglev'
      : line.startsWith('[bailout')
        ? 'deopts'
        : line.startsWith('[marking dependent code')
          ? 'dependent'
          : undefined;
    if (key) c[key] = (c[key] ?? 0) + 1;
    // Why code was thrown away: a full GC's "embedded weak objects cleared", pretenuring changes, the rest.
    const why =
      key === 'dependent'
        ? /reason: (.*)\]$/.exec(line)?.[1]
        : key === 'deopts'
          ? /reason: ([^)]*)\)/.exec(line)?.[1]
          : undefined;
    if (why) c[`why ${why}`] = (c[`why ${why}`] ?? 0) + 1;
  });
}

async function probe(pod: MeshPod, attempts = 3): Promise<Probe> {
  const seen = pod.sidecarLog.length;
  process.kill(pod.sidecar!.pid!, 'SIGUSR2');
  return waitFor(
    `a gc probe of ${pod.name}`,
    () => pod.sidecarLog.slice(seen).find((r) => r.msg === 'gc probe') as unknown as Probe | undefined,
    { timeoutMs: 3000, intervalMs: 20 },
  ).catch((err: unknown) => {
    if (attempts > 1) return probe(pod, attempts - 1);
    throw err;
  });
}

/** Everything counted so far in a pair's sidecars, summed. */
async function snapshot(p: Pair): Promise<{ counts: Counts; young: number[]; heap: number[] }> {
  const counts: Counts = {};
  const add = (k: string, v: number): void => void (counts[k] = (counts[k] ?? 0) + v);
  const young: number[] = [];
  const heap: number[] = [];
  for (const pod of [p.client, p.server]) {
    const pr = await probe(pod);
    heap.push(Math.round(Object.values(pr.spaces).reduce((a, b) => a + b, 0)));
    for (const [k, v] of Object.entries(pr.gc)) add(k, v);
    young.push(pr.spaces.new_space ?? NaN);
    for (const [k, v] of Object.entries(traces.get(pod)!)) add(k, v);
    for (const [name, ms] of threadCpuMs([pod.sidecar!.pid!]))
      add(name === 'main' ? 'main' : name === 'VWorker' ? 'v8' : 'otherThreads', ms); // V8Worker, digits dropped
  }
  return { counts, young, heap };
}

interface Segment {
  /** Per 1,000 requests: CPU ms (all, main thread, V8 workers), scavenges, mark-compacts; counts in it. */
  cpu: number;
  main: number;
  v8: number;
  scavenges: number;
  markCompacts: number;
  turbofan: number;
  maglev: number;
  deopts: number;
  /** The deopts' reasons, most frequent first. */
  why: string;
  young: number[];
}

/** "n reason, ..." of the `why` counters that grew from `from` to `to`. */
const reasons = (from: Counts, to: Counts): string =>
  Object.keys(to)
    .filter((k) => k.startsWith('why ') && to[k]! > (from[k] ?? 0))
    .map((k) => [to[k]! - (from[k] ?? 0), k.slice(4)] as const)
    .sort((a, b) => b[0] - a[0])
    .map(([n, k]) => `${n} ${k}`)
    .join(', ');
interface Turn {
  released: string[];
  /** RSS (c/s), young generation and V8's whole heap (committed) at the turn's start, after the gap. */
  rss: number[];
  young: number[];
  heap: number[];
  /** V8's heap (committed, c/s) and RSS at the end of the turn, before the gap. */
  heapBefore: number[];
  rssBefore: number[];
  /** What the gap itself did (the release): mark-compacts, deopts and code marked for deopt, and why. */
  gap: { markCompacts: number; deopts: number; why: string };
  segments: Segment[];
  maxRps: number;
}

/**
 * `--gap-watch S` instead of the rounds: when the collections of an idle gap come, with and without a release.
 * Each pair in turn 20 s at 1,000 rps and 3 s at max, then all of them watched every 2 s for S s from their own
 * load's end: mark-compacts so far, the young generation, V8's heap, RSS, the releases logged.
 */
async function watchGaps(
  pairs: Pair[],
  load: (p: Pair, spec: Record<string, unknown>) => Promise<LoadResult>,
): Promise<void> {
  const ended = new Map<Pair, { at: number; counts: Counts }>();
  for (const p of pairs) {
    await load(p, { mode: 'rate', rps: 1000, durationMs: 20_000, warmupMs: 0 });
    await load(p, { mode: 'max', durationMs: 3000 });
    ended.set(p, { at: Date.now(), counts: (await snapshot(p)).counts });
  }
  const seen = new Map<Pair, string>();
  for (;;) {
    const now = Date.now();
    const open = pairs.filter((p) => now - ended.get(p)!.at < GAP_WATCH_S * 1000);
    if (!open.length) return;
    for (const p of open) {
      const e = ended.get(p)!;
      const s = await snapshot(p);
      const state = `mark-compacts ${(s.counts.markCompact ?? 0) - (e.counts.markCompact ?? 0)}, deopts ${(s.counts.dependent ?? 0) - (e.counts.dependent ?? 0)}, young ${s.young.join('/')} MB, heap ${s.heap.join('/')} MB, releases ${[p.client, p.server].map((pod) => releasesSince(pod, e.at).length).join('/')}`;
      if (seen.get(p) !== state)
        console.log(
          `${p.flavour} +${((Date.now() - e.at) / 1000).toFixed(0)} s idle: ${state}, RSS ${[p.client, p.server].map((pod) => Math.round(procStats([pod.sidecar!.pid!]).rssMb)).join('/')} MB`,
        );
      seen.set(p, state);
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

async function main(): Promise<void> {
  const reason = netnsUnavailableReason();
  if (reason) throw new Error(reason);
  await ensureHostPackages('tests');
  const mesh = await MeshFixture.create();
  try {
    const pairs: Pair[] = [];
    for (const [i, flavour] of FLAVOURS.entries()) {
      const [release, ...v8] = flavour.split(' ');
      const env = {
        NODE_OPTIONS: [PROXY_NODE_OPTIONS, preload('v8-trace-flags.ts'), preload('gc-probe.ts')].join(' '),
        BENCH_V8_FLAGS: ['--trace-opt', '--trace-deopt', ...v8].join(' '),
        SLUICE_IDLE_MEMORY_RELEASE: release!,
      };
      const pod = (name: string): Promise<MeshPod> =>
        mesh.addPod({ name, namespace: 'bench', serviceAccount: name, meshed: true, env });
      const client = await pod(`c${i}`);
      const server = await pod(`s${i}`);
      pairs.push({ flavour, client, server, service: `s${i}`, vip: `10.96.0.${20 + i}` });
    }
    await startSidecarPairs(mesh, pairs);
    for (const p of pairs) for (const pod of [p.client, p.server]) countTraces(pod);
    const rss = (p: Pair): number[] =>
      [p.client, p.server].map((pod) => Math.round(procStats([pod.sidecar!.pid!]).rssMb));
    const load = async (p: Pair, spec: Record<string, unknown>): Promise<LoadResult> => {
      const full = { url: `http://${p.vip}/?size=1024`, protocol: 'h1', connections: 16, ...spec };
      const out = await mesh.harness.runIn(
        p.client,
        nodeBin,
        ['bench/load-generator.ts', JSON.stringify(full)],
        { timeoutMs: 60_000 },
      );
      return JSON.parse(out) as LoadResult;
    };
    // Round 0 resumes after the start-up release (15 s idle after start), like the others after a load's.
    const started = Date.now();
    await waitFor(
      'the start-up releases',
      () =>
        pairs.every(
          (p) =>
            p.flavour === 'off' ||
            [p.client, p.server].every((pod) => releasesSince(pod, started - 60_000).length > 0),
        ),
      { timeoutMs: 40_000, intervalMs: 500 },
    ).catch(() => console.log('(a start-up release did not come within 40 s)'));
    if (GAP_WATCH_S) return await watchGaps(pairs, load);
    const turns = new Map<string, Turn[]>(FLAVOURS.map((f) => [f, []]));
    const loadEnded = new Map<string, { at: number; counts: Counts; heap: number[]; rss: number[] }>();
    const ending = async (p: Pair, at: number): Promise<void> => {
      const { counts, heap } = await snapshot(p);
      loadEnded.set(p.flavour, { at, counts, heap, rss: rss(p) });
    };
    for (const p of pairs) await ending(p, started - 60_000);
    for (let round = 0; round <= ROUNDS; round++) {
      const order = pairs.map((_, i) => pairs[(i + round) % pairs.length]!);
      console.log(`round ${round}${round === 0 ? ' (after start-up, not counted)' : ''}:`);
      for (const p of order) {
        const ended = loadEnded.get(p.flavour)!;
        const released = [p.client, p.server].map((pod) => releasesSince(pod, ended.at).join(', ') || 'none');
        let last = await snapshot(p);
        const gapOf = (k: string): number => (last.counts[k] ?? 0) - (ended.counts[k] ?? 0);
        const gap = {
          markCompacts: gapOf('markCompact'),
          deopts: gapOf('deopts') + gapOf('dependent'),
          why: reasons(ended.counts, last.counts),
        };
        const turn: Turn = {
          released,
          rss: rss(p),
          young: last.young,
          heap: last.heap,
          heapBefore: ended.heap,
          rssBefore: ended.rss,
          gap,
          segments: [],
          maxRps: 0,
        };
        for (let s = 0; s < SEGMENTS; s++) {
          const r = await load(p, { mode: 'rate', rps: 1000, durationMs: SEGMENT_MS, warmupMs: 0 });
          const now = await snapshot(p);
          const d = (k: string): number => (now.counts[k] ?? 0) - (last.counts[k] ?? 0);
          const per1k = (k: string): number => d(k) / (r.sent / 1000);
          turn.segments.push({
            cpu: per1k('main') + per1k('v8') + per1k('otherThreads'),
            main: per1k('main'),
            v8: per1k('v8'),
            scavenges: per1k('scavenge'),
            markCompacts: per1k('markCompact'),
            turbofan: d('turbofan'),
            maglev: d('maglev'),
            deopts: d('deopts') + d('dependent'),
            why: reasons(last.counts, now.counts),
            young: now.young,
          });
          last = now;
        }
        turn.maxRps = (await load(p, { mode: 'max', durationMs: 3000 })).rps;
        await ending(p, Date.now());
        if (round > 0) turns.get(p.flavour)!.push(turn);
        const seg = turn.segments
          .map(
            (x, i) =>
              `  ${i * 10}-${i * 10 + 10} s: CPU/1k ${x.cpu.toFixed(0)} (main ${x.main.toFixed(0)}, V8 workers ${x.v8.toFixed(0)}), scavenges/1k ${x.scavenges.toFixed(2)}, mark-compacts/1k ${x.markCompacts.toFixed(2)}, TurboFan ${x.turbofan}, Maglev ${x.maglev}, deopts ${x.deopts} (${x.why}), young MB ${x.young.join('/')}`,
          )
          .join('\n  ');
        console.log(
          ` ${p.flavour} (load average ${loadAverage()}): released (c/s) ${released.join(' / ')}; RSS ${turn.rssBefore.join('/')} → ${turn.rss.join('/')} MB over the gap, V8 heap ${turn.heapBefore.join('/')} → ${turn.heap.join('/')}, young after ${turn.young.join('/')} MB, the gap's mark-compacts ${gap.markCompacts}, deopts ${gap.deopts} (${gap.why}); max ${turn.maxRps.toFixed(0)} rps\n  ${seg}`,
        );
      }
    }
    console.log(
      `\nmedians over ${ROUNDS} rounds, both sidecars (HTTP/1.1 at 1,000 rps; load average now ${loadAverage()}):`,
    );
    console.log(
      'flavour | CPU ms/1k 0-10 s | 10-20 | 20-30 | 0-10 main / V8 workers | scavenges/1k 0-10 / 20-30 | mark-compacts/1k 0-10 | TurboFan+Maglev 0-10 | deopts gap + 0-10 | young MB after gap (c/s) | V8 heap MB before → after gap | RSS MB before → after gap',
    );
    for (const f of FLAVOURS) {
      const t = turns.get(f)!;
      const m = (get: (x: Turn) => number, digits = 0): string => median(t.map(get)).toFixed(digits);
      console.log(
        [
          f,
          ...[0, 1, 2].map((i) => m((x) => x.segments[i]!.cpu)),
          `${m((x) => x.segments[0]!.main)} / ${m((x) => x.segments[0]!.v8)}`,
          `${m((x) => x.segments[0]!.scavenges, 2)} / ${m((x) => x.segments[2]!.scavenges, 2)}`,
          m((x) => x.segments[0]!.markCompacts, 2),
          m((x) => x.segments[0]!.turbofan + x.segments[0]!.maglev),
          m((x) => x.gap.deopts + x.segments[0]!.deopts),
          [0, 1].map((i) => m((x) => x.young[i]!, 1)).join('/'),
          `${[0, 1].map((i) => m((x) => x.heapBefore[i]!)).join('/')} → ${[0, 1].map((i) => m((x) => x.heap[i]!)).join('/')}`,
          `${[0, 1].map((i) => m((x) => x.rssBefore[i]!)).join('/')} → ${[0, 1].map((i) => m((x) => x.rss[i]!)).join('/')}`,
        ].join(' | '),
      );
    }
  } finally {
    await mesh.destroy();
  }
}

await main();
