/**
 * The cold cost of a sampled span (ADR 0018, ADR 0017): three processes side by side, each with a tracing
 * pipeline exporting to a local sink, one idle, one ending SPANS_PER_SECOND spans through Sluice's OTLP
 * encoder and sender, one whose exporter discards the spans (the span record and the batch alone). CPU per
 * span = the process's CPU above the idle one's, over
 * the spans it made. Runs them at once so they share the machine's contention.
 *
 *   node bench/tracing-cold.ts            (BENCH_SECONDS, default 30; BENCH_SPANS_PER_SECOND, default 1)
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 30);
const RATE = Number(process.env.BENCH_SPANS_PER_SECOND ?? 1);

if (process.argv[2] === 'child') {
  const [, , , variant = '', endpoint = ''] = process.argv;
  // A proxy has undici loaded for its HTTP/1.1 upstreams: loaded here before the measurement, as in a
  // proxy (the exporter posts from a thread of its own, whose start is counted with the first spans).
  (await import('node:module')).createRequire(import.meta.url)('undici');
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
  const start = process.cpuUsage();
  let spans = 0;
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
  setTimeout(() => {
    clearInterval(timer);
    void tracing.flush().then(() => {
      const u = process.cpuUsage(start);
      process.stdout.write(`${variant} ${u.user + u.system} ${spans}\n`);
      process.exit(0);
    });
  }, SECONDS * 1000);
} else {
  let bytes = 0;
  const sink = http.createServer((req, res) => {
    req.on('data', (d: Buffer) => (bytes += d.length));
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end());
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  const endpoint = `http://127.0.0.1:${(sink.address() as AddressInfo).port}/v1/traces`;
  const run = (variant: string): Promise<[string, number, number]> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [import.meta.filename, 'child', variant, endpoint], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += String(d)));
      child.on('exit', (code) => {
        const [name = '', cpu = '0', spans = '0'] = out.trim().split(' ');
        if (code !== 0) reject(new Error(`${variant} exited ${code}`));
        else resolve([name, Number(cpu), Number(spans)]);
      });
    });
  const results = await Promise.all(['idle', 'sluice', 'discard'].map(run));
  const idle = results[0]![1];
  for (const [name, cpu, spans] of results.slice(1))
    console.log(`${name}: ${spans} spans, ${((cpu - idle) / spans).toFixed(0)} µs CPU per span above idle`);
  console.log(
    `idle: ${idle} µs over ${SECONDS} s; ${bytes} bytes exported; load ${(await import('node:os')).loadavg()[0]!.toFixed(1)}`,
  );
  sink.close();
}
