// Gateway API objects → what one gateway's proxies serve. Pure (apart from the version counter, as in
// proxy-view.ts). Routes attached to a Gateway are compiled by compile-route.ts and planned by
// request-plan.ts, the same code the mesh uses: see docs/adr/0009-gateways-reuse-the-mesh-model.md.
import { isShaped, objectKey, type K8sObject } from './k8s-objects.ts';
import { readGatewayWorld, type SecretRef } from './gateway-listeners.ts';
import { attachGatewayRoutes, listenerKey, type ListenerAttachment } from './gateway-routes.ts';
import { compareHostnameSpecificity, hostnameMatches, hostOfAuthority } from './hostnames.ts';
import type { CompiledRoute, MeshModel, MeshService } from './model.ts';
import { buildMeshModel } from './translate.ts';
import { buildEndpoints, type Endpoint } from './endpoints.ts';
import { routeTable, type PortRouting } from './port-routing.ts';
import { plan, type PlanRequest, type Random, type RequestPlan } from './request-plan.ts';

export { GATEWAY_CONTROLLER_NAME } from './controller-name.ts';
export type { SecretRef } from './gateway-listeners.ts';

/** The routes one listener serves for one effective hostname (route hostname ∩ listener hostname). */
export interface GatewayHostRouting {
  /** undefined: any host (neither the listener nor the routes restrict it); may be a wildcard. */
  hostname: string | undefined;
  /** The mesh routing table for these routes; `port` is the listener port, `service` a stand-in. */
  routing: PortRouting;
}

export interface GatewayListenerView {
  name: string;
  port: number;
  protocol: 'HTTP' | 'HTTPS';
  /** Listener hostname (may be a wildcard "*.example.com"); undefined matches every host. */
  hostname: string | undefined;
  /** HTTPS only: the certificate Secrets this listener may use (resolved, ReferenceGrant-checked). */
  certificates: readonly SecretRef[];
  /** HTTPS client-certificate validation (spec.tls.frontend in v1.6.1): CA ConfigMap refs, if any. */
  clientValidation: { caCertificates: readonly SecretRef[]; mode: string } | undefined;
  /** Most specific hostname first; planGatewayRequest tries them in this order. */
  hosts: readonly GatewayHostRouting[];
}

export interface GatewayPortView {
  port: number;
  protocol: 'HTTP' | 'HTTPS';
  /** Most specific hostname first (undefined hostname last). */
  listeners: readonly GatewayListenerView[];
}

/** Everything one gateway's proxies need. Immutable; replaced whole. */
export interface GatewayView {
  namespace: string;
  name: string;
  trustDomain: string;
  /** Only served listeners (Accepted, not Conflicted, HTTPS with a usable certificate), by port. */
  ports: ReadonlyMap<number, GatewayPortView>;
  /** Services, and the routes this gateway serves (compiled with its ReferenceGrant checks). */
  model: MeshModel;
  /** Endpoints per Service port, keyed by `namespace/name:port` (same shape as ProxyView.endpoints). */
  endpoints: ReadonlyMap<string, readonly Endpoint[]>;
  /** Increases with every view built in this process. */
  version: number;
}

let versions = 0;

/** Groups a listener's routes by effective hostname, most specific first, one mesh routing table each. */
function hostRoutings(
  stand: MeshService,
  port: number,
  attachments: readonly ListenerAttachment[],
): GatewayHostRouting[] {
  const byHost = new Map<string | undefined, CompiledRoute[]>();
  for (const a of attachments) {
    for (const h of a.hostnames) byHost.set(h, [...(byHost.get(h) ?? []), a.route]);
  }
  return [...byHost.keys()]
    .sort(compareHostnameSpecificity)
    .map((hostname) => ({ hostname, routing: routeTable(stand, port, 'gateway', byHost.get(hostname)!) }));
}

/**
 * The view of Gateway `namespace/name`, or undefined when it does not exist or is not of a GatewayClass with
 * our controllerName. Only served listeners appear (Accepted, not Conflicted, HTTPS with a certificate);
 * a Gateway that is not Accepted has none.
 */
export function buildGatewayView(
  objects: readonly K8sObject[],
  namespace: string,
  name: string,
  trustDomain: string,
): GatewayView | undefined {
  objects = objects.filter(isShaped);
  const world = readGatewayWorld(objects);
  const gateway = world.gateways.get(objectKey(namespace, name));
  if (!gateway) return undefined;
  const mesh = buildMeshModel(objects);
  const attached = attachGatewayRoutes(objects, world, mesh.services);
  const servedRoutes = new Set<CompiledRoute>();
  const ports = new Map<
    number,
    { port: number; protocol: 'HTTP' | 'HTTPS'; listeners: GatewayListenerView[] }
  >();
  const accepted = gateway.conditions[0]?.status === 'True';
  for (const l of gateway.listeners) {
    if (!accepted || !l.served) continue;
    const protocol = l.protocol as 'HTTP' | 'HTTPS';
    // The routing tables want a Service; the gateway stands in (redirects keep the listener port).
    const stand: MeshService = {
      namespace,
      name,
      clusterIPs: [],
      ports: [{ name: l.name, port: l.port, targetPort: l.port, protocol: 'TCP', appProtocol: undefined }],
    };
    const attachments = attached.byListener.get(listenerKey(gateway, l)) ?? [];
    for (const a of attachments) servedRoutes.add(a.route);
    const entry = ports.get(l.port) ?? { port: l.port, protocol, listeners: [] };
    entry.listeners.push({
      name: l.name,
      port: l.port,
      protocol,
      hostname: l.hostname,
      certificates: l.certificates,
      clientValidation: l.clientValidation,
      hosts: hostRoutings(stand, l.port, attachments),
    });
    ports.set(l.port, entry);
  }
  for (const p of ports.values())
    p.listeners.sort((a, b) => compareHostnameSpecificity(a.hostname, b.hostname));
  const model: MeshModel = { ...mesh, routes: [...servedRoutes], attached: new Map() };
  return {
    namespace,
    name,
    trustDomain,
    ports,
    model,
    endpoints: buildEndpoints(objects, mesh.services, trustDomain),
    version: ++versions,
  };
}

/**
 * The listener of `port` whose hostname matches `serverName` (SNI or Host without port) best: exact, then
 * the most specific wildcard, then one without hostname. The proxy uses it to pick certificates by SNI.
 */
export function selectListener(
  view: GatewayView,
  port: number,
  serverName: string | undefined,
): GatewayListenerView | undefined {
  const listeners = view.ports.get(port)?.listeners ?? [];
  if (serverName === undefined || serverName === '') return listeners.find((l) => l.hostname === undefined);
  const host = hostOfAuthority(serverName);
  return listeners.find((l) => hostnameMatches(l.hostname, host));
}

function notFound(req: PlanRequest, reason: string): RequestPlan {
  return {
    kind: 'reply',
    status: 404,
    cause: 'no_route',
    reason,
    message: `${reason} (${req.method} ${req.path})`,
    location: undefined,
    entry: undefined,
  };
}

/**
 * Listener chosen by port + Host (most specific listener hostname wins; listener isolation: only its routes),
 * then the route hostnames on it from the most specific, each planned by the mesh's plan(): the first that
 * matches a rule wins. No listener or no rule → 404 plan.
 */
export function planGatewayRequest(
  view: GatewayView,
  port: number,
  req: PlanRequest,
  random: Random,
): RequestPlan {
  const host = hostOfAuthority(req.authority);
  const listener = selectListener(view, port, host === '' ? undefined : host);
  if (!listener) return notFound(req, `no listener on port ${port} for host ${host || '(none)'}`);
  let last: RequestPlan | undefined;
  for (const h of listener.hosts) {
    if (h.hostname !== undefined && !hostnameMatches(h.hostname, host)) continue;
    const p = plan(h.routing, req, random);
    // A local 404 means no rule of these routes matched: a less specific hostname may still have one.
    if (p.kind === 'reply' && p.cause === 'no_route') {
      last = p;
      continue;
    }
    return p;
  }
  return last ?? notFound(req, 'no route rule matches the request');
}
