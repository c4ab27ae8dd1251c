/**
 * The cold cost of a sampled span (ADR 0018, ADR 0017): three processes side by side, each with a tracing
 * pipeline exporting to a local sink, one idle, one ending SPANS_PER_SECOND spans through Sluice's OTLP
 * encoder and sender, one whose exporter discards the spans (the span record and the batch alone). CPU per
 * span = the process's CPU above the idle one's, over
 * the spans it made, in all, in the main thread, and in the export thread (the rest: V8's helper threads).
 * Measured after BENCH_WARM_SECONDS (default 10: the export thread's start and first compiles left out, as a
 * proxy pays them once). Runs them at once so they share the machine's contention.
 *
 *   node bench/tracing-cold.ts    (BENCH_SECONDS, default 30; BENCH_SPANS_PER_SECOND, default 1; BENCH_WARM_SECONDS)
 *
 * BENCH_BASELINE=<dir>, a checkout of another revision: its sender runs too ("base:sluice"), in the same run.
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportThreadUs, threadRunUs } from './thread-cpu.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 30);
const RATE = Number(process.env.BENCH_SPANS_PER_SECOND ?? 1);
const WARM = Number(process.env.BENCH_WARM_SECONDS ?? 10);
const BASELINE = process.env.BENCH_BASELINE;

/** Run time so far, µs: the main thread's and the export thread's. */
function threadsUs(): { main: number; exporter: number } {
  return { main: threadRunUs('/proc/thread-self'), exporter: exportThreadUs() };
}

if (process.argv[2] === 'child') {
  const [, , , variant = '', endpoint = ''] = process.argv;
  // The exporter posts from a thread of its own, whose start is counted with the first spans.
  const { RequestTracing } = await import('../sidecar/tracing/request-tracing.ts');
  const { DEFAULT_TRACING } = await import('../protocol/tracing-config.ts');
  const exporter =
    variant === 'discard'
      ? { export: () => Promise.resolve(undefined), shutdown: () => Promise.resolve() }
      : undefined;
  const tracing = new RequestTracing({
    resource: { 'service.name': 'bench', 'k8s.namespace.name': 'app', 'k8s.pod.name': 'bench-1' },
    identity: () => 'spiffe://cluster.local/ns/app/sa/bench',
    ...(exporter ? { exporter: exporter } : {}),
  });
  tracing.apply({ ...DEFAULT_TRACING, endpoint, samplingRatio: 0 }, 'app');
  let start = process.cpuUsage();
  let threads = threadsUs();
  let spans = 0;
  let warmSpans = 0;
  setTimeout(() => {
    start = process.cpuUsage();
    threads = threadsUs();
    warmSpans = spans;
  }, WARM * 1000);
  const timer = setInterval(() => {
    if (variant === 'idle') return;
    const req = {
      method: 'GET',
      url: `/items/${spans}?q=1`,
      headers: { host: 'svc.app:80', 'user-agent': 'bench', 'x-sluice-force-trace': '1' },
      httpVersion: '1.1',
      socket: { remoteAddress: '10.1.0.7', remotePort: 40000 },
    };
    const span = tracing.startOutbound(req, {}, 'svc.app:80');
    span?.end(200);
    spans++;
  }, 1000 / RATE);
  setTimeout(
    () => {
      clearInterval(timer);
      void tracing.flush().then(() => {
        const u = process.cpuUsage(start);
        const t = threadsUs();
        process.stdout.write(
          `${variant} ${u.user + u.system} ${spans - warmSpans} ${t.main - threads.main} ${t.exporter - threads.exporter}\n`,
        );
        process.exit(0);
      });
    },
    (WARM + SECONDS) * 1000,
  );
} else {
  let bytes = 0;
  // Idle connections kept 60 s, as the OpenTelemetry Collector's HTTP receiver does (tracing-helpers.ts).
  const sink = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    req.on('data', (d: Buffer) => (bytes += d.length));
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end());
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  const endpoint = `http://127.0.0.1:${(sink.address() as AddressInfo).port}/v1/traces`;
  const run = (variant: string): Promise<[string, number, number, number, number]> =>
    new Promise((resolve, reject) => {
      const child = spawn(
        process.execPath,
        [
          ...process.execArgv,
          variant.startsWith('base:') ? `${BASELINE}/bench/tracing-cold.ts` : import.meta.filename,
          'child',
          variant.replace('base:', ''),
          endpoint,
        ],
        {
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += String(d)));
      child.on('exit', (code) => {
        const [, cpu = '0', spans = '0', main = '0', exporter = '0'] = out.trim().split(' ');
        if (code !== 0) reject(new Error(`${variant} exited ${code}`));
        else resolve([variant, Number(cpu), Number(spans), Number(main), Number(exporter)]);
      });
    });
  const results = await Promise.all(
    ['idle', 'sluice', 'discard', ...(BASELINE ? ['base:sluice'] : [])].map(run),
  );
  const [, idle, , idleMain] = results[0]!;
  const per = (us: number, spans: number): string => (us / spans).toFixed(0);
  for (const [name, cpu, spans, main, exporter] of results.slice(1))
    console.log(
      `${name}: ${spans} spans, µs CPU per span above idle: ${per(cpu - idle, spans)} (main thread ` +
        `${per(main - idleMain, spans)}, export thread ${per(exporter, spans)}, others ${per(cpu - idle - (main - idleMain) - exporter, spans)})`,
    );
  console.log(
    `idle: ${idle} µs over ${SECONDS} s; ${bytes} bytes exported; load ${(await import('node:os')).loadavg()[0]!.toFixed(1)}`,
  );
  sink.close();
}
