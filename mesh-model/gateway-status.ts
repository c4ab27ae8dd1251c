// Statuses of GatewayClasses, Gateways and routes with Gateway parents, computed as data (Gateway API
// v1.6.1). Pure: conditions carry no lastTransitionTime or observedGeneration; the controller adds them
// when it writes. Programmed and status.addresses are the controller's (they depend on running pods).
import { isShaped, type K8sObject } from './k8s-objects.ts';
import { GATEWAY_CONTROLLER_NAME } from './controller-name.ts';
import { readGatewayWorld } from './gateway-listeners.ts';
import { attachGatewayRoutes, listenerKey } from './gateway-routes.ts';
import { readServices } from './translate.ts';

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

/**
 * Every status the Gateway API asks of our controller, as data. GatewayClass SupportedVersion reads the
 * bundle-version annotation of the Gateway API CustomResourceDefinitions among `objects` (metadata is
 * enough); Secrets and ConfigMaps may also be metadata only (their content is checked when present);
 * Namespaces (with labels) are needed for allowedRoutes Selector.
 */
export function computeGatewayStatuses(input: readonly K8sObject[]): GatewayStatuses {
  const objects = input.filter(isShaped);
  const world = readGatewayWorld(objects);
  const { services } = readServices(objects);
  const attached = attachGatewayRoutes(objects, world, services);
  const gateways: GatewayStatuses['gateways'] = new Map();
  for (const [key, g] of world.gateways) {
    const listeners: ListenerStatus[] = g.listeners.map((l) => {
      const routes = new Set((attached.byListener.get(listenerKey(g, l)) ?? []).map((a) => a.route));
      return {
        name: l.name,
        supportedKinds: l.supportedKinds.map((k) => ({ ...k })),
        attachedRoutes: routes.size,
        conditions: l.conditions.map((c) => ({ ...c })),
      };
    });
    gateways.set(key, { conditions: g.conditions.map((c) => ({ ...c })), listeners });
  }
  const routeParents: GatewayStatuses['routeParents'] = new Map();
  for (const [key, results] of attached.parents) {
    routeParents.set(
      key,
      results
        .sort((a, b) => a.parentIndex - b.parentIndex)
        .map((r) => ({
          parentRef: r.parentRef,
          controllerName: GATEWAY_CONTROLLER_NAME,
          conditions: r.conditions,
        })),
    );
  }
  return { gatewayClasses: new Map(world.classes), gateways, routeParents };
}

/**
 * GatewayClass status.supportedFeatures names (sorted, as the CRD requires): what the gateway translation
 * and the gateway proxy implement, and exactly what `npm run conformance` declares to the upstream suite
 * for the gateway profiles (conformance/profiles.ts), every one passing there.
 */
export const GATEWAY_SUPPORTED_FEATURES: readonly string[] = [
  'GRPCRoute',
  'Gateway',
  'GatewayAddressEmpty',
  'GatewayFrontendClientCertificateValidation',
  'GatewayFrontendClientCertificateValidationInsecureFallback',
  'GatewayHTTPListenerIsolation',
  'GatewayHTTPSListenerDetectMisdirectedRequests',
  'GatewayInfrastructurePropagation',
  'GatewayPort8080',
  'HTTPRoute',
  'HTTPRoute303RedirectStatusCode',
  'HTTPRoute307RedirectStatusCode',
  'HTTPRoute308RedirectStatusCode',
  'HTTPRouteBackendProtocolH2C',
  'HTTPRouteBackendProtocolWebSocket',
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
