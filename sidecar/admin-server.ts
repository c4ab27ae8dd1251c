import { X509Certificate } from 'node:crypto';
import type * as http from 'node:http';
import type { ProxyView } from '../mesh-model/proxy-view.ts';
import { parseCertificates } from '../pki/pem.ts';
import { fullGc } from './idle-memory.ts';
import type { ProxyMetrics } from './metrics.ts';
import { nodeHttp } from './node-http.ts';

export interface AdminState {
  ready(): { ok: boolean; reason: string };
  metrics: ProxyMetrics;
  view(): ProxyView | undefined;
  identity(): { spiffeId: string; notAfter: Date; certPem?: string; bundlePem?: string } | undefined;
  /** Where config and identity come from, with their state. */
  sources?(): Record<string, unknown>;
  /** The config part of /config_dump when the proxy is not a sidecar (the gateway's). */
  configDump?(): unknown;
}

/**
 * process.memoryUsage() right after a full garbage collection (GET /memory, loopback only): what the proxy
 * still holds. RSS alone cannot tell a leak: V8 and malloc keep pages they grew into long after the
 * objects in them are gone. `/memory?gc=0`: the usage as it is, without the collection.
 */
export function memoryAfterGc(): NodeJS.MemoryUsage {
  fullGc();
  return process.memoryUsage();
}

/**
 * The certificate as an operator checks a CA rotation: which root of the trust bundle issued it, and which
 * roots the proxy trusts (SHA-256 fingerprints, as `openssl x509 -fingerprint -sha256` prints them).
 */
function identitySummary(identity: NonNullable<ReturnType<AdminState['identity']>>): object {
  const summary = { spiffeId: identity.spiffeId, notAfter: identity.notAfter.toISOString() };
  if (identity.certPem === undefined || identity.bundlePem === undefined) return summary;
  try {
    const leaf = new X509Certificate(identity.certPem);
    const roots = parseCertificates(identity.bundlePem, 'trust bundle');
    const issuer = roots.find((root) => leaf.checkIssued(root) && leaf.verify(root.publicKey));
    return {
      ...summary,
      issuer: issuer?.fingerprint256 ?? null,
      trustRoots: roots.map((root) => root.fingerprint256),
    };
  } catch {
    return summary;
  }
}

/** A JSON summary of what the proxy is running with (GET /config_dump). */
export function configDump(state: AdminState): unknown {
  const view = state.view();
  const identity = state.identity();
  return {
    identity: identity ? identitySummary(identity) : null,
    sources: state.sources?.() ?? null,
    config: state.configDump
      ? state.configDump()
      : view
        ? {
            version: view.version,
            namespace: view.namespace,
            trustDomain: view.trustDomain,
            destinations: [...view.byDestination].map(([dst, r]) => ({
              destination: dst,
              service: `${r.service.namespace}/${r.service.name}:${r.port}`,
              routing: r.type ?? 'passthrough',
              kind: r.kind ?? null,
              routes: r.routes.map((route) => `${route.kind} ${route.namespace}/${route.name}`),
            })),
            routes: view.model.routes.map((r) => ({
              route: `${r.kind} ${r.namespace}/${r.name}`,
              generation: r.generation,
            })),
            endpoints: Object.fromEntries(
              [...view.endpoints].map(([k, eps]) => [k, eps.map((e) => ({ ...e }))]),
            ),
            routeProblems: view.model.routes
              .filter((r) => r.problems.length > 0)
              .map((r) => ({ route: `${r.kind} ${r.namespace}/${r.name}`, problems: r.problems })),
            warnings: view.model.warnings,
          }
        : null,
  };
}

/**
 * True for an address only the pod itself can connect to: 127.0.0.0/8, ::1 and their IPv4-mapped forms.
 * A connection from another pod arrives at the pod IP (the admin port is never captured, and a REDIRECT
 * would also keep a non-loopback destination), so its socket's local address is never one of these.
 */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (address === undefined) return false;
  const a = address.toLowerCase().replace(/%.*$/, '');
  const v4 = a.startsWith('::ffff:') ? a.slice('::ffff:'.length) : a;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4) || a === '::1' || a === '0:0:0:0:0:0:0:1';
}

/** Paths served to anyone who reaches the admin port: probes and Prometheus. */
const PUBLIC_PATHS = new Set(['/live', '/ready', '/metrics']);

/**
 * Admin port: /live, /ready, /metrics (Prometheus text) for anyone; /config_dump (every Service, endpoint,
 * pod and SPIFFE ID of the proxy's view) and /memory (usage after a full GC) only on loopback, i.e. `kubectl exec ... curl localhost:PORT` or
 * `kubectl port-forward`. Not captured by iptables.
 */
export function createAdminServer(state: AdminState): http.Server {
  return nodeHttp.createServer((req, res) => {
    const [path = '/', query] = (req.url ?? '/').split('?');
    const send = (status: number, type: string, body: string): void => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (!PUBLIC_PATHS.has(path) && !isLoopbackAddress(req.socket.localAddress)) {
      return send(
        403,
        'text/plain',
        'forbidden: only /live, /ready and /metrics answer on the pod IP; the rest answers on localhost (kubectl exec or port-forward)\n',
      );
    }
    if (path === '/live') return send(200, 'text/plain', 'live\n');
    if (path === '/ready') {
      const r = state.ready();
      return send(r.ok ? 200 : 503, 'text/plain', `${r.reason}\n`);
    }
    if (path === '/metrics') return send(200, 'text/plain; version=0.0.4', state.metrics.render());
    if (path === '/config_dump')
      return send(200, 'application/json', `${JSON.stringify(configDump(state), null, 2)}\n`);
    if (path === '/memory') {
      const usage = query === 'gc=0' ? process.memoryUsage() : memoryAfterGc();
      return send(200, 'application/json', `${JSON.stringify(usage)}\n`);
    }
    send(404, 'text/plain', 'not found: try /live, /ready, /metrics, /config_dump, /memory\n');
  });
}
