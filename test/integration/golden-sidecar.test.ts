import assert from 'node:assert/strict';
import http from 'node:http';
import { buildProxyView } from '../../mesh-model/proxy-view.ts';
import type { K8sObject } from '../../mesh-model/k8s-objects.ts';
import { resolveService } from '../../mesh-model/explain.ts';
import { LoadBalancer } from '../../sidecar/load-balancer.ts';
import { UpstreamPools } from '../../sidecar/upstream-pools.ts';
import { ProxyMetrics } from '../../sidecar/metrics.ts';
import { grpcCall, startEchoServer, type EchoReply } from '../../images/echo/echo-server.ts';
import { upstream, type Upstream } from '../support/scripted-upstream.ts';
import { startLoopbackForwarder } from '../support/loopback-forwarder.ts';
import {
  goldenCaseNames,
  planGoldenCase,
  readGoldenCase,
  type GoldenCase,
  type PlannedRequest,
} from '../support/golden-plans.ts';

// The golden corpus through the real sidecar forwarding path on loopback: the sidecar's HTTP servers get
// each request with the Service destination the app dialled, every Service port is an echo server that
// reports what it received, and what arrives must be what the pure plan says (test/golden/*.out.yaml is
// checked against the same plans in test/unit/golden-plans.test.ts).

/** Headers a hop adds or drops on its own (connection management), not part of a plan. */
const HOP_HEADERS = new Set(['connection', 'keep-alive', 'content-length', 'transfer-encoding']);

interface Observed {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  echo: EchoReply | undefined;
}

/** Mirror targets: the sidecar discards their responses, only the hits matter. */
const recorder = (): Promise<Upstream> => upstream((_n, _req, res) => res.end('ok'));

async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function h1Request(port: number, planned: PlannedRequest): Promise<Observed> {
  const url = new URL(planned.request.url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: planned.request.method,
        path: planned.request.target ?? url.pathname + url.search,
        headers: { host: url.host, ...planned.request.headers },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          let echo: EchoReply | undefined;
          if (res.headers['x-echo-name']) echo = JSON.parse(body) as EchoReply;
          resolve({ status: res.statusCode!, headers: res.headers, body, echo });
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function grpcRequest(port: number, planned: PlannedRequest): Promise<Observed> {
  const url = new URL(planned.request.url);
  const { 'content-type': _ct, te: _te, ...extra } = planned.request.headers;
  const r = await grpcCall(`http://127.0.0.1:${port}`, url.pathname, { ...extra, ':authority': url.host });
  return {
    status: r.status,
    headers: r.headers,
    body: r.grpcMessage ?? '',
    echo: r.reply ?? undefined,
  };
}

function withoutHop(headers: Record<string, unknown>, drop: readonly string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of Object.keys(headers).sort()) {
    if (HOP_HEADERS.has(name) || drop.includes(name)) continue;
    const v = headers[name];
    out[name] = Array.isArray(v) ? v.join(',') : String(v);
  }
  return out;
}

function assertMatchesPlan(planned: PlannedRequest, seen: Observed): void {
  const s = planned.summary;
  const what = `${planned.request.name} (${planned.request.method} ${planned.request.url})`;
  if ('reply' in s) {
    assert.equal(seen.status, s.reply.status, what);
    assert.equal(seen.echo, undefined, `${what}: a local reply must not reach a backend`);
    if (s.reply.location !== undefined) assert.equal(seen.headers.location, s.reply.location, what);
    else assert.equal(seen.body.trim(), s.reply.message, what);
    return;
  }
  const f = s.forward;
  assert.equal(seen.status, 200, `${what}: ${seen.body}`);
  const echo = seen.echo!;
  assert.equal(echo.name, f.backend, what);
  assert.equal(echo.method, f.method, what);
  assert.equal(echo.path, f.path, what);
  assert.equal(echo.authority, f.authority, what);
  const h2 = planned.request.grpc;
  // HTTP/2 carries the authority as :authority, not as a host header.
  assert.deepEqual(withoutHop(echo.headers), withoutHop(f.headers, h2 ? ['host'] : []), what);
  for (const edit of f.responseHeaders ?? []) {
    for (const [k, v] of Object.entries(edit.set ?? {})) assert.equal(seen.headers[k], v, `${what}: ${k}`);
    for (const [k, v] of Object.entries(edit.add ?? {}))
      assert.ok(String(seen.headers[k]).split(',').includes(v), `${what}: ${k}`);
    for (const k of edit.remove ?? []) assert.equal(seen.headers[k], undefined, `${what}: ${k}`);
  }
}

/** Waits for the copy each planned mirror sends (it goes out alongside the request, not before it). */
async function assertMirrored(planned: PlannedRequest, mirrors: Map<string, Upstream>): Promise<void> {
  const s = planned.summary;
  if (!('forward' in s)) return;
  const f = s.forward;
  for (const m of f.mirrors ?? []) {
    const rec = mirrors.get(m.backend)!;
    const want = { method: f.method, url: f.path, host: f.authority };
    await until(() => rec.hits.some((h) => h.url === want.url), `mirror ${m.backend} ${want.url}`);
    const hit = rec.hits.find((h) => h.url === want.url);
    assert.deepEqual(hit && { method: hit.method, url: hit.url, host: hit.headers.host }, want);
  }
}

describe('golden request plans through the sidecar (loopback)', () => {
  const closers: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });

  /** One echo server per Service port (mirror targets get a recorder), wired in by EndpointSlices. */
  async function backends(
    c: GoldenCase,
    mirrorTargets: Set<string>,
  ): Promise<{ slices: K8sObject[]; mirrors: Map<string, Upstream> }> {
    const slices: K8sObject[] = [];
    const mirrors = new Map<string, Upstream>();
    for (const svc of c.model.services.values()) {
      const ports: { name?: string; port: number }[] = [];
      for (const p of svc.ports) {
        const label = `${svc.namespace}/${svc.name}:${p.port}`;
        let port: number;
        if (mirrorTargets.has(label)) {
          const rec = await recorder();
          closers.push(() => rec.close());
          mirrors.set(label, rec);
          port = rec.port;
        } else {
          const echo = await startEchoServer({ name: label });
          closers.push(() => echo.close());
          port = echo.port;
        }
        ports.push({ ...(p.name ? { name: p.name } : {}), port });
      }
      // One slice per port: each port has its own server, all on 127.0.0.1.
      ports.forEach((port, i) =>
        slices.push({
          apiVersion: 'discovery.k8s.io/v1',
          kind: 'EndpointSlice',
          metadata: {
            name: `${svc.name}-${i}`,
            namespace: svc.namespace,
            labels: { 'kubernetes.io/service-name': svc.name },
          },
          ports: [port],
          endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true } }],
        } as K8sObject),
      );
    }
    return { slices, mirrors };
  }

  for (const name of goldenCaseNames()) {
    it(name, async () => {
      const c = readGoldenCase(name);
      const planned = planGoldenCase(c);
      const mirrorTargets = new Set(
        planned
          .flatMap((p) => ('forward' in p.summary ? (p.summary.forward.mirrors ?? []) : []))
          .map((m) => m.backend),
      );
      const { slices, mirrors } = await backends(c, mirrorTargets);
      const view = buildProxyView([...c.objects, ...slices], c.from, 'cluster.local');
      // The sidecar draws the request's random number, as the pure plan did.
      let random = 0;
      const deps = {
        pools: new UpstreamPools(() => undefined),
        lb: new LoadBalancer(),
        metrics: new ProxyMetrics(),
        random: () => random,
      };
      // The destination the app dialled: the Service the request's URL names (as DNS would resolve it).
      const forwarder = await startLoopbackForwarder(
        deps,
        view,
        (req) => {
          const url = new URL(`http://${String(req.headers[':authority'] ?? req.headers.host)}`);
          const svc = resolveService(view.model, url.hostname, c.from);
          return { address: svc.clusterIPs[0]!, port: url.port === '' ? 80 : Number(url.port) };
        },
        { h2: true },
      );
      closers.push(() => forwarder.close());
      const h1Port = forwarder.port;
      const h2Port = forwarder.h2Port!;
      for (const p of planned) {
        random = p.request.random;
        const seen = await (p.request.grpc ? grpcRequest(h2Port, p) : h1Request(h1Port, p));
        assertMatchesPlan(p, seen);
        await assertMirrored(p, mirrors);
      }
    });
  }
});
