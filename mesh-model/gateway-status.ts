// Statuses of GatewayClasses, Gateways and routes with Gateway parents, computed as data (Gateway API
// v1.6.1). Pure: conditions carry no lastTransitionTime or observedGeneration; the controller adds them
// when it writes. Programmed and status.addresses are the controller's (they depend on running pods).
import type { K8sObject } from './k8s-objects.ts';

export type ConditionStatus = 'True' | 'False' | 'Unknown';

export interface Condition {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
}

export interface RouteGroupKind {
  group: string;
  kind: string;
}

/** Gateway status.listeners[] without Programmed (the controller adds it). */
export interface ListenerStatus {
  name: string;
  supportedKinds: RouteGroupKind[];
  attachedRoutes: number;
  conditions: Condition[];
}

/** The parentRef of a route status entry, echoed as written in spec (only the fields the schema has). */
export interface StatusParentRef {
  group?: string;
  kind?: string;
  namespace?: string;
  name: string;
  sectionName?: string;
  port?: number;
}

export interface RouteParentStatus {
  parentRef: StatusParentRef;
  controllerName: string;
  conditions: Condition[];
}

export interface GatewayStatuses {
  /** Keyed by GatewayClass name; only classes with our controllerName. */
  gatewayClasses: Map<string, Condition[]>;
  /** Keyed by `namespace/name`; Accepted (and ResolvedRefs-style listener conditions), NOT Programmed. */
  gateways: Map<string, { conditions: Condition[]; listeners: ListenerStatus[] }>;
  /** Keyed by `Kind/namespace/name`; only entries for Gateway parents of our class, in parentRefs order. */
  routeParents: Map<string, RouteParentStatus[]>;
}

export function computeGatewayStatuses(_objects: readonly K8sObject[]): GatewayStatuses {
  throw new Error('not implemented');
}

/**
 * GatewayClass status.supportedFeatures names (sorted, as the CRD requires): what the gateway translation
 * and the gateway proxy implement. The controller writes them as `{ name }` objects.
 */
export const GATEWAY_SUPPORTED_FEATURES: readonly string[] = [
  'GRPCRoute',
  'Gateway',
  'GatewayFrontendClientCertificateValidation',
  'GatewayHTTPListenerIsolation',
  'GatewayInfrastructurePropagation',
  'GatewayPort8080',
  'HTTPRoute',
  'HTTPRoute303RedirectStatusCode',
  'HTTPRoute307RedirectStatusCode',
  'HTTPRoute308RedirectStatusCode',
  'HTTPRouteBackendRequestHeaderModification',
  'HTTPRouteBackendTimeout',
  'HTTPRouteHostRewrite',
  'HTTPRouteMethodMatching',
  'HTTPRouteNamedRouteRule',
  'HTTPRouteParentRefPort',
  'HTTPRoutePathRedirect',
  'HTTPRoutePathRewrite',
  'HTTPRoutePortRedirect',
  'HTTPRouteQueryParamMatching',
  'HTTPRouteRequestMirror',
  'HTTPRouteRequestMultipleMirrors',
  'HTTPRouteRequestPercentageMirror',
  'HTTPRouteRequestTimeout',
  'HTTPRouteResponseHeaderModification',
  'HTTPRouteSchemeRedirect',
  'ReferenceGrant',
];
