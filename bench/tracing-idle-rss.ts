/**
 * What tracing costs an idle proxy in memory (npm run bench:tracing-rss; loopback only): one proxy per mode
 * (bench/tracing-proxy.ts, modes as for bench:tracing, BENCH_MODES; "base:<mode>" with BENCH_BASELINE runs
 * another revision's), their RSS read from /proc after they settle idle, then again idle after a short
 * burst of requests whose sampled spans made an export (the OTLP export thread, for one, starts then).
 * A proxy's child processes (the export process of "1%/proc") count with it; after the burst also its PSS
 * (shared pages, such as node's binary, split between the processes that map them) and its private memory.
 * Prints a table; no assertions.
 */
import { spawn } from 'node:child_process';
import { firstLine, startUpstreamAndSink } from './tracing-helpers.ts';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

const PROXY = process.argv[2] === 'gateway' ? 'gateway' : 'sidecar';
const MODES = (process.env.BENCH_MODES ?? 'none,off,0%,1%,100%').split(',');
const BASELINE = process.env.BENCH_BASELINE;
const BURST = Number(process.env.BENCH_BURST ?? 1000); // requests per proxy: ~10 sampled at 1 %
const node = process.execPath;

/** A process and its children (one level): their ids. */
const withChildren = (pid: number): number[] => [
  pid,
  ...readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number),
];
/** A field of /proc/<pid>/smaps_rollup (kB) summed over a process and its children, in MB. */
const memMb = (pid: number, ...fields: string[]): number =>
  withChildren(pid).reduce((sum, p) => {
    const rollup = readFileSync(`/proc/${p}/smaps_rollup`, 'utf8');
    return sum + fields.reduce((s, f) => s + Number(new RegExp(`^${f}:\\s+(\\d+)`, 'm').exec(rollup)![1]), 0);
  }, 0) / 1024;
const rssMb = (pid: number): number => memMb(pid, 'Rss');

const { helpers, upstreamPort, collector } = await startUpstreamAndSink();

const proxies = await Promise.all(
  MODES.map(async (mode) => {
    const base = mode.startsWith('base:');
    if (base && !BASELINE) throw new Error(`mode ${mode} needs BENCH_BASELINE`);
    const proxyMode = base ? mode.slice('base:'.length) : mode;
    const child = spawn(
      node,
      [
        `${base ? `${BASELINE}/` : ''}bench/tracing-proxy.ts`,
        JSON.stringify({ proxy: PROXY, mode: proxyMode, upstreamPort, collector }),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    return { mode, child, port: Number(await firstLine(child)) };
  }),
);

await sleep(3000);
const idle = proxies.map((p) => rssMb(p.child.pid!));
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
const get = (port: number): Promise<void> =>
  new Promise((resolve) => {
    http
      .get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
        res.resume();
        res.on('end', resolve);
      })
      .on('error', () => resolve());
  });
for (let i = 0; i < BURST; i += 4) {
  await Promise.all(proxies.flatMap((p) => [0, 1, 2, 3].map(() => get(p.port))));
}
agent.destroy();
await sleep(8000); // past the batch delay (5 s): the export has run, the proxies are idle again
const after = proxies.map((p) => rssMb(p.child.pid!));
const pss = proxies.map((p) => memMb(p.child.pid!, 'Pss'));
const priv = proxies.map((p) => memMb(p.child.pid!, 'Private_Clean', 'Private_Dirty'));
for (const p of proxies) p.child.kill();
helpers.kill();

console.log(
  `idle RSS, ${PROXY}: ${MODES.length} proxies; after ${BURST} requests each and their export ` +
    `(node ${process.version}, load average ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]})`,
);
console.log('mode         idle MB   after MB   PSS MB   private MB');
proxies.forEach((p, i) =>
  console.log(
    [
      p.mode.padEnd(12),
      idle[i]!.toFixed(1).padStart(7),
      after[i]!.toFixed(1).padStart(10),
      pss[i]!.toFixed(1).padStart(8),
      priv[i]!.toFixed(1).padStart(12),
    ].join(' '),
  ),
);
