// Gateway API objects → what one gateway's proxies serve. Pure (apart from the version counter, as in
// proxy-view.ts). Routes attached to a Gateway are compiled by compile-route.ts and planned by
// request-plan.ts, the same code the mesh uses: see docs/adr/0009-gateways-reuse-the-mesh-model.md.
import type { K8sObject } from './k8s-objects.ts';
import type { SecretRef } from './gateway-listeners.ts';
import type { MeshModel } from './model.ts';
import type { Endpoint } from './endpoints.ts';
import type { PortRouting } from './port-routing.ts';
import type { PlanRequest, Random, RequestPlan } from './request-plan.ts';

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
  /** HTTPS client-certificate validation (tls.frontendValidation in v1.6.1): CA ConfigMap refs, if any. */
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
  /** Only valid (Accepted, not Conflicted, refs resolved) listeners, grouped by port. */
  ports: ReadonlyMap<number, GatewayPortView>;
  /** Services and compiled routes (every route in the objects, as in the mesh). */
  model: MeshModel;
  /** Endpoints per Service port, keyed by `namespace/name:port` (same shape as ProxyView.endpoints). */
  endpoints: ReadonlyMap<string, readonly Endpoint[]>;
  /** Increases with every view built in this process. */
  version: number;
}

/**
 * The view of Gateway `namespace/name`, or undefined when it does not exist, is not of a GatewayClass with
 * our controllerName, or is not Accepted.
 */
export function buildGatewayView(
  _objects: readonly K8sObject[],
  _namespace: string,
  _name: string,
  _trustDomain: string,
): GatewayView | undefined {
  throw new Error('not implemented');
}

/**
 * Listener chosen by port + Host (most specific listener hostname wins), then the same route engine and
 * request plan as the mesh (mesh-model/request-plan.ts): one code path. No listener/route → 404 plan.
 */
export function planGatewayRequest(
  _view: GatewayView,
  _port: number,
  _req: PlanRequest,
  _random: Random,
): RequestPlan {
  throw new Error('not implemented');
}

/**
 * The listener of `port` whose hostname matches `serverName` (SNI or Host without port) best: exact, then
 * the longest wildcard, then one without hostname. The proxy uses it to pick certificates by SNI.
 */
export function selectListener(
  _view: GatewayView,
  _port: number,
  _serverName: string | undefined,
): GatewayListenerView | undefined {
  throw new Error('not implemented');
}
