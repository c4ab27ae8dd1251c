import {
  isObject,
  isShaped,
  objectKey,
  type BackendRef,
  type K8sObject,
  type RouteSpec,
} from './k8s-objects.ts';
import type {
  BackendTarget,
  CompiledRoute,
  CompiledRule,
  GrpcMatch,
  HttpMatch,
  MatchEntry,
  MeshService,
  ParentAttachment,
  RetryPolicy,
  RouteKind,
  RouteProblem,
} from './model.ts';
import { compileFilters } from './compile-filters.ts';
import {
  compileGrpcMatch,
  compileHttpMatch,
  DEFAULT_GRPC_MATCH,
  DEFAULT_HTTP_MATCH,
} from './compile-matches.ts';
import { parseDuration } from './duration.ts';

const MAX_WEIGHT = 1_000_000;
/** The ResolvedRefs reason that starts an unusable reference's message ("rule N: REASON: ..."). */
const REF_REASON = /^rule \d+: (InvalidKind|RefNotPermitted|BackendNotFound):/;
const GATEWAY_GROUP = 'gateway.networking.k8s.io';
export const PARENT_GROUP_HINT =
  'parentRef without group defaults to gateway.networking.k8s.io; write group: "" for a Service';

function isCoreService(group: string | undefined, kind: string | undefined): boolean {
  return (group === undefined || group === '' || group === 'core') && (kind ?? 'Service') === 'Service';
}

/**
 * Whether a route may reference Service `namespace/name` in another namespace. The mesh allows every such
 * reference; a gateway passes its ReferenceGrant check (reference-grants.ts).
 */
export type CrossNamespacePolicy = (namespace: string, name: string) => boolean;

/** Resolves a backendRef against the known Services; `crossNamespace` undefined allows every namespace. */
export function resolveBackend(
  ref: BackendRef | undefined,
  routeNamespace: string,
  services: ReadonlyMap<string, MeshService>,
  crossNamespace?: CrossNamespacePolicy,
): BackendTarget {
  const namespace =
    typeof ref?.namespace === 'string' && ref.namespace !== '' ? ref.namespace : routeNamespace;
  const name = typeof ref?.name === 'string' ? ref.name : '';
  const port = Number.isInteger(ref?.port) ? ref!.port! : 0;
  const weight = ref?.weight ?? 1;
  const target: BackendTarget = {
    namespace,
    name,
    port,
    weight,
    invalid: undefined,
    requestHeaders: undefined,
    responseHeaders: undefined,
  };
  const label = `${objectKey(namespace, name)}:${port}`;
  if (!isCoreService(ref?.group, ref?.kind)) {
    target.invalid = `InvalidKind: backendRef ${ref?.group ?? ''}/${ref?.kind ?? ''} ${name} is not a core Service`;
  } else if (name === '') {
    target.invalid = 'BackendNotFound: backendRef without a name';
  } else if (namespace !== routeNamespace && crossNamespace && !crossNamespace(namespace, name)) {
    target.invalid = `RefNotPermitted: backendRef to Service ${objectKey(namespace, name)} is not allowed by a ReferenceGrant in namespace ${namespace}`;
  } else if (port < 1 || port > 65535) {
    target.invalid = `BackendNotFound: backendRef ${objectKey(namespace, name)} must have a port`;
  } else {
    const svc = services.get(objectKey(namespace, name));
    if (!svc) target.invalid = `BackendNotFound: Service ${objectKey(namespace, name)} not found`;
    else if (!svc.ports.some((p) => p.port === port)) {
      target.invalid = `BackendNotFound: Service ${objectKey(namespace, name)} has no port ${port} (${label})`;
    }
  }
  return target;
}

function compileRetry(spec: unknown): RetryPolicy | string | undefined {
  if (spec === undefined) return undefined;
  if (!isObject(spec)) return 'retry must be an object';
  const { attempts, backoff, codes } = spec;
  if (attempts !== undefined && (!Number.isInteger(attempts) || (attempts as number) < 0)) {
    return 'retry.attempts must be a non-negative integer';
  }
  let backoffMs: number | undefined;
  if (backoff !== undefined) {
    backoffMs = typeof backoff === 'string' ? parseDuration(backoff) : undefined;
    if (backoffMs === undefined) return `retry.backoff ${JSON.stringify(backoff)} is not a valid duration`;
  }
  const list = codes === undefined ? [] : codes;
  if (!Array.isArray(list) || !list.every((c) => Number.isInteger(c) && c >= 400 && c <= 599)) {
    return 'retry.codes must be HTTP status codes from 400 to 599';
  }
  return { attempts: attempts as number | undefined, backoffMs, codes: list as number[] };
}

function compileTimeout(value: unknown, field: string): number | string | undefined {
  if (value === undefined) return undefined;
  const ms = typeof value === 'string' ? parseDuration(value) : undefined;
  return ms ?? `timeouts.${field} ${JSON.stringify(value)} is not a valid duration`;
}

/** Resolves the parentRefs that name Services; Gateway parents are left to the gateway translation. */
function attachParents(
  spec: RouteSpec,
  namespace: string,
  services: ReadonlyMap<string, MeshService>,
  problems: RouteProblem[],
): ParentAttachment[] {
  const attachments: ParentAttachment[] = [];
  const parents = Array.isArray(spec.parentRefs) ? spec.parentRefs : [];
  parents.forEach((ref, parentIndex) => {
    if (!isShaped(ref)) return;
    // CRD defaults (v1.6.1): group gateway.networking.k8s.io, kind Gateway. Files read offline get the same
    // defaults the API server applies, so a Service parent without `group: ""` attaches nowhere.
    const group = ref.group ?? GATEWAY_GROUP;
    const kind = ref.kind ?? 'Gateway';
    if (kind === 'Service' && group === GATEWAY_GROUP) {
      problems.push({
        type: 'Accepted',
        reason: 'NoMatchingParent',
        message: `parentRef ${parentIndex} (Service ${typeof ref.name === 'string' ? ref.name : ''}): ${PARENT_GROUP_HINT}`,
        parentIndex,
      });
      return;
    }
    if (kind !== 'Service' || !isCoreService(group, kind)) return;
    const svcNs = typeof ref.namespace === 'string' && ref.namespace !== '' ? ref.namespace : namespace;
    const svcName = typeof ref.name === 'string' ? ref.name : '';
    const svc = services.get(objectKey(svcNs, svcName));
    const fail = (message: string): void => {
      problems.push({ type: 'Accepted', reason: 'NoMatchingParent', message, parentIndex });
    };
    if (!svc) return fail(`parent Service ${objectKey(svcNs, svcName)} not found`);
    let ports = svc.ports;
    if (ref.sectionName !== undefined) {
      ports = ports.filter((p) => p.name === ref.sectionName);
      if (ports.length === 0)
        return fail(`Service ${svc.namespace}/${svc.name} has no port named ${ref.sectionName}`);
    }
    if (ref.port !== undefined) {
      ports = ports.filter((p) => p.port === ref.port);
      if (ports.length === 0) return fail(`Service ${svc.namespace}/${svc.name} has no port ${ref.port}`);
    }
    if (ports.length === 0) return fail(`Service ${svc.namespace}/${svc.name} has no ports`);
    attachments.push({ parentIndex, service: svc, ports: ports.map((p) => p.port) });
  });
  return attachments;
}

/** Why every request to a rule gets a 500, when nothing can be forwarded; undefined otherwise. */
function failure(redirects: boolean, backends: readonly BackendTarget[]): string | undefined {
  if (redirects) return undefined;
  if (backends.length === 0) return 'rule has no backendRefs';
  if (backends.every((b) => b.weight === 0)) return 'every backendRef has weight 0';
  if (backends.every((b) => b.weight === 0 || b.invalid)) return 'no valid backendRef';
  return undefined;
}

function cumulative(backends: readonly BackendTarget[]): number[] {
  let sum = 0;
  return backends.map((b) => (sum += b.weight));
}

/**
 * Compiles one HTTPRoute or GRPCRoute: applies CRD defaults, validates what the API server would, drops
 * invalid rules (reported as PartiallyInvalid, or Accepted=False when no rule is left) and resolves refs.
 */
export function compileRoute(
  obj: K8sObject,
  kind: RouteKind,
  services: ReadonlyMap<string, MeshService>,
  crossNamespace?: CrossNamespacePolicy,
): CompiledRoute | string {
  const name = obj.metadata?.name;
  if (typeof name !== 'string' || name === '') return `${kind} without metadata.name ignored`;
  const namespace = obj.metadata?.namespace ?? 'default';
  const spec = (isObject(obj.spec) ? obj.spec : {}) as RouteSpec;
  const problems: RouteProblem[] = [];
  const route: CompiledRoute = {
    kind,
    namespace,
    name,
    generation: obj.metadata?.generation ?? 0,
    creationTimestamp: obj.metadata?.creationTimestamp ?? '',
    rules: [],
    entries: [],
    attachments: attachParents(spec, namespace, services, problems),
    problems,
  };
  const rules: CompiledRule[] = [];
  const entries: MatchEntry[] = [];
  const dropped: string[] = [];
  const unresolvedRefs: string[] = [];
  const specRules = Array.isArray(spec.rules) ? spec.rules : [];
  specRules.forEach((ruleSpec, index) => {
    const result = compileRule(route, ruleSpec, index, kind, services, crossNamespace);
    if (typeof result === 'string') {
      dropped.push(`rule ${index}: ${result}`);
      return;
    }
    rules.push(result.rule);
    entries.push(...result.entries);
    for (const b of [...result.rule.backends, ...result.rule.mirrors.map((m) => m.backend)]) {
      if (b.invalid) unresolvedRefs.push(`rule ${index}: ${b.invalid}`);
    }
    if (result.unresolvedFilter)
      unresolvedRefs.push(`rule ${index}: InvalidKind: ${result.unresolvedFilter}`);
  });
  route.rules = rules;
  route.entries = entries;
  if (specRules.length === 0) {
    problems.push({ type: 'Accepted', reason: 'UnsupportedValue', message: 'route has no rules' });
  } else if (rules.length === 0) {
    problems.push({
      type: 'Accepted',
      reason: 'UnsupportedValue',
      message: `all rules invalid: ${dropped.join('; ')}`,
    });
  } else if (dropped.length > 0) {
    problems.push({
      type: 'PartiallyInvalid',
      reason: 'UnsupportedValue',
      message: `Dropped Rule(s): ${dropped.join('; ')}`,
    });
  }
  for (const message of unresolvedRefs) {
    const reason = REF_REASON.exec(message)?.[1] ?? 'BackendNotFound';
    problems.push({ type: 'ResolvedRefs', reason, message });
  }
  return route;
}

function compileRule(
  route: CompiledRoute,
  spec: NonNullable<RouteSpec['rules']>[number],
  index: number,
  kind: RouteKind,
  services: ReadonlyMap<string, MeshService>,
  crossNamespace: CrossNamespacePolicy | undefined,
): { rule: CompiledRule; entries: MatchEntry[]; unresolvedFilter: string | undefined } | string {
  if (!isShaped(spec)) return 'rule must be an object';
  const resolve = (ref: BackendRef | undefined): BackendTarget =>
    resolveBackend(ref, route.namespace, services, crossNamespace);
  const filters = compileFilters(spec.filters, kind, resolve);
  if (typeof filters === 'string') return filters;

  const backends: BackendTarget[] = [];
  for (const ref of Array.isArray(spec.backendRefs) ? spec.backendRefs : []) {
    if (!isShaped(ref)) return 'backendRef must be an object';
    const weight = ref.weight ?? 1;
    if (!Number.isInteger(weight) || weight < 0 || weight > MAX_WEIGHT) {
      return `backendRef weight must be an integer from 0 to ${MAX_WEIGHT}`;
    }
    const target = resolve(ref);
    const own = compileFilters(ref.filters, kind, resolve);
    if (typeof own === 'string') return `backendRef ${target.name}: ${own}`;
    if (own.redirect || own.rewrite || own.mirrors.length > 0 || own.unresolved) {
      // Sluice applies only header modifiers per backend; the rest belongs on the rule.
      return `backendRef ${target.name}: only header modifier filters are supported on a backendRef`;
    }
    target.requestHeaders = own.requestHeaders;
    target.responseHeaders = own.responseHeaders;
    backends.push(target);
  }
  if (filters.redirect && backends.length > 0)
    return 'RequestRedirect filter must not be used together with backendRefs';

  const timeouts = isShaped(spec.timeouts) ? spec.timeouts : {};
  const requestTimeoutMs = compileTimeout(timeouts.request, 'request');
  if (typeof requestTimeoutMs === 'string') return requestTimeoutMs;
  const backendRequestTimeoutMs = compileTimeout(timeouts.backendRequest, 'backendRequest');
  if (typeof backendRequestTimeoutMs === 'string') return backendRequestTimeoutMs;
  if (
    requestTimeoutMs &&
    backendRequestTimeoutMs !== undefined &&
    backendRequestTimeoutMs > requestTimeoutMs
  ) {
    return 'backendRequest timeout cannot be longer than request timeout';
  }
  const retry = compileRetry(spec.retry);
  if (typeof retry === 'string') return retry;

  const matchSpecs = Array.isArray(spec.matches) && spec.matches.length > 0 ? spec.matches : undefined;
  const matches: (HttpMatch | GrpcMatch)[] = [];
  for (const m of matchSpecs ?? []) {
    if (!isShaped(m)) return 'match must be an object';
    const compiled = kind === 'HTTPRoute' ? compileHttpMatch(m) : compileGrpcMatch(m);
    if (typeof compiled === 'string') return compiled;
    matches.push(compiled);
  }
  if (matches.length === 0) matches.push(kind === 'HTTPRoute' ? DEFAULT_HTTP_MATCH : DEFAULT_GRPC_MATCH);

  const prefixModifiers = [filters.redirect?.path, filters.rewrite?.path].filter(
    (p) => p?.type === 'ReplacePrefixMatch',
  );
  if (prefixModifiers.length > 0) {
    const only = matches.length === 1 ? matches[0] : undefined;
    if (only?.kind !== 'HTTPRoute' || only.pathType !== 'PathPrefix') {
      return 'when using ReplacePrefixMatch, exactly one PathPrefix match must be specified';
    }
  }

  const rule: CompiledRule = {
    route,
    index,
    name: typeof spec.name === 'string' ? spec.name : undefined,
    requestHeaders: filters.requestHeaders,
    responseHeaders: filters.responseHeaders,
    redirect: filters.redirect,
    rewrite: filters.rewrite,
    mirrors: filters.mirrors,
    backends,
    cumulativeWeights: cumulative(backends),
    totalWeight: backends.reduce((sum, b) => sum + b.weight, 0),
    requestTimeoutMs,
    backendRequestTimeoutMs,
    retry,
    fails: filters.unresolved ?? failure(filters.redirect !== undefined, backends),
  };
  const entries = matches.map((match, matchIndex) => ({ rule, match, matchIndex }));
  return { rule, entries, unresolvedFilter: filters.unresolved };
}
