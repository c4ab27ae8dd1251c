/**
 * One proxy path on loopback, as a process of its own so the benchmark can read its CPU:
 *
 *   node bench/tracing-proxy.ts '{"proxy":"sidecar","mode":"100%","upstreamPort":N,"collector":"http://127.0.0.1:M/v1/traces"}'
 *
 * proxy "sidecar": the sidecar's outbound forwarding path (routed by destination Service, one upstream);
 * "gateway": a gateway listener (HTTP port, HTTPRoute to a Service with one endpoint).
 * mode "none": the tracing code is not loaded at all; "off": loaded, no endpoint (tracing disabled);
 * "0%", "1%", "100%": exporting to `collector` at that sampling ratio ("1%@5000": with that batch delay;
 * "1%/local": encoded but not sent, the export's HTTP client never runs; "1%/fetch": sent with Node's
 * built-in fetch, whose bundled undici is code of its own, not the upstream traffic's; "1%/drop": batched,
 * then dropped unencoded; "1%/post", "1%/mute", "1%/echo": batches handed to a thread, no answer awaited
 * (below); "0%/thread": 0 % with an idle export thread, started at launch; "1%/main": the export
 * thread's encode, hand-written POST and retries on the proxy's main thread, ADR 0019, fifth session;
 * "1%/pool": the same, the POST through the data plane's own HTTP/1.1 client (bench/export-pool-post.ts);
 * "1%/proc": the export in a child process (bench/export-process.ts), its CPU counted as the proxy's and
 * shown as the export thread's; "0%/proc": 0 % with an idle export process, started at launch;
 * "1%/sibling", "0%/sibling": the same, the process started by bench/tracing-cost.ts and its socket handed
 * over as fd 3 (no child process or stream object in the proxy's isolate);
 * "100%/timed": each export's part on the main thread timed, on stderr).
 * `"split":true` (bench/tracing-sampled-cpu.ts): the main thread's CPU from each request's arrival to its
 * response's end, summed apart for sampled and unsampled requests; a stdin line "split" answers with those
 * sums since the last such line, as one JSON line.
 * Diagnostics (ADR 0018, ADR 0022): "hdr", no tracing code but an unsampled traceparent added to every
 * request ("hdr-rand", "hdr-seq", "hdr-gen", "hdr-none": variants of it, below);
 * "sdk", the span pipeline and exporter loaded and built, no request looked at; "imp:<module>", that
 * module imported, nothing else. Prints its port, then serves;
 * answers each line on stdin with its CPU time so far.
 */
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { exportThreadUs, processRunUs, threadRunUs } from './thread-cpu.ts';
import { buildProxyView } from '../mesh-model/proxy-view.ts';
import { forwardOutbound, type ForwardDeps } from '../sidecar/http-forward.ts';
import { createHttpServers } from '../sidecar/http-servers.ts';
import { LoadBalancer } from '../sidecar/load-balancer.ts';
import { UpstreamPools } from '../sidecar/upstream-pools.ts';
import { ProxyMetrics } from '../sidecar/metrics.ts';
import { buildGatewayConfig } from '../sidecar/gateway-config.ts';
import { createGatewayListener } from '../sidecar/gateway-listeners.ts';
import { GatewayCertificates } from '../sidecar/gateway-tls.ts';
import type { K8sObject } from '../mesh-model/k8s-objects.ts';
import { loopbackService } from './loopback-service.ts';
import type { SpanExporter } from '../sidecar/tracing/span-pipeline.ts';

const spec = JSON.parse(process.argv[2] ?? '{}') as {
  proxy?: 'sidecar' | 'gateway';
  mode: string;
  upstreamPort: number;
  collector: string;
  split?: boolean;
};
const VIP = '10.96.0.1';
const GATEWAY_PORT = 8080; // the listener's port in the Gateway; the process listens on a free one
const { service, route: meshRoute } = loopbackService(VIP, spec.upstreamPort);
const gatewayObjects: K8sObject[] = [
  {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'GatewayClass',
    metadata: { name: 'sluice' },
    spec: { controllerName: 'sluice.dev/gateway-controller' },
  },
  {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: 'gw', namespace: 'infra', generation: 1 },
    spec: {
      gatewayClassName: 'sluice',
      listeners: [
        {
          name: 'http',
          port: GATEWAY_PORT,
          protocol: 'HTTP',
          allowedRoutes: { namespaces: { from: 'All' } },
        },
      ],
    },
  },
  {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'front', namespace: 'app', generation: 1 },
    spec: {
      parentRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: 'infra', name: 'gw' }],
      rules: [{ backendRefs: [{ name: 'svc', port: 80 }] }],
    },
  },
];

const metrics = new ProxyMetrics();
/** "1%/proc", "0%/proc": the export process, whose CPU this proxy reports with its own. */
let exportProcess: import('./export-process.ts').OtlpProcessExporter | undefined;
const deps: ForwardDeps = { pools: new UpstreamPools(() => undefined), lb: new LoadBalancer(), metrics };
const HDR_MODES = ['hdr-none', 'hdr', 'hdr-rand', 'hdr-seq', 'hdr-gen'];
if (HDR_MODES.includes(spec.mode)) {
  // Diagnostic: no tracing code, but an unsampled traceparent on every forwarded request: a fixed one
  // ("hdr"); fresh random IDs each, as an unsampled request's are made ("hdr-rand"); unique by a counter,
  // no random draw ("hdr-seq"); random IDs drawn but the fixed one sent ("hdr-gen"); the hook called but no
  // header added ("hdr-none").
  const fixed = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00';
  const { randomHex } = await import('../sidecar/tracing/span-record.ts');
  let n = 0;
  const drawn: string[] = [''];
  const traceparent = {
    'hdr-none': undefined,
    hdr: () => fixed,
    'hdr-rand': () => `00-${randomHex(16)}-${randomHex(8)}-00`,
    'hdr-seq': () => `00-0af7651916cd43dd${(n++).toString(16).padStart(16, '0')}-b7ad6b7169203331-00`,
    'hdr-gen': () => {
      drawn[0] = `00-${randomHex(16)}-${randomHex(8)}-00`;
      return fixed;
    },
  }[spec.mode];
  deps.tracing = {
    startOutbound: (_req: unknown, headers: Record<string, string> | undefined) => {
      if (headers && traceparent) headers.traceparent = traceparent();
      return undefined;
    },
    startGateway: (_req: unknown, _info: unknown, up: { headers: Record<string, string> } | undefined) => {
      if (up && traceparent) up.headers.traceparent = traceparent();
      return undefined;
    },
  } as never;
} else if (spec.mode.startsWith('imp:')) {
  // Diagnostic: one package imported, nothing else ("imp:@opentelemetry/sdk-trace").
  await import(spec.mode.slice(4));
} else if (spec.mode === 'sdk') {
  // Diagnostic: the SDK and exporter loaded and a pipeline built, but no request is looked at.
  const { SpanPipeline } = await import('../sidecar/tracing/span-pipeline.ts');
  (globalThis as Record<string, unknown>).pipeline = new SpanPipeline({
    endpoint: spec.collector,
    resource: { 'service.name': 'bench' },
    exportTimeoutMs: 10_000,
    maxQueueSpans: 2048,
    batchDelayMs: 1000,
    onSpans: () => undefined,
  });
} else if (spec.mode !== 'none') {
  const { RequestTracing } = await import('../sidecar/tracing/request-tracing.ts');
  const { DEFAULT_TRACING } = await import('../protocol/tracing-config.ts');
  // "1%/local": spans sampled, batched and encoded as usual, but no export leaves the process (a
  // diagnostic: the export's own cost, its HTTP client and sockets, against the spans').
  const [mode = '', variant] = spec.mode.split('/');
  const { encodeTraceRequest } = await import('../sidecar/tracing/otlp-encode.ts');
  const { OtlpHttpExporter } = await import('../sidecar/tracing/otlp-http-exporter.ts');
  if (variant === 'proc' || variant === 'sibling') {
    const { OtlpProcessExporter } = await import('./export-process.ts');
    exportProcess = new OtlpProcessExporter({
      url: spec.collector,
      timeoutMs: 10_000,
      ...(variant === 'sibling' ? { channelFd: 3 } : {}),
    });
    // "0%/proc": the process started (by one empty export) and idle, as "0%/thread" does for the thread.
    if (mode === '0%') void exportProcess.export([]);
  }
  // "100%/timed": the OTLP exporter, each export's part on the main thread (the batch's encode and its
  // hand-off to the export thread) timed and written to stderr: the pause a batch makes in the requests.
  const timed = (e: SpanExporter): SpanExporter => ({
    export: (spans) => {
      const start = performance.now();
      const done = e.export(spans);
      process.stderr.write(`export of ${spans.length} spans: ${(performance.now() - start).toFixed(2)} ms\n`);
      return done;
    },
    shutdown: () => e.shutdown(),
  });
  const tracing = new RequestTracing({
    resource: { 'service.name': 'bench' },
    identity: () => 'spiffe://cluster.local/ns/app/sa/bench',
    onSpans: (outcome, n) => metrics.spans.inc([outcome], n),
    ...(variant === 'local'
      ? {
          exporter: {
            export: (spans) => {
              encodeTraceRequest(spans);
              return Promise.resolve(undefined);
            },
            shutdown: () => Promise.resolve(),
          },
        }
      : variant === 'fetch'
        ? {
            exporter: {
              export: (spans) =>
                fetch(spec.collector, {
                  method: 'POST',
                  headers: { 'content-type': 'application/x-protobuf' },
                  body: encodeTraceRequest(spans),
                  signal: AbortSignal.timeout(10_000),
                }).then(
                  async (r) => {
                    await r.arrayBuffer();
                    return r.ok
                      ? undefined
                      : ({ reason: 'http_status', status: r.status, attempts: 1 } as const);
                  },
                  (error: unknown) =>
                    ({ reason: 'network_error', error: String(error), attempts: 1 }) as const,
                ),
              shutdown: () => Promise.resolve(),
            },
          }
        : variant === 'drop'
          ? { exporter: { export: () => Promise.resolve(undefined), shutdown: () => Promise.resolve() } }
          : variant === 'timed'
            ? { exporter: timed(new OtlpHttpExporter({ url: spec.collector, timeoutMs: 10_000 })) }
            : variant === 'main' || variant === 'pool'
              ? { exporter: await mainThreadExporter(spec.collector, variant === 'pool' ? 'pool' : 'post') }
              : variant === 'proc' || variant === 'sibling'
                ? { exporter: exportProcess! }
                : variant === 'post' || variant === 'mute' || variant === 'echo'
                  ? { exporter: await handOffOnly(variant) }
                  : {}),
  });
  // "1%@5000": 1 % with a batch delay of 5,000 ms (else the default).
  const [percent = '', delay] = mode.split('@');
  const ratio = spec.mode === 'off' ? 0 : Number(percent.replace('%', '')) / 100;
  tracing.apply(
    {
      ...DEFAULT_TRACING,
      endpoint: spec.mode === 'off' ? undefined : spec.collector,
      samplingRatio: ratio,
      ...(delay ? { batchDelayMs: Number(delay) } : {}),
    },
    'app',
  );
  deps.tracing = tracing;
  if (variant === 'thread') {
    // "0%/thread": an export thread started (by one empty export) and idle, in a proxy that never exports:
    // what the thread's presence alone costs the proxy's requests (ADR 0019, fourth-session amendment).
    void new OtlpHttpExporter({ url: spec.collector, timeoutMs: 10_000 }).export([]);
  }
  if (spec.split) {
    const startOutbound = tracing.startOutbound.bind(tracing);
    const startGateway = tracing.startGateway.bind(tracing);
    tracing.startOutbound = (req, ...rest) => markSampled(req, startOutbound(req, ...rest));
    tracing.startGateway = (req, ...rest) => markSampled(req, startGateway(req, ...rest));
  }
}

/** The export thread's work (encode, hand-written POST, retries) done on the main thread instead. */
async function mainThreadExporter(url: string, client: 'post' | 'pool'): Promise<SpanExporter> {
  const { encodeTraceRequest } = await import('../sidecar/tracing/otlp-encode.ts');
  const { sendWithRetries } = await import('../sidecar/tracing/otlp-export-retries.ts');
  const poster =
    client === 'pool'
      ? new (await import('./export-pool-post.ts')).PoolPoster(new URL(url))
      : new (await import('../sidecar/tracing/otlp-http1-post.ts')).Http1Poster(new URL(url));
  return {
    export: (spans) =>
      sendWithRetries(encodeTraceRequest(spans), 10_000, {
        post: (body, timeoutMs) => poster.post(body, timeoutMs),
        now: () => performance.now(),
        closed: () => false,
        backoffBaseMs: 250,
      }),
    shutdown: () => Promise.resolve(poster.close()),
  };
}

/**
 * Diagnostics (ADR 0018, 2026-12-04 night amendment): the hand-off to an export thread without the rest.
 * Each batch encoded and posted (its ArrayBuffer transferred) to a thread started at the first export, as
 * the OTLP exporter does, but reported sent at once: no answer awaited, no timer, no waiting map.
 * "post": the real export thread (it POSTs and answers; the answer is not listened for);
 * "mute": a thread that takes each batch and does nothing (no HTTP client, no answer);
 * "echo": a thread that answers each batch at once, as the real one does after its POST (no HTTP client).
 */
const MUTE_THREAD = "require('node:worker_threads').parentPort.on('message', () => {});";
const ECHO_THREAD =
  "const { parentPort } = require('node:worker_threads'); parentPort.on('message', (m) => parentPort.postMessage({ id: m.id, ok: true }));";
async function handOffOnly(variant: 'post' | 'mute' | 'echo'): Promise<SpanExporter> {
  const { Worker } = await import('node:worker_threads');
  const { encodeTraceRequest } = await import('../sidecar/tracing/otlp-encode.ts');
  const { EXPORT_THREAD_OPTIONS } = await import('../sidecar/tracing/otlp-http-exporter.ts');
  let worker: InstanceType<typeof Worker> | undefined;
  const start = () => {
    const w =
      variant === 'post'
        ? new Worker(new URL('../sidecar/tracing/otlp-export-worker.ts', import.meta.url), {
            ...EXPORT_THREAD_OPTIONS,
            workerData: { url: spec.collector, backoffBaseMs: 250 },
          })
        : new Worker(variant === 'mute' ? MUTE_THREAD : ECHO_THREAD, {
            ...EXPORT_THREAD_OPTIONS,
            eval: true,
          });
    w.unref();
    return w;
  };
  return {
    export: (spans) => {
      const body = encodeTraceRequest(spans);
      (worker ??= start()).postMessage({ id: 0, body: body.buffer, length: body.length, budgetMs: 10_000 }, [
        body.buffer as ArrayBuffer,
      ]);
      return Promise.resolve(undefined);
    },
    shutdown: () => Promise.resolve(void worker?.terminate()),
  };
}

/** Per class of request: how many ended, and their main-thread CPU (µs) in all and squared. */
const splitSums = () => ({ sampled: [0, 0, 0], unsampled: [0, 0, 0], since: process.threadCpuUsage() });
let split = splitSums();
const sampledRequests = new WeakSet<object>();
function markSampled<T>(req: object, span: T): T {
  if (span) sampledRequests.add(req);
  return span;
}
const cpuNowUs = (): number => {
  const { user, system } = process.threadCpuUsage();
  return user + system;
};

let server;
let http1;
if (spec.proxy === 'gateway') {
  const config = buildGatewayConfig([...service, ...gatewayObjects], 'infra', 'gw', 'cluster.local');
  if (!config.view) throw new Error('bench gateway not accepted');
  const listener = createGatewayListener({
    deps,
    port: GATEWAY_PORT,
    protocol: 'HTTP',
    config: () => config,
    certificates: new GatewayCertificates(),
    detectTimeoutMs: 1000,
  });
  server = listener.server;
  http1 = listener.http.http1;
} else {
  const view = buildProxyView([...service, meshRoute], 'app', 'cluster.local');
  const routing = view.byDestination.get(`${VIP}:80`);
  server = http1 = createHttpServers((req, res) =>
    forwardOutbound(deps, view, routing, { address: VIP, port: 80 }, req, res),
  ).http1;
}
if (spec.split) {
  http1.prependListener('request', (req, res) => {
    const start = cpuNowUs();
    res.once('finish', () => {
      const us = cpuNowUs() - start;
      const sums = sampledRequests.has(req) ? split.sampled : split.unsampled;
      sums[0]! += 1;
      sums[1]! += us;
      sums[2]! += us * us;
    });
  });
}
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${(server.address() as AddressInfo).port}\n`);
});
// Each line on stdin asks for the CPU this process used so far (µs, all threads): finer than /proc's ticks;
// then the main thread's and the export thread's (the rest: V8's and libuv's helper threads, GC, compiler).
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'split') {
    const { user, system } = process.threadCpuUsage();
    const mainUs = user + system - split.since.user - split.since.system;
    process.stdout.write(
      `${JSON.stringify({ mainUs, sampled: split.sampled, unsampled: split.unsampled })}\n`,
    );
    split = splitSums();
    return;
  }
  const { user, system } = process.cpuUsage();
  const childUs = processRunUs(exportProcess?.child?.pid);
  process.stdout.write(
    `${user + system + childUs} ${threadRunUs('/proc/thread-self')} ${exportThreadUs() + childUs}\n`,
  );
});
process.on('SIGUSR2', () => process.stderr.write(metrics.render()));
process.on('SIGINT', () => process.exit(0)); // lets --cpu-prof write its profile
