/**
 * What a sampled request costs the proxy's main thread, measured inside one process (ADR 0019, issue 15):
 * the main thread's CPU from each request's arrival to its response's end, sampled requests against
 * unsampled ones of the same proxy in the same seconds, so the machine's load and the spread between
 * processes cancel out (bench:tracing compares processes, whose spread is as large as the targets). It
 * misses what a sampled request leaves for later (a batch's encode and post, once per batch delay): the
 * main thread's total per request is printed next to it for that.
 *
 *   npm run bench:tracing-sampled [-- gateway]   (BENCH_MODES, default "0%,1%"; BENCH_RPS, default
 *   200; BENCH_SECONDS, default 40; BENCH_WARM_SECONDS, default 12)
 *
 * Requests overlap a little at this rate, so each one's figure holds some of its neighbours' work: the
 * difference of the means is the sampled request's own extra cost, the means alone are not.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { firstLine, startUpstreamAndSink } from './tracing-helpers.ts';

const PROXY = process.argv[2] === 'gateway' ? 'gateway' : 'sidecar';
const MODES = (process.env.BENCH_MODES ?? '0%,1%').split(',');
const RPS = Number(process.env.BENCH_RPS ?? 200);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 40);
const WARM = Number(process.env.BENCH_WARM_SECONDS ?? 12);
const node = process.execPath;

interface Split {
  mainUs: number;
  /** [requests, µs, µs²] */
  sampled: [number, number, number];
  unsampled: [number, number, number];
}

const { helpers, upstreamPort, collector } = await startUpstreamAndSink();
const proxies = await Promise.all(
  MODES.map(async (mode) => {
    const child = spawn(
      node,
      [
        'bench/tracing-proxy.ts',
        JSON.stringify({ proxy: PROXY, mode, upstreamPort, collector, split: true }),
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    const port = Number(await firstLine(child));
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const split = async (): Promise<Split> => {
      child.stdin.write('split\n');
      for (;;) {
        const line = String((await lines.next()).value);
        if (line.startsWith('{')) return JSON.parse(line) as Split;
      }
    };
    return { mode, child, port, split };
  }),
);

async function drive(durationMs: number): Promise<void> {
  const load = spawn(
    node,
    [
      'bench/paired-load.ts',
      JSON.stringify({
        urls: proxies.map((p) => `http://127.0.0.1:${p.port}/`),
        rps: RPS,
        durationMs,
        connections: 8,
      }),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await firstLine(load);
}

const loadAverage = () => readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
const startLoad = loadAverage();
await drive(WARM * 1000); // past the first export and the export thread's start
await Promise.all(proxies.map((p) => p.split()));
await drive(SECONDS * 1000);
const splits = await Promise.all(proxies.map((p) => p.split()));

/** Mean and its standard error, µs. */
const mean = ([n, sum, squares]: readonly number[]) => {
  const m = sum! / n!;
  return { m, se: Math.sqrt(Math.max(0, squares! / n! - m * m) / n!) };
};
console.log(
  `tracing sampled-request CPU, ${PROXY}: ${RPS} rps per proxy, ${SECONDS} s after ${WARM} s` +
    ` (node ${process.version}, load average ${startLoad} → ${loadAverage()})`,
);
proxies.forEach((p, i) => {
  const s = splits[i]!;
  const requests = s.sampled[0] + s.unsampled[0];
  const u = mean(s.unsampled);
  let line = `${p.mode}: main thread ${(s.mainUs / requests).toFixed(1)} µs/request; unsampled ${u.m.toFixed(1)} ± ${u.se.toFixed(1)} µs (${s.unsampled[0]})`;
  if (s.sampled[0] > 0) {
    const x = mean(s.sampled);
    line += `; sampled ${x.m.toFixed(1)} ± ${x.se.toFixed(1)} µs (${s.sampled[0]}), +${(x.m - u.m).toFixed(1)} µs each`;
  }
  console.log(line);
});
for (const p of proxies) p.child.kill();
helpers.kill();
