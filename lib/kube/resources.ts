// The resource types the controller watches, and their collection paths on the API server.
// Gateway API versions are the ones the v1.6.1 CRDs serve: everything at v1 except ReferenceGrant, which
// we read at v1beta1 because that is its storage version and the only version older releases serve.

export interface ResourceType {
  /** API group; '' for the core group. */
  readonly group: string;
  readonly version: string;
  /** The lower-case plural used in URLs. */
  readonly plural: string;
  readonly kind: string;
  readonly namespaced: boolean;
}

const GATEWAY = 'gateway.networking.k8s.io';

export const RESOURCES = {
  namespaces: { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false },
  services: { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true },
  pods: { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true },
  configMaps: { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true },
  secrets: { group: '', version: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true },
  endpointSlices: {
    group: 'discovery.k8s.io',
    version: 'v1',
    plural: 'endpointslices',
    kind: 'EndpointSlice',
    namespaced: true,
  },
  httpRoutes: { group: GATEWAY, version: 'v1', plural: 'httproutes', kind: 'HTTPRoute', namespaced: true },
  grpcRoutes: { group: GATEWAY, version: 'v1', plural: 'grpcroutes', kind: 'GRPCRoute', namespaced: true },
  gateways: { group: GATEWAY, version: 'v1', plural: 'gateways', kind: 'Gateway', namespaced: true },
  gatewayClasses: {
    group: GATEWAY,
    version: 'v1',
    plural: 'gatewayclasses',
    kind: 'GatewayClass',
    namespaced: false,
  },
  referenceGrants: {
    group: GATEWAY,
    version: 'v1beta1',
    plural: 'referencegrants',
    kind: 'ReferenceGrant',
    namespaced: true,
  },
} as const satisfies Record<string, ResourceType>;

/** `v1` for the core group, `group/version` otherwise (the apiVersion field of the objects). */
export function apiVersionOf(resource: ResourceType): string {
  return resource.group === '' ? resource.version : `${resource.group}/${resource.version}`;
}

/**
 * The collection URL path: all namespaces when `namespace` is undefined. Asking for a namespace of a
 * cluster-scoped type is a programming error and throws.
 */
export function collectionPath(resource: ResourceType, namespace?: string): string {
  if (namespace !== undefined && !resource.namespaced) {
    throw new Error(`${resource.plural} are cluster-scoped: they cannot be listed in namespace ${namespace}`);
  }
  const base =
    resource.group === '' ? `/api/${resource.version}` : `/apis/${resource.group}/${resource.version}`;
  const scope = namespace === undefined ? '' : `/namespaces/${encodeURIComponent(namespace)}`;
  return `${base}${scope}/${resource.plural}`;
}

/** "services", "services in ns", "httproutes.gateway.networking.k8s.io" — for log lines. */
export function describeResource(resource: ResourceType, namespace?: string): string {
  const name = resource.group === '' ? resource.plural : `${resource.plural}.${resource.group}`;
  return namespace === undefined ? name : `${name} in ${namespace}`;
}
