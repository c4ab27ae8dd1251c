// The golden gateway corpus (test/golden-gateway/*.in.yaml → *.out.yaml), format in its README.md: Gateway
// API manifests in; the gateway's view, every status and sample request plans out.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import type { K8sObject } from '../../mesh-model/k8s-objects.ts';
import type { HeaderMap } from '../../mesh-model/header-edits.ts';
import { buildGatewayView, planGatewayRequest, type GatewayView } from '../../mesh-model/gateway-view.ts';
import { computeGatewayStatuses, type Condition } from '../../mesh-model/gateway-status.ts';
import { parseRequestTarget } from '../../mesh-model/request-target.ts';
import { summarizePlan, type PlanSummary } from '../../mesh-model/plan-summary.ts';

export const GOLDEN_GATEWAY_DIR = new URL('../golden-gateway/', import.meta.url).pathname;

interface GatewayCaseFile {
  /** `namespace/name` of the Gateway whose view and plans are shown. */
  gateway: string;
  random?: number;
  manifests: K8sObject[];
  requests?: {
    name?: string;
    method?: string;
    /** http(s)://HOST[:PORT]/path?query: the Host header and the listener port (default 80 / 443). */
    url: string;
    headers?: Record<string, string>;
    grpc?: boolean;
    random?: number;
  }[];
}

export function goldenGatewayCaseNames(): string[] {
  return readdirSync(GOLDEN_GATEWAY_DIR)
    .filter((f) => f.endsWith('.in.yaml'))
    .map((f) => f.slice(0, -'.in.yaml'.length))
    .sort();
}

export function gatewayOutFile(name: string): string {
  return join(GOLDEN_GATEWAY_DIR, `${name}.out.yaml`);
}

/** "Type=Status Reason: message", one line per condition. */
function conditionLine(c: Condition): string {
  return `${c.type}=${c.status} ${c.reason}: ${c.message}`;
}

function viewSummary(view: GatewayView | undefined): unknown {
  if (!view) return null;
  return [...view.ports.values()]
    .sort((a, b) => a.port - b.port)
    .map((p) => ({
      port: p.port,
      protocol: p.protocol,
      listeners: p.listeners.map((l) => ({
        name: l.name,
        hostname: l.hostname ?? null,
        ...(l.protocol === 'HTTPS'
          ? { certificates: l.certificates.map((c) => `${c.namespace}/${c.name}`) }
          : {}),
        ...(l.clientValidation
          ? {
              clientValidation: {
                mode: l.clientValidation.mode,
                caCertificates: l.clientValidation.caCertificates.map((c) => `${c.namespace}/${c.name}`),
              },
            }
          : {}),
        hosts: l.hosts.map((h) => ({
          hostname: h.hostname ?? null,
          kind: h.routing.kind ?? null,
          routes: h.routing.routes.map((r) => `${r.namespace}/${r.name}`),
        })),
      })),
    }));
}

export interface GatewayGoldenOutput {
  view: unknown;
  statuses: unknown;
  requests: { name: string; request: string; plan: PlanSummary }[];
}

export function goldenGatewayOutput(name: string): GatewayGoldenOutput {
  const doc = parse(readFileSync(join(GOLDEN_GATEWAY_DIR, `${name}.in.yaml`), 'utf8')) as GatewayCaseFile;
  const [namespace, gatewayName] = doc.gateway.split('/') as [string, string];
  const view = buildGatewayView(doc.manifests, namespace, gatewayName, 'cluster.local');
  const statuses = computeGatewayStatuses(doc.manifests);
  const requests = (doc.requests ?? []).map((r, i) => {
    const url = new URL(r.url);
    const headers: HeaderMap = { host: url.host };
    for (const [k, v] of Object.entries(r.headers ?? {})) headers[k.toLowerCase()] = v;
    if (r.grpc) Object.assign(headers, { 'content-type': 'application/grpc', te: 'trailers' });
    const method = r.grpc ? 'POST' : (r.method ?? 'GET');
    const scheme = url.protocol.slice(0, -1);
    const port = url.port === '' ? (scheme === 'https' ? 443 : 80) : Number(url.port);
    const target = parseRequestTarget(url.pathname + url.search);
    if (!target.ok) throw new Error(`${name}: ${r.url}: ${target.reason}`);
    const plan = view
      ? planGatewayRequest(
          view,
          port,
          { method, path: target.path, query: target.query, scheme, authority: url.host, headers },
          r.random ?? doc.random ?? 0,
        )
      : undefined;
    return {
      name: r.name ?? `request ${i + 1}`,
      request: `${method} ${r.url}`,
      plan: plan ? summarizePlan(plan, headers) : ({ reply: null } as unknown as PlanSummary),
    };
  });
  return {
    view: viewSummary(view),
    statuses: {
      gatewayClasses: Object.fromEntries(
        [...statuses.gatewayClasses].map(([k, cs]) => [k, cs.map(conditionLine)]),
      ),
      gateways: Object.fromEntries(
        [...statuses.gateways].map(([k, g]) => [
          k,
          {
            conditions: g.conditions.map(conditionLine),
            listeners: g.listeners.map((l) => ({
              name: l.name,
              supportedKinds: l.supportedKinds.map((s) => s.kind),
              attachedRoutes: l.attachedRoutes,
              conditions: l.conditions.map(conditionLine),
            })),
          },
        ]),
      ),
      routeParents: Object.fromEntries(
        [...statuses.routeParents].map(([k, ps]) => [
          k,
          ps.map((p) => ({
            parentRef: p.parentRef,
            controllerName: p.controllerName,
            conditions: p.conditions.map(conditionLine),
          })),
        ]),
      ),
    },
    requests,
  };
}
