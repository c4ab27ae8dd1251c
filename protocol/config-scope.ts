// What the controller streams to sidecars (ADR 0005): Kubernetes objects stripped to the fields the mesh model
// reads, and which namespaces' scopes each one belongs to. Pure.
//
// The field lists below mirror what mesh-model/ reads (services.ts, endpoints.ts, compile-route.ts); when the
// model starts reading another field, it must be kept here too. The unit tests build the same ProxyView
// from stripped and unstripped objects to catch a drift.
import { isObject, type K8sObject } from '../mesh-model/k8s-objects.ts';
import { isMeshConfig } from '../mesh-model/mesh-config.ts';
import { readinessGateTypes, STATUS_ANNOTATION } from '../mesh-model/endpoints.ts';

export const STREAMED_KINDS: ReadonlySet<string> = new Set([
  'Service',
  'EndpointSlice',
  'Pod',
  'HTTPRoute',
  'GRPCRoute',
  'ConfigMap', // only the mesh-wide settings object (mesh-model/mesh-config.ts)
]);

/**
 * The scopes an object belongs to: every namespace's (Services, EndpointSlices, Pods, producer routes), one
 * namespace's (a route that is only a consumer route), or none (a route without Service parents).
 */
export type ObjectScope =
  | { readonly type: 'all' }
  | { readonly type: 'namespace'; readonly namespace: string }
  | { readonly type: 'none' };

export const ALL_SCOPES: ObjectScope = { type: 'all' };
export const NO_SCOPE: ObjectScope = { type: 'none' };

const SERVICE_PORT_FIELDS = ['name', 'port', 'targetPort', 'protocol', 'appProtocol'] as const;
const SLICE_PORT_FIELDS = ['name', 'port'] as const;
const CONDITION_FIELDS = ['ready', 'serving', 'terminating'] as const;
const TARGET_REF_FIELDS = ['kind', 'name', 'namespace'] as const;
const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/** Copies the listed fields that are set (undefined ones are left out, as JSON would). */
function pick(source: Record<string, unknown>, fields: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of fields) if (source[f] !== undefined) out[f] = source[f];
  return out;
}

/** Entries the model skips (non-objects) are dropped only where the model drops them without a warning. */
function pickEach(list: unknown, fields: readonly string[], keepOthers: boolean): unknown[] | undefined {
  if (!Array.isArray(list)) return undefined;
  const out: unknown[] = [];
  for (const item of list) {
    if (isObject(item)) out.push(pick(item, fields));
    else if (keepOthers) out.push(item);
  }
  return out;
}

/**
 * metav1.Time as the API server writes it (RFC 3339, seconds). Objects that went through a typed client
 * (client-node's list calls, in tools and tests) carry Date objects instead; route precedence compares
 * these as text, so both must end up in the same form.
 */
export function normalizeTimestamp(value: unknown): unknown {
  if (value instanceof Date) {
    return Number.isNaN(value.getTime()) ? undefined : value.toISOString().replace(/\.000Z$/, 'Z');
  }
  return value;
}

function withoutUndefined(obj: Record<string, unknown>): Record<string, unknown> {
  for (const k of Object.keys(obj)) if (obj[k] === undefined) delete obj[k];
  return obj;
}

/**
 * The minimal object the model needs, or undefined for kinds the sidecar does not read and objects without
 * a name (the API server never sends those). The namespace defaults to "default", as in the model.
 */
export function stripObject(input: unknown): K8sObject | undefined {
  if (!isObject(input)) return undefined;
  const kind = input.kind;
  if (typeof kind !== 'string' || !STREAMED_KINDS.has(kind)) return undefined;
  const meta = isObject(input.metadata) ? input.metadata : {};
  const name = meta.name;
  const namespace = meta.namespace ?? 'default';
  if (typeof name !== 'string' || name === '' || typeof namespace !== 'string' || namespace === '') {
    return undefined;
  }
  if (input.apiVersion !== undefined && typeof input.apiVersion !== 'string') return undefined;
  const base = { apiVersion: input.apiVersion, kind };
  const spec = isObject(input.spec) ? input.spec : undefined;
  switch (kind) {
    case 'ConfigMap':
      if (!isMeshConfig({ kind, metadata: { name, namespace } })) return undefined;
      return {
        ...base,
        metadata: { name, namespace },
        data: isObject(input.data) ? input.data : {},
      } as K8sObject;
    case 'Service':
      return withoutUndefined({
        ...base,
        metadata: { name, namespace },
        spec: spec
          ? withoutUndefined({
              clusterIP: spec.clusterIP,
              clusterIPs: spec.clusterIPs,
              ports: pickEach(spec.ports, SERVICE_PORT_FIELDS, true),
            })
          : undefined,
      });
    case 'EndpointSlice': {
      const labels = isObject(meta.labels) ? meta.labels : {};
      const serviceName = labels[SERVICE_NAME_LABEL];
      const endpoints = Array.isArray(input.endpoints) ? input.endpoints.filter(isObject) : [];
      return withoutUndefined({
        ...base,
        metadata: withoutUndefined({
          name,
          namespace,
          labels: serviceName === undefined ? undefined : { [SERVICE_NAME_LABEL]: serviceName },
        }),
        ports: pickEach(input.ports, SLICE_PORT_FIELDS, false) ?? [],
        endpoints: endpoints.map((ep) =>
          withoutUndefined({
            addresses: Array.isArray(ep.addresses) ? ep.addresses.filter((a) => typeof a === 'string') : [],
            conditions: isObject(ep.conditions) ? pick(ep.conditions, CONDITION_FIELDS) : undefined,
            targetRef: isObject(ep.targetRef) ? pick(ep.targetRef, TARGET_REF_FIELDS) : undefined,
          }),
        ),
      });
    }
    case 'Pod': {
      // Only what tells an injected Pod (mesh-model isInjectedPod): the injector's marker, container names;
      // and the kubelet's verdict (endpoints.ts isKubeletReady): its readiness gates' types, and the status
      // (no timestamps) of ContainersReady and of those gates' conditions.
      const names = (list: unknown): Record<string, unknown>[] | undefined =>
        Array.isArray(list) ? list.filter(isObject).map((c) => pick(c, ['name'])) : undefined;
      const annotations = isObject(meta.annotations) ? meta.annotations : {};
      const status = annotations[STATUS_ANNOTATION];
      const gates = readinessGateTypes(spec ?? {});
      const kept = new Set(['ContainersReady', ...gates]);
      const podStatus = isObject(input.status) ? input.status : {};
      const conditions = Array.isArray(podStatus.conditions)
        ? podStatus.conditions
            .filter((c) => isObject(c) && kept.has(String(c.type)))
            .map((c) => pick(c as Record<string, unknown>, ['type', 'status']))
        : [];
      return withoutUndefined({
        ...base,
        metadata: withoutUndefined({
          name,
          namespace,
          annotations: typeof status === 'string' ? { [STATUS_ANNOTATION]: status } : undefined,
        }),
        spec: withoutUndefined({
          serviceAccountName: spec?.serviceAccountName,
          initContainers: names(spec?.initContainers),
          containers: names(spec?.containers) ?? [],
          readinessGates: gates.length > 0 ? gates.map((conditionType) => ({ conditionType })) : undefined,
        }),
        status: conditions.length > 0 ? { conditions } : undefined,
      });
    }
    default:
      // HTTPRoute, GRPCRoute: the model reads almost all of spec, so it is kept as written.
      return withoutUndefined({
        ...base,
        metadata: withoutUndefined({
          name,
          namespace,
          generation: meta.generation,
          creationTimestamp: normalizeTimestamp(meta.creationTimestamp),
        }),
        spec: input.spec,
      });
  }
}

/** `kind/namespace/name`; the key of a streamed object in frames and on both sides' maps. */
export function resourceKey(obj: K8sObject): string {
  return `${obj.kind ?? ''}/${obj.metadata?.namespace ?? 'default'}/${obj.metadata?.name ?? ''}`;
}

/**
 * Scope of a (stripped) object. A route's Service parents decide it exactly as mesh-model/compile-route.ts
 * attaches them and port-routing.ts classifies them: a parent in the route's own namespace makes it a
 * producer route (seen from every namespace); a parent elsewhere makes it a consumer route, seen only from
 * the route's namespace. A route with both kinds of parents is a producer route for some Services, so every
 * scope gets it.
 */
export function objectScope(obj: K8sObject): ObjectScope {
  if (obj.kind === 'ConfigMap') return isMeshConfig(obj) ? ALL_SCOPES : NO_SCOPE;
  if (obj.kind !== 'HTTPRoute' && obj.kind !== 'GRPCRoute') {
    return obj.kind !== undefined && STREAMED_KINDS.has(obj.kind) ? ALL_SCOPES : NO_SCOPE;
  }
  const namespace = obj.metadata?.namespace ?? 'default';
  const spec = isObject(obj.spec) ? obj.spec : {};
  const parents = Array.isArray(spec.parentRefs) ? spec.parentRefs : [];
  let consumer = false;
  for (const ref of parents) {
    if (!isObject(ref) || ref.kind !== 'Service') continue;
    const group = ref.group;
    if (group !== undefined && group !== '' && group !== 'core') continue;
    const parentNamespace =
      typeof ref.namespace === 'string' && ref.namespace !== '' ? ref.namespace : namespace;
    if (parentNamespace === namespace) return ALL_SCOPES;
    consumer = true;
  }
  return consumer ? { type: 'namespace', namespace } : NO_SCOPE;
}

export function scopeIncludes(scope: ObjectScope, namespace: string): boolean {
  return scope.type === 'all' || (scope.type === 'namespace' && scope.namespace === namespace);
}

/** Whether the sidecars of `namespace` receive `obj` (a stripped object). */
export function inScope(obj: K8sObject, namespace: string): boolean {
  return scopeIncludes(objectScope(obj), namespace);
}
