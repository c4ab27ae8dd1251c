// Routes with Gateway parents: which listeners each parentRef attaches to (sectionName, port, allowedRoutes,
// hostname intersection, the HTTPRoute/GRPCRoute hostname rule) and the route parent conditions that follow.
// Routes are compiled by compile-route.ts with the gateway's ReferenceGrant check on backendRefs.
import {
  GATEWAY_GROUP,
  isGatewayApiObject,
  isObject,
  isShaped,
  objectKey,
  type K8sObject,
  type ParentReference,
  type RouteSpec,
} from './k8s-objects.ts';
import type { CompiledRoute, MeshService } from './model.ts';
import { compileRoute } from './compile-route.ts';
import { effectiveHostnames, hostnamesOverlap } from './hostnames.ts';
import { labelsMatch } from './label-selector.ts';
import type { GatewayInfo, GatewayWorld, ListenerInfo } from './gateway-listeners.ts';
import type { Condition, StatusParentRef } from './gateway-status.ts';

/** One route attached to one listener, with the hostnames it serves there (undefined: any host). */
export interface ListenerAttachment {
  route: CompiledRoute;
  hostnames: (string | undefined)[];
}

export interface GatewayParentResult {
  parentIndex: number;
  parentRef: StatusParentRef;
  gateway: GatewayInfo;
  conditions: Condition[];
}

export interface GatewayRoutes {
  /** Compiled routes (with the gateway's ReferenceGrant policy), keyed `Kind/namespace/name`. */
  routes: Map<string, CompiledRoute>;
  /** Attachments per listener, keyed `namespace/gateway/listener`, oldest route first. */
  byListener: Map<string, ListenerAttachment[]>;
  /** Route parent results for Gateway parents of our classes, keyed `Kind/namespace/name`. */
  parents: Map<string, GatewayParentResult[]>;
}

export function listenerKey(gateway: GatewayInfo, listener: ListenerInfo): string {
  return `${gateway.namespace}/${gateway.name}/${listener.name}`;
}

export function routeKey(kind: string, namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`;
}

function cond(type: string, ok: boolean, reason: string, message: string): Condition {
  return { type, status: ok ? 'True' : 'False', reason, message };
}

/**
 * The parentRef as written in spec (only the fields the status schema has); undefined without a name, as
 * the API rejects a status entry without one. Both controllers' route statuses echo parentRefs this way.
 */
export function echoParentRef(ref: {
  readonly [field in keyof ParentReference]?: unknown;
}): StatusParentRef | undefined {
  if (typeof ref.name !== 'string' || ref.name === '') return undefined;
  // In the schema's order, as written to the API and printed in golden files.
  const out: Partial<StatusParentRef> = {};
  if (typeof ref.group === 'string') out.group = ref.group;
  if (typeof ref.kind === 'string') out.kind = ref.kind;
  if (typeof ref.namespace === 'string') out.namespace = ref.namespace;
  out.name = ref.name;
  if (typeof ref.sectionName === 'string') out.sectionName = ref.sectionName;
  if (typeof ref.port === 'number') out.port = ref.port;
  return out as StatusParentRef;
}

function namespaceAllowed(
  world: GatewayWorld,
  gateway: GatewayInfo,
  listener: ListenerInfo,
  ns: string,
): boolean {
  if (listener.from === 'All') return true;
  if (listener.from === 'Same') return ns === gateway.namespace;
  return labelsMatch(listener.selector, world.namespaceLabels.get(ns) ?? {});
}

interface Candidate {
  route: CompiledRoute;
  parentIndex: number;
  gateway: GatewayInfo;
  listener: ListenerInfo;
  hostnames: (string | undefined)[];
}

interface PendingParent {
  route: CompiledRoute;
  parentIndex: number;
  parentRef: StatusParentRef;
  gateway: GatewayInfo;
  /** Why nothing attached, when nothing did before the kind rule; undefined when candidates exist. */
  failure: Condition | undefined;
  candidates: Candidate[];
}

function byAge(a: CompiledRoute, b: CompiledRoute): number {
  const ta = a.creationTimestamp || '\uffff';
  const tb = b.creationTimestamp || '\uffff';
  if (ta !== tb) return ta < tb ? -1 : 1;
  const na = `${a.namespace}/${a.name}`;
  const nb = `${b.namespace}/${b.name}`;
  return na < nb ? -1 : na > nb ? 1 : 0;
}

/** Matches one Gateway parentRef against the gateway's listeners. */
function matchParent(
  world: GatewayWorld,
  route: CompiledRoute,
  routeHostnames: string[],
  ref: Record<string, unknown>,
  parentIndex: number,
  gateway: GatewayInfo,
): PendingParent {
  const pending: PendingParent = {
    route,
    parentIndex,
    // The gateway was found by this ref's name, so it has one.
    parentRef: echoParentRef(ref)!,
    gateway,
    failure: undefined,
    candidates: [],
  };
  const sectionName = typeof ref.sectionName === 'string' ? ref.sectionName : undefined;
  const port = typeof ref.port === 'number' ? ref.port : undefined;
  const selected = gateway.listeners.filter(
    (l) => (sectionName === undefined || l.name === sectionName) && (port === undefined || l.port === port),
  );
  const where = [sectionName && `sectionName ${sectionName}`, port && `port ${port}`]
    .filter(Boolean)
    .join(' and ');
  if (selected.length === 0) {
    pending.failure = cond(
      'Accepted',
      false,
      'NoMatchingParent',
      `Gateway ${objectKey(gateway.namespace, gateway.name)} has no listener with ${where}`,
    );
    return pending;
  }
  const notAllowed: string[] = [];
  const noHost: string[] = [];
  for (const listener of selected) {
    if (!listener.supportedKinds.some((k) => k.kind === route.kind)) {
      notAllowed.push(`listener ${listener.name} does not allow ${route.kind}`);
      continue;
    }
    if (!namespaceAllowed(world, gateway, listener, route.namespace)) {
      notAllowed.push(`listener ${listener.name} does not allow routes from namespace ${route.namespace}`);
      continue;
    }
    const hostnames = effectiveHostnames(listener.hostname, routeHostnames);
    if (hostnames.length === 0) {
      noHost.push(`listener ${listener.name} hostname ${listener.hostname ?? ''}`);
      continue;
    }
    pending.candidates.push({ route, parentIndex, gateway, listener, hostnames });
  }
  if (pending.candidates.length === 0) {
    pending.failure =
      noHost.length > 0
        ? cond(
            'Accepted',
            false,
            'NoMatchingListenerHostname',
            `no route hostname intersects ${noHost.join(', ')}`,
          )
        : cond('Accepted', false, 'NotAllowedByListeners', notAllowed.join('; '));
  }
  return pending;
}

function routeHostnamesOf(spec: RouteSpec): string[] {
  return (Array.isArray(spec.hostnames) ? spec.hostnames : [])
    .filter((h): h is string => typeof h === 'string' && h !== '')
    .map((h) => h.toLowerCase());
}

/** Conditions of one accepted or rejected parent, after the route-wide problems of the compiled route. */
function parentConditions(route: CompiledRoute, accepted: Condition): Condition[] {
  const problems = route.problems.filter((p) => p.parentIndex === undefined);
  const invalid = problems.find((p) => p.type === 'Accepted');
  const first =
    accepted.status === 'True' && invalid
      ? cond('Accepted', false, invalid.reason, invalid.message)
      : accepted;
  const unresolved = problems.filter((p) => p.type === 'ResolvedRefs');
  const conditions = [
    first,
    unresolved.length > 0
      ? cond('ResolvedRefs', false, unresolved[0]!.reason, unresolved.map((p) => p.message).join('; '))
      : cond('ResolvedRefs', true, 'ResolvedRefs', 'all references resolved'),
  ];
  const partial = problems.find((p) => p.type === 'PartiallyInvalid');
  if (partial && first.status === 'True')
    conditions.push(cond('PartiallyInvalid', true, partial.reason, partial.message));
  return conditions;
}

/**
 * Every HTTPRoute and GRPCRoute with parentRefs to Gateways of our classes: compiled once, matched to
 * listeners, then per listener the spec's rule for HTTPRoute next to GRPCRoute: when their hostnames
 * overlap only the older route (then the first by namespace/name) is accepted there.
 */
export function attachGatewayRoutes(
  objects: readonly K8sObject[],
  world: GatewayWorld,
  services: ReadonlyMap<string, MeshService>,
): GatewayRoutes {
  const routes = new Map<string, CompiledRoute>();
  const pending: PendingParent[] = [];
  for (const obj of objects) {
    const kind = obj.kind;
    if ((kind !== 'HTTPRoute' && kind !== 'GRPCRoute') || !isGatewayApiObject(obj)) continue;
    const spec = (isObject(obj.spec) ? obj.spec : {}) as RouteSpec;
    const rawNamespace: unknown = obj.metadata?.namespace;
    const namespace = typeof rawNamespace === 'string' && rawNamespace !== '' ? rawNamespace : 'default';
    const parents = (Array.isArray(spec.parentRefs) ? spec.parentRefs : []).map((ref, index) => {
      if (!isShaped(ref) || typeof ref.name !== 'string' || ref.name === '') return undefined;
      if ((ref.group ?? GATEWAY_GROUP) !== GATEWAY_GROUP || (ref.kind ?? 'Gateway') !== 'Gateway')
        return undefined;
      const gateway = world.gateways.get(objectKey(ref.namespace ?? namespace, ref.name));
      return gateway ? { ref: ref as Record<string, unknown>, index, gateway } : undefined;
    });
    if (!parents.some(Boolean)) continue;
    let compiled: CompiledRoute | string;
    try {
      compiled = compileRoute(obj, kind, services, (ns, name) =>
        world.grants.permits(
          { group: GATEWAY_GROUP, kind, namespace },
          { group: '', kind: 'Service', namespace: ns, name },
        ),
      );
    } catch {
      continue; // malformed beyond what the API server admits; buildMeshModel reports it
    }
    if (typeof compiled === 'string') continue;
    routes.set(routeKey(kind, namespace, compiled.name), compiled);
    const hostnames = routeHostnamesOf(spec);
    for (const p of parents) {
      if (p) pending.push(matchParent(world, compiled, hostnames, p.ref, p.index, p.gateway));
    }
  }

  // The HTTPRoute/GRPCRoute rule, per listener, oldest route first; routes without valid rules never attach.
  const byListener = new Map<string, ListenerAttachment[]>();
  const kept = new Map<PendingParent, Candidate[]>();
  const conflicts = new Map<PendingParent, string[]>();
  const all = pending
    .filter((p) => p.route.rules.length > 0)
    .flatMap((p) => p.candidates.map((c) => ({ p, c })))
    .sort((a, b) => byAge(a.c.route, b.c.route) || a.c.parentIndex - b.c.parentIndex);
  for (const { p, c } of all) {
    const key = listenerKey(c.gateway, c.listener);
    const list = byListener.get(key) ?? [];
    const rival = list.find(
      (a) => a.route.kind !== c.route.kind && hostnamesOverlap(a.hostnames, c.hostnames),
    );
    if (rival) {
      conflicts.set(p, [
        ...(conflicts.get(p) ?? []),
        `listener ${c.listener.name} already serves ${rival.route.kind} ${rival.route.namespace}/${rival.route.name} for an overlapping hostname`,
      ]);
      continue;
    }
    const same = list.find((a) => a.route === c.route);
    if (same) same.hostnames = [...new Set([...same.hostnames, ...c.hostnames])];
    else list.push({ route: c.route, hostnames: c.hostnames });
    byListener.set(key, list);
    kept.set(p, [...(kept.get(p) ?? []), c]);
  }

  const parents = new Map<string, GatewayParentResult[]>();
  for (const p of pending) {
    const attached = kept.get(p) ?? [];
    let accepted: Condition;
    if (p.failure) accepted = p.failure;
    else if (attached.length > 0 || p.route.rules.length === 0)
      accepted = cond(
        'Accepted',
        true,
        'Accepted',
        `attached to listener${attached.length === 1 ? '' : 's'} ${[...new Set(attached.map((c) => c.listener.name))].join(', ')}`,
      );
    else accepted = cond('Accepted', false, 'NotAllowedByListeners', (conflicts.get(p) ?? []).join('; '));
    const key = routeKey(p.route.kind, p.route.namespace, p.route.name);
    const list = parents.get(key) ?? [];
    list.push({
      parentIndex: p.parentIndex,
      parentRef: p.parentRef,
      gateway: p.gateway,
      conditions: parentConditions(p.route, accepted),
    });
    parents.set(key, list);
  }
  return { routes, byListener, parents };
}
