/**
 * What tracing costs a proxy (npm run bench:tracing [-- gateway]; loopback only, no root): the sidecar's
 * outbound forwarding path, or a gateway listener (bench/tracing-proxy.ts), with the tracing code not
 * loaded ("none"), loaded but off, and exporting over OTLP/HTTP protobuf to a local sink at 1 % and 100 %
 * sampling (and 0 %, with BENCH_MODES).
 *
 * Built for a busy machine: one proxy process per mode, all running at once, driven in lockstep by one
 * open-loop load process (bench/paired-load.ts), so every mode sees the same moments of contention. Each
 * round measures every proxy's CPU (user+system, all threads, as the proxy reports it; the main thread's and the export
 * thread's shown apart) per request and its latency; a mode's cost is the
 * median over rounds of its ratio to "none" in the same round, with the spread (25th–75th percentile) of
 * those ratios. The first round warms up (JIT, connections) and is left out. Prints a table; no assertions.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { firstLine, startUpstreamAndSink } from './tracing-helpers.ts';
import { readFileSync } from 'node:fs';
import { percentile } from './stats.ts';
import { processRunUs } from './thread-cpu.ts';

const PROXY = process.argv[2] === 'gateway' ? 'gateway' : 'sidecar';
const RPS = Number(process.env.BENCH_RPS ?? 200); // per mode
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 10);
const MODES = (process.env.BENCH_MODES ?? 'none,off,1%,100%').split(',');
// BENCH_PROF=<mode>[,<mode>...] [BENCH_PROF_DIR]: those modes' proxies run under --cpu-prof (profiles
// written at the end, one file per process and thread), or with the Node flags in BENCH_PROF_FLAGS instead
// (e.g. "--log-deopt --logfile=/tmp/deopt.log": one V8 log per process).
const PROF = (process.env.BENCH_PROF ?? '').split(',');
const PROF_DIR = process.env.BENCH_PROF_DIR ?? '/tmp/sluice-bench-profiles';
// Each mode's profiles go to a directory of their own under BENCH_PROF_DIR ("1%/local" → "1%-local").
const profFlags = (mode: string): string[] =>
  process.env.BENCH_PROF_FLAGS?.split(' ') ?? [
    '--cpu-prof',
    `--cpu-prof-dir=${PROF_DIR}/${mode.replaceAll('/', '-')}`,
  ];
// BENCH_BASELINE=<dir>: a checkout of another revision (its node_modules may be a link to this one's); a mode
// written "base:<mode>" runs that revision's bench/tracing-proxy.ts, so a before/after pair shares one run.
const BASELINE = process.env.BENCH_BASELINE;
const proxyScript = (mode: string): [string, string] => {
  if (!mode.startsWith('base:')) return ['bench/tracing-proxy.ts', mode];
  if (!BASELINE) throw new Error(`mode ${mode} needs BENCH_BASELINE`);
  return [`${BASELINE}/bench/tracing-proxy.ts`, mode.slice('base:'.length)];
};
const node = process.execPath;

const { helpers, upstreamPort, collector } = await startUpstreamAndSink();

// BENCH_FRESH=1: new proxy processes every round (each warmed up for a round's length), so that what one
// process happens to be (its JIT's choices, where its heap landed) is spread over the rounds, not carried by
// one mode for the whole run: two processes of the same build differ by a few per cent.
const FRESH = process.env.BENCH_FRESH === '1';

const startProxies = () =>
  Promise.all(
    MODES.map(async (mode) => {
      const [script, proxyMode] = proxyScript(mode);
      // "…/sibling" modes: the export process is started here and its socket handed to the proxy as fd 3,
      // so that the proxy's isolate holds no child process or stream object for it; its CPU is the proxy's.
      const sibling = mode.endsWith('/sibling')
        ? spawn(node, ['bench/export-process-child.ts', collector], {
            stdio: ['pipe', 'ignore', 'inherit'],
          })
        : undefined;
      const child = spawn(
        node,
        [
          ...(PROF.includes(mode) ? profFlags(mode) : []),
          script,
          JSON.stringify({ proxy: PROXY, mode: proxyMode, upstreamPort, collector }),
        ],
        { stdio: ['pipe', 'pipe', 'inherit', ...(sibling ? [sibling.stdin] : [])] },
      );
      const port = Number(await firstLine(child));
      const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
      /** The proxy's CPU time so far, µs (it answers each line on its stdin). */
      const cpuUs = async (): Promise<number[]> => {
        child.stdin!.write('\n');
        for (;;) {
          const line = String((await lines.next()).value);
          if (!/^\d/.test(line)) continue;
          const [all = 0, main = 0, exporter = 0] = line.split(' ').map(Number);
          const siblingUs = processRunUs(sibling?.pid);
          return [all + siblingUs, main, exporter + siblingUs];
        }
      };
      return { mode, child, sibling, port, cpuUs };
    }),
  );
type Proxy = Awaited<ReturnType<typeof startProxies>>[number];
const stopProxies = (ps: readonly Proxy[]): void => {
  for (const p of ps) {
    p.child.kill(PROF.includes(p.mode) ? 'SIGINT' : 'SIGTERM');
    p.sibling?.kill();
  }
};

/** Drives every proxy in lockstep for `durationMs`; the load process's result per proxy. */
async function drive(ps: readonly Proxy[], durationMs: number) {
  const load = spawn(
    node,
    [
      'bench/paired-load.ts',
      JSON.stringify({
        urls: ps.map((p) => `http://127.0.0.1:${p.port}/`),
        rps: RPS,
        durationMs,
        connections: 8,
      }),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return JSON.parse(await firstLine(load)) as {
    sent: number;
    errors: number;
    p50Ms: number;
    p99Ms: number;
  }[];
}

let proxies = await startProxies();

interface Sample {
  cpuUs: number;
  /** The main thread's share, and the export thread's (the rest: GC and compiler threads). */
  mainUs: number;
  exportUs: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}
// Keyed by position: a mode listed twice (an A/A check of the method, e.g. BENCH_MODES=none,none) is two rows.
const samples = new Map<string, Sample[]>(
  MODES.map((m, i) => [`${m}${MODES.indexOf(m) === i ? '' : `#${i}`}`, []]),
);
for (let round = 0; round <= ROUNDS; round++) {
  if (FRESH && round > 1) {
    stopProxies(proxies);
    proxies = await startProxies();
    await drive(proxies, SECONDS * 1000); // as long as a round: past the first exports, which run cold
  }
  const before = await Promise.all(proxies.map((p) => p.cpuUs()));
  // Fresh rounds warm up for a round's length, past the first export; round 0 does the same for round 1.
  const results = await drive(proxies, round === 0 && !FRESH ? 3000 : SECONDS * 1000);
  if (round === 0) continue;
  const after = await Promise.all(proxies.map((p) => p.cpuUs()));
  const line: string[] = [];
  proxies.forEach((p, i) => {
    const r = results[i]!;
    const s = {
      cpuUs: (after[i]![0]! - before[i]![0]!) / r.sent,
      mainUs: (after[i]![1]! - before[i]![1]!) / r.sent,
      exportUs: ((after[i]![2] ?? 0) - (before[i]![2] ?? 0)) / r.sent, // a base: proxy may not report it
      p50Ms: r.p50Ms,
      p99Ms: r.p99Ms,
      errors: r.errors,
    };
    [...samples.values()][i]!.push(s);
    line.push(
      `${p.mode} ${s.cpuUs.toFixed(1)}µs (main ${s.mainUs.toFixed(1)}) ${s.p50Ms.toFixed(2)}/${s.p99Ms.toFixed(1)}ms`,
    );
  });
  process.stderr.write(`round ${round}: ${line.join(', ')}\n`);
}
stopProxies(proxies);
helpers.kill();

const sorted = (xs: number[]): number[] => [...xs].sort((a, b) => a - b);
const median = (xs: number[]): number => percentile(sorted(xs), 50);
const base = samples.get('none');
const pct = (x: number): string => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;
console.log(
  `tracing cost, ${PROXY}: ${MODES.length} proxies at ${RPS} rps each in lockstep, ${ROUNDS} rounds of ${SECONDS} s${FRESH ? ' (new processes each round)' : ''}` +
    ` (node ${process.version}, load average ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]})`,
);
console.log(
  'mode       CPU µs/req   vs none (IQR)              main thread vs none   export thread   p50 ms  Δp50 ms   p99 ms  Δp99 ms  errors',
);
for (const [mode, rs] of samples) {
  const ratios = base ? sorted(rs.map((r, i) => r.cpuUs / base[i]!.cpuUs - 1)) : [];
  const mainRatios = base ? sorted(rs.map((r, i) => r.mainUs / base[i]!.mainUs - 1)) : [];
  const d50 = base ? rs.map((r, i) => r.p50Ms - base[i]!.p50Ms) : [NaN];
  const d99 = base ? rs.map((r, i) => r.p99Ms - base[i]!.p99Ms) : [NaN];
  console.log(
    [
      mode.padEnd(9),
      median(rs.map((r) => r.cpuUs))
        .toFixed(1)
        .padStart(11),
      `${pct(median(ratios))} (${pct(percentile(ratios, 25))} … ${pct(percentile(ratios, 75))})`.padEnd(26),
      `${median(rs.map((r) => r.mainUs)).toFixed(1)} ${pct(median(mainRatios))}`.padEnd(20),
      `${median(rs.map((r) => r.exportUs)).toFixed(2)} µs/req`.padStart(14),
      median(rs.map((r) => r.p50Ms))
        .toFixed(2)
        .padStart(7),
      median(d50).toFixed(2).padStart(8),
      median(rs.map((r) => r.p99Ms))
        .toFixed(1)
        .padStart(8),
      median(d99).toFixed(1).padStart(8),
      String(rs.reduce((n, r) => n + r.errors, 0)).padStart(7),
    ].join(' '),
  );
}
