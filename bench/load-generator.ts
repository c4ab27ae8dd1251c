/**
 * HTTP load generator for the benchmarks, run as a process (inside a netns pod for the mesh benchmark):
 *
 *   node bench/load-generator.ts '{"url":"http://10.96.0.10/?size=1024","protocol":"h1","mode":"rate",
 *                                  "rps":1000,"durationMs":10000,"connections":16}'
 *
 * mode "rate": open loop at a fixed rate: a 1 ms ticker sends every request that is due, whatever the
 * responses do, so a slow path shows up as latency and in-flight requests, not as a lower rate.
 * Latency is measured from the moment a request was due (no coordinated omission: a stalled loop or a
 * request waiting for a free connection shows as latency).
 * mode "max": closed loop, `connections` requests in flight, as fast as they complete.
 * Prints one JSON line: { sent, ok, errors, seconds, rps, p50Ms, p90Ms, p99Ms, maxMs, warmupSent, outcomes,
 * cpuMs, sendLagP99Ms, serviceP50Ms, serviceP99Ms }: where the requests went (a 200 within `timeoutMs` of its
 * intended send time, a late 200, given up, a 503, another failure), the generator's own CPU, how far behind
 * its schedule it sent (a generator that cannot keep its schedule is the bound, not what it measures), and
 * the time from a request's actual send to its outcome.
 */
import http from 'node:http';
import http2 from 'node:http2';
import { DueQueue } from './due-queue.ts';
import { percentile } from './stats.ts';

interface Spec {
  url: string;
  protocol: 'h1' | 'h2';
  mode: 'rate' | 'max';
  rps?: number;
  durationMs: number;
  connections: number;
  warmupMs?: number;
  /** A request without its whole response after this long is given up (counted as an error). */
  timeoutMs?: number;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as Spec;
const url = new URL(spec.url);
const agent = new http.Agent({ keepAlive: true, maxSockets: spec.connections });
const sessions: http2.ClientHttp2Session[] = [];
if (spec.protocol === 'h2') {
  for (let i = 0; i < Math.max(1, Math.ceil(spec.connections / 100)); i++) {
    const s = http2.connect(url.origin);
    s.on('error', () => undefined);
    sessions.push(s);
  }
}
let rr = 0;

/** How a request ended: a 200, given up by the client (timeoutMs), the status it got, or 0 (failed). */
type Outcome = 'ok' | 'gaveUp' | number;

function send(): Promise<Outcome> {
  return new Promise((resolve) => {
    if (spec.protocol === 'h1') {
      const req = http.get(
        { host: url.hostname, port: url.port || 80, path: url.pathname + url.search, agent },
        (res) => {
          res.on('data', () => undefined);
          res.on('end', () => {
            resolve(res.statusCode === 200 ? 'ok' : (res.statusCode ?? 0));
          });
          res.on('error', () => resolve(gaveUp ? 'gaveUp' : 0));
        },
      );
      req.on('error', () => resolve(gaveUp ? 'gaveUp' : 0));
      // Idle on its connection this long: given up (run() gives up a request waiting for a connection).
      let gaveUp = false;
      if (spec.timeoutMs)
        req.setTimeout(spec.timeoutMs, () => {
          gaveUp = true;
          req.destroy();
        });
    } else {
      const session = sessions[rr++ % sessions.length]!;
      const stream = session.request({ ':path': url.pathname + url.search });
      let status = 0;
      let gaveUp = false;
      stream.on('response', (h) => (status = Number(h[':status'])));
      stream.on('data', () => undefined);
      stream.on('end', () => resolve(status === 200 ? 'ok' : status));
      stream.on('error', () => resolve(gaveUp ? 'gaveUp' : 0));
      stream.on('close', () => resolve(gaveUp ? 'gaveUp' : 0)); // after 'end' this changes nothing
      if (spec.timeoutMs)
        stream.setTimeout(spec.timeoutMs, () => {
          gaveUp = true;
          stream.close(http2.constants.NGHTTP2_CANCEL);
        });
      stream.end();
    }
  });
}

async function run(durationMs: number, record: boolean) {
  const latencies: number[] = [];
  const lags: number[] = [];
  /** From the request's actual send to its outcome (open loop): the path's own time, without the wait here. */
  const services: number[] = [];
  const outcomes = { inTime: 0, late: 0, gaveUp: 0, overloaded: 0, failed: 0 };
  let sent = 0;
  let ok = 0;
  let errors = 0;
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const end = start + durationMs;
  const finish = (scheduled: number, outcome: Outcome): void => {
    if (!record) return;
    const latency = performance.now() - scheduled;
    if (outcome === 'ok') {
      ok++;
      if (spec.timeoutMs && latency > spec.timeoutMs) outcomes.late++;
      else outcomes.inTime++;
    } else {
      errors++;
      if (outcome === 'gaveUp') outcomes.gaveUp++;
      else if (outcome === 503) outcomes.overloaded++;
      else outcomes.failed++;
    }
    latencies.push(latency);
  };
  if (spec.mode === 'max') {
    const worker = async (): Promise<void> => {
      while (performance.now() < end) {
        const t = performance.now();
        sent++;
        finish(t, await send());
      }
    };
    await Promise.all(Array.from({ length: spec.connections }, worker));
  } else {
    // A 1 ms ticker sends every request whose time has come; the event loop keeps running in between,
    // so responses are read while the schedule is kept. HTTP/1.1: at most `connections` in flight, the rest
    // wait in the DueQueue (given up there after timeoutMs).
    const interval = 1000 / (spec.rps ?? 1000);
    const queue = new DueQueue(spec.protocol === 'h1' ? spec.connections : Infinity, spec.timeoutMs, () =>
      performance.now(),
    );
    let settled = 0;
    let ticking = true;
    let allSettled: () => void = () => undefined;
    // From the intended send time: a late tick or a wait for a free connection counts.
    const settle = (intended: number, outcome: Outcome): void => {
      finish(intended, outcome);
      if (++settled === sent && !ticking) allSettled();
    };
    const gaveUp = (intended: number): void => settle(intended, 'gaveUp');
    const dispatch = (intended: number): void => {
      const sentAt = performance.now();
      void send().then((outcome) => {
        if (record) services.push(performance.now() - sentAt);
        queue.finished();
        queue.take(dispatch, gaveUp);
        settle(intended, outcome);
      });
    };
    let i = 0;
    await new Promise<void>((done) => {
      allSettled = done;
      const timer = setInterval(() => {
        const now = performance.now();
        for (let due = start + i * interval; due <= now && due < end; due = start + i * interval) {
          i++;
          sent++;
          if (record) lags.push(now - due);
          queue.push(due);
        }
        queue.take(dispatch, gaveUp);
        if (start + i * interval >= end) {
          clearInterval(timer);
          ticking = false;
          if (settled === sent) done();
        }
      }, 1);
    });
  }
  const seconds = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  latencies.sort((a, b) => a - b);
  lags.sort((a, b) => a - b);
  services.sort((a, b) => a - b);
  return {
    serviceP50Ms: percentile(services, 50),
    serviceP99Ms: percentile(services, 99),
    outcomes,
    cpuMs: (cpu.user + cpu.system) / 1000,
    sendLagP99Ms: percentile(lags, 99),
    sent,
    ok,
    errors,
    seconds,
    rps: ok / seconds,
    p50Ms: percentile(latencies, 50),
    p90Ms: percentile(latencies, 90),
    p99Ms: percentile(latencies, 99),
    maxMs: latencies.at(-1) ?? NaN,
  };
}

/** What the generator prints. */
export interface LoadResult {
  sent: number;
  ok: number;
  errors: number;
  seconds: number;
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  warmupSent: number;
  /** inTime: a 200 within timeoutMs of its intended send time (all 200s without timeoutMs). */
  outcomes: { inTime: number; late: number; gaveUp: number; overloaded: number; failed: number };
  /** The generator's own CPU (user + system) over the measured run. */
  cpuMs: number;
  /** How late the open loop sent, 99th percentile (NaN in mode "max"). */
  sendLagP99Ms: number;
  /** Open loop: from a request's actual send (a connection free) to its outcome. */
  serviceP50Ms: number;
  serviceP99Ms: number;
}

const warmup = await run(spec.warmupMs ?? 1000, false);
const result: LoadResult = { ...(await run(spec.durationMs, true)), warmupSent: warmup.sent };
for (const s of sessions) s.close();
agent.destroy();
process.stdout.write(`${JSON.stringify(result)}\n`);
