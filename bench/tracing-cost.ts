/**
 * What tracing costs the sidecar (npm run bench:tracing; loopback only, no root): the outbound forwarding
 * path (bench/tracing-proxy.ts) with the tracing code not loaded, loaded but off, and exporting over
 * OTLP/HTTP protobuf to a local sink at 0 %, 1 % and 100 % sampling. For each: proxy CPU per request at a
 * fixed rate (user+system, from /proc), latency p50/p99 at that rate, and the closed-loop maximum rate.
 * Modes are interleaved over BENCH_ROUNDS rounds and the median round is reported, to even out noise from
 * other work on the machine. Prints a table; no assertions.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const RPS = Number(process.env.BENCH_RPS ?? 1000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const MAX_SECONDS = Number(process.env.BENCH_MAX_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const MODES = (process.env.BENCH_MODES ?? 'none,off,0%,1%,100%').split(',');
const node = process.execPath;

function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`exited ${code}`)));
  });
}

async function load(port: number, mode: 'rate' | 'max', seconds: number): Promise<Record<string, number>> {
  const child = spawn(
    node,
    [
      'bench/load-generator.ts',
      JSON.stringify({
        url: `http://127.0.0.1:${port}/`,
        protocol: 'h1',
        mode,
        rps: RPS,
        durationMs: seconds * 1000,
        connections: mode === 'max' ? 16 : 8,
        warmupMs: 1500,
      }),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return JSON.parse(await firstLine(child)) as Record<string, number>;
}

// The upstream and the collector sink: one small process, so the bench process itself stays idle.
const helpers = spawn(
  node,
  [
    '-e',
    `const http=require('http');
     const up=http.createServer((q,s)=>{q.resume();s.end('ok')}).listen(0,'127.0.0.1');
     let spans=0;
     const sink=http.createServer((q,s)=>{let n=0;q.on('data',d=>n+=d.length);q.on('end',()=>{spans+=n;s.writeHead(200,{'content-type':'application/x-protobuf'});s.end()})}).listen(0,'127.0.0.1');
     setTimeout(()=>console.log(up.address().port+' '+sink.address().port),200);`,
  ],
  { stdio: ['ignore', 'pipe', 'inherit'] },
);
const [upstreamPort, sinkPort] = (await firstLine(helpers)).split(' ').map(Number);
const collector = `http://127.0.0.1:${sinkPort}/v1/traces`;

interface Row {
  cpuUsPerReq: number;
  p50Ms: number;
  p99Ms: number;
  maxRps: number;
}
const rows = new Map<string, Row[]>();
for (let round = 0; round < ROUNDS; round++) {
  for (const mode of MODES) {
    const proxy = spawn(node, ['bench/tracing-proxy.ts', JSON.stringify({ mode, upstreamPort, collector })], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const port = Number(await firstLine(proxy));
    await load(port, 'rate', 2); // JIT and connection set-up, left out of the CPU figure
    const before = cpuSeconds(proxy.pid!);
    const rate = await load(port, 'rate', SECONDS);
    const cpu = cpuSeconds(proxy.pid!) - before;
    const max = await load(port, 'max', MAX_SECONDS);
    proxy.kill();
    // Warm-up requests are included in the CPU: count them as the rate says.
    const requests = rate.sent! + RPS * 1.5;
    const row = {
      cpuUsPerReq: (cpu / requests) * 1e6,
      p50Ms: rate.p50Ms!,
      p99Ms: rate.p99Ms!,
      maxRps: max.rps!,
    };
    rows.set(mode, [...(rows.get(mode) ?? []), row]);
    process.stderr.write(`round ${round + 1} ${mode}: ${JSON.stringify(row)}\n`);
  }
}
helpers.kill();

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const base = median(rows.get('none')?.map((r) => r.cpuUsPerReq) ?? [NaN]);
console.log(
  `tracing cost, ${RPS} rps for ${SECONDS} s, median of ${ROUNDS} rounds (node ${process.version})`,
);
console.log('mode    CPU µs/req   vs none   p50 ms   p99 ms   max rps');
for (const [mode, rs] of rows) {
  const cpu = median(rs.map((r) => r.cpuUsPerReq));
  console.log(
    [
      mode.padEnd(6),
      cpu.toFixed(1).padStart(11),
      `${(((cpu - base) / base) * 100).toFixed(1)}%`.padStart(9),
      median(rs.map((r) => r.p50Ms))
        .toFixed(2)
        .padStart(8),
      median(rs.map((r) => r.p99Ms))
        .toFixed(2)
        .padStart(8),
      median(rs.map((r) => r.maxRps))
        .toFixed(0)
        .padStart(9),
    ].join(' '),
  );
}
