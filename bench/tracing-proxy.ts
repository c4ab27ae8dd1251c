/**
 * The outbound forwarding path on loopback, as a process of its own so the benchmark can read its CPU:
 *
 *   node bench/tracing-proxy.ts '{"mode":"100%","upstreamPort":N,"collector":"http://127.0.0.1:M/v1/traces"}'
 *
 * mode "none": the tracing code is not loaded at all; "off": loaded, no endpoint (tracing disabled);
 * "0%", "1%", "100%": exporting to `collector` at that sampling ratio. Prints its port, then serves.
 */
import type { AddressInfo } from 'node:net';
import { buildProxyView } from '../mesh-model/proxy-view.ts';
import { forwardOutbound, type ForwardDeps } from '../sidecar/http-forward.ts';
import { createHttpServers } from '../sidecar/http-servers.ts';
import { LoadBalancer } from '../sidecar/load-balancer.ts';
import { UpstreamPools } from '../sidecar/upstream-pools.ts';
import { ProxyMetrics } from '../sidecar/metrics.ts';
import type { K8sObject } from '../mesh-model/k8s-objects.ts';

const spec = JSON.parse(process.argv[2] ?? '{}') as { mode: string; upstreamPort: number; collector: string };
const VIP = '10.96.0.1';
const objects: K8sObject[] = [
  {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'svc', namespace: 'app' },
    spec: { clusterIP: VIP, ports: [{ name: 'http', port: 80, targetPort: spec.upstreamPort }] },
  },
  {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'svc-1', namespace: 'app', labels: { 'kubernetes.io/service-name': 'svc' } },
    ports: [{ name: 'http', port: spec.upstreamPort }],
    endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true } }],
  } as K8sObject,
  {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'svc', namespace: 'app' },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'svc', port: 80 }],
      rules: [{ backendRefs: [{ name: 'svc', port: 80 }] }],
    },
  },
];
const view = buildProxyView(objects, 'app', 'cluster.local');
const metrics = new ProxyMetrics();
const deps: ForwardDeps = { pools: new UpstreamPools(() => undefined), lb: new LoadBalancer(), metrics };
if (spec.mode !== 'none') {
  const { RequestTracing } = await import('../sidecar/tracing/request-tracing.ts');
  const { DEFAULT_TRACING } = await import('../protocol/tracing-config.ts');
  const tracing = new RequestTracing({
    resource: { 'service.name': 'bench' },
    identity: () => 'spiffe://cluster.local/ns/app/sa/bench',
    onSpans: (outcome, n) => metrics.spans.inc([outcome], n),
  });
  const ratio = spec.mode === 'off' ? 0 : Number(spec.mode.replace('%', '')) / 100;
  await tracing.apply(
    {
      ...DEFAULT_TRACING,
      endpoint: spec.mode === 'off' ? undefined : spec.collector,
      samplingRatio: ratio,
    },
    'app',
  );
  deps.tracing = tracing;
}
const routing = view.byDestination.get(`${VIP}:80`);
const servers = createHttpServers((req, res) =>
  forwardOutbound(deps, view, routing, { address: VIP, port: 80 }, req, res),
);
servers.http1.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${(servers.http1.address() as AddressInfo).port}\n`);
});
process.on('SIGUSR2', () => process.stderr.write(metrics.render()));
