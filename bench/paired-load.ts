/**
 * Open-loop HTTP/1.1 load on several targets at once, in lockstep (for A/B benchmarks on a busy machine):
 *
 *   node bench/paired-load.ts '{"urls":["http://127.0.0.1:N/","http://127.0.0.1:M/"],"rps":400,
 *                               "durationMs":6000,"connections":8}'
 *
 * Every tick sends each due request to every target (in an order that rotates), so all targets see the
 * same rate at the same moments and share whatever else the machine is doing. Latency is measured from
 * the moment a request was due. Prints one JSON line: an array, per target, of { sent, ok, errors, p50Ms,
 * p99Ms }.
 */
import http from 'node:http';
import { percentile } from './stats.ts';

interface Spec {
  urls: string[];
  rps: number;
  durationMs: number;
  connections: number;
}
const spec = JSON.parse(process.argv[2] ?? '{}') as Spec;
const targets = spec.urls.map((u) => {
  const url = new URL(u);
  return {
    host: url.hostname,
    port: Number(url.port),
    path: url.pathname + url.search,
    agent: new http.Agent({ keepAlive: true, maxSockets: spec.connections }),
    latencies: [] as number[],
    sent: 0,
    ok: 0,
    errors: 0,
  };
});

function send(t: (typeof targets)[number], due: number): Promise<void> {
  t.sent++;
  return new Promise((resolve) => {
    const done = (good: boolean): void => {
      if (good) t.ok++;
      else t.errors++;
      t.latencies.push(performance.now() - due);
      resolve();
    };
    const req = http.get({ host: t.host, port: t.port, path: t.path, agent: t.agent }, (res) => {
      res.on('data', () => undefined);
      res.on('end', () => done(res.statusCode === 200));
      res.on('error', () => done(false));
    });
    req.on('error', () => done(false));
  });
}

const interval = 1000 / spec.rps;
const pending: Promise<void>[] = [];
const start = performance.now();
const end = start + spec.durationMs;
let i = 0;
await new Promise<void>((finished) => {
  const timer = setInterval(() => {
    const now = performance.now();
    for (let due = start + i * interval; due <= now && due < end; due = start + i * interval) {
      for (let k = 0; k < targets.length; k++) pending.push(send(targets[(i + k) % targets.length]!, due));
      i++;
    }
    if (start + i * interval >= end) {
      clearInterval(timer);
      finished();
    }
  }, 1);
});
await Promise.all(pending);
for (const t of targets) t.agent.destroy();
process.stdout.write(
  `${JSON.stringify(
    targets.map((t) => {
      const sorted = t.latencies.sort((a, b) => a - b);
      return {
        sent: t.sent,
        ok: t.ok,
        errors: t.errors,
        p50Ms: percentile(sorted, 50),
        p99Ms: percentile(sorted, 99),
      };
    }),
  )}\n`,
);
