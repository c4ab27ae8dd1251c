/**
 * The tracing work of one request in isolation (npm run bench:tracing-micro): what startOutbound, route,
 * attempt and end cost in CPU, per sampling mode, with spans exported over OTLP/HTTP protobuf to a local
 * sink. The in-process figure the ADR compares with the proxy's own CPU per request (bench:tracing).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { RequestTracing, type TracedRequest } from '../sidecar/tracing/request-tracing.ts';
import { DEFAULT_TRACING } from '../protocol/tracing-config.ts';
import type { HeaderMap } from '../mesh-model/header-edits.ts';

const N = Number(process.env.BENCH_REQUESTS ?? 100_000);
let exportedBytes = 0;
const sink = http.createServer((req, res) => {
  req.on('data', (d: Buffer) => (exportedBytes += d.length));
  req.on('end', () => res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end());
});
await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
const endpoint = `http://127.0.0.1:${(sink.address() as AddressInfo).port}/v1/traces`;

const ep = {
  address: '10.1.0.4',
  port: 9080,
  ready: true,
  serving: true,
  terminating: false,
  identity: 'spiffe://cluster.local/ns/app/sa/b',
  pod: 'b-1',
};
function request(i: number): TracedRequest {
  return {
    method: 'GET',
    url: `/items/${i % 100}?q=1`,
    headers: { host: 'svc.app:80', 'user-agent': 'bench', accept: '*/*' },
    httpVersion: '1.1',
    socket: { remoteAddress: '127.0.0.1', remotePort: 40000 },
  };
}

async function run(mode: string): Promise<{ cpuUs: number; spans: number }> {
  let spans = 0;
  const tracing = new RequestTracing({
    resource: { 'service.name': 'bench' },
    identity: () => 'spiffe://cluster.local/ns/app/sa/a',
    onSpans: (outcome, n) => {
      if (outcome === 'exported') spans += n;
    },
  });
  const ratio = mode === 'off' ? 0 : Number(mode.replace('%', '')) / 100;
  tracing.apply(
    {
      ...DEFAULT_TRACING,
      endpoint: mode === 'off' ? undefined : endpoint,
      samplingRatio: ratio,
      maxQueueSpans: 1 << 20,
    },
    'app',
  );
  const once = (i: number): void => {
    const headers: HeaderMap = { host: 'svc.app:80', 'user-agent': 'bench' };
    const span = tracing.startOutbound(request(i), headers, 'svc.app:80');
    span?.route(undefined, 'app/svc:80');
    span?.attempt(ep);
    span?.end(200);
  };
  for (let i = 0; i < 20_000; i++) once(i); // warm-up (JIT)
  await tracing.flush();
  const before = process.cpuUsage();
  // Batches of 1,000 with a turn of the event loop between them, so exports run as they would.
  for (let i = 0; i < N; i += 1000) {
    for (let j = i; j < i + 1000; j++) once(j);
    await new Promise((r) => setImmediate(r));
  }
  await tracing.flush();
  const used = process.cpuUsage(before);
  await tracing.shutdown();
  return { cpuUs: (used.user + used.system) / N, spans };
}

console.log(`tracing work per request, ${N} requests, in process (node ${process.version})`);
console.log('mode    CPU µs/req   spans exported');
for (const mode of ['off', '0%', '1%', '100%']) {
  const r = await run(mode);
  console.log(`${mode.padEnd(6)} ${r.cpuUs.toFixed(2).padStart(11)} ${String(r.spans).padStart(16)}`);
}
console.log(`(OTLP bytes received by the sink: ${exportedBytes})`);
sink.close();
