// The mesh model: what translation produces from Kubernetes objects, and what every consumer reads
// (controller, sidecar, `sluice route explain`). Pure data; compiled once, read on every request.
import type { RE2JS } from 're2js';

export type RouteKind = 'HTTPRoute' | 'GRPCRoute';
/** producer/consumer: GAMMA routes on a Service; gateway: routes on a Gateway listener. */
export type RouteType = 'producer' | 'consumer' | 'gateway';

export interface ServicePortInfo {
  name: string | undefined;
  port: number;
  targetPort: number | string;
  protocol: string;
  appProtocol: string | undefined;
}

export interface MeshService {
  namespace: string;
  name: string;
  clusterIPs: string[];
  ports: ServicePortInfo[];
}

/** A condition-shaped problem with a route; the controller turns these into status conditions. */
export interface RouteProblem {
  type: 'Accepted' | 'ResolvedRefs' | 'PartiallyInvalid';
  reason: string;
  message: string;
  /** Index into spec.parentRefs when the problem concerns one parent. */
  parentIndex?: number;
}

export interface HeaderEdit {
  /** Header names are lowercased at compile time. */
  set: readonly (readonly [string, string])[];
  add: readonly (readonly [string, string])[];
  remove: readonly string[];
}

export interface PathModifier {
  type: 'ReplaceFullPath' | 'ReplacePrefixMatch';
  value: string;
}

export interface Redirect {
  scheme: string | undefined;
  hostname: string | undefined;
  port: number | undefined;
  path: PathModifier | undefined;
  statusCode: number;
}

export interface Rewrite {
  hostname: string | undefined;
  path: PathModifier | undefined;
}

export interface BackendTarget {
  namespace: string;
  name: string;
  port: number;
  weight: number;
  /** Set when the reference cannot be used: requests routed here get a 500. */
  invalid: string | undefined;
  requestHeaders: HeaderEdit | undefined;
  responseHeaders: HeaderEdit | undefined;
}

export interface Mirror {
  backend: BackendTarget;
  /** Share of requests mirrored, 0..1. */
  fraction: number;
}

export interface RetryPolicy {
  attempts: number | undefined;
  backoffMs: number | undefined;
  codes: readonly number[];
}

export interface CompiledRule {
  route: CompiledRoute;
  index: number;
  name: string | undefined;
  requestHeaders: HeaderEdit | undefined;
  responseHeaders: HeaderEdit | undefined;
  redirect: Redirect | undefined;
  rewrite: Rewrite | undefined;
  mirrors: readonly Mirror[];
  backends: readonly BackendTarget[];
  /** Running sums of backend weights, for a weighted pick with one random number. */
  cumulativeWeights: readonly number[];
  totalWeight: number;
  /** Milliseconds; 0 disables the timeout; undefined means the proxy default. */
  requestTimeoutMs: number | undefined;
  backendRequestTimeoutMs: number | undefined;
  retry: RetryPolicy | undefined;
  /** A rule that cannot be served as written answers every request with a 500 and this reason. */
  fails: string | undefined;
}

export interface StringMatcher {
  name: string;
  exact: string | undefined;
  regex: RE2JS | undefined;
}

export interface HttpMatch {
  kind: 'HTTPRoute';
  pathType: 'Exact' | 'PathPrefix' | 'RegularExpression';
  /** PathPrefix values are stored without a trailing slash ("/" stays "/"). */
  path: string;
  pathRegex: RE2JS | undefined;
  method: string | undefined;
  headers: readonly StringMatcher[];
  query: readonly StringMatcher[];
}

export interface GrpcMatch {
  kind: 'GRPCRoute';
  service: string | undefined;
  method: string | undefined;
  regex: RE2JS | undefined;
  headers: readonly StringMatcher[];
}

export interface MatchEntry {
  rule: CompiledRule;
  match: HttpMatch | GrpcMatch;
  matchIndex: number;
}

export interface ParentAttachment {
  parentIndex: number;
  service: MeshService;
  /** Service ports this parentRef attaches to. */
  ports: readonly number[];
}

export interface CompiledRoute {
  kind: RouteKind;
  namespace: string;
  name: string;
  generation: number;
  creationTimestamp: string;
  rules: readonly CompiledRule[];
  /** Every rule's matches, already defaulted (a rule without matches matches everything). */
  entries: readonly MatchEntry[];
  /** The Service parentRefs this route attached to (Gateway parents belong to the gateway translation). */
  attachments: readonly ParentAttachment[];
  /** Condition-shaped problems, for `route explain` warnings now and route status later. */
  problems: RouteProblem[];
}

export interface MeshModel {
  services: ReadonlyMap<string, MeshService>;
  servicesByIp: ReadonlyMap<string, MeshService>;
  routes: readonly CompiledRoute[];
  /** Routes attached to each Service port, keyed by `namespace/name:port`. */
  attached: ReadonlyMap<string, readonly CompiledRoute[]>;
  /** Objects that could not be read at all (no name, wrong shape). */
  warnings: readonly string[];
}

export function servicePortKey(namespace: string, name: string, port: number): string {
  return `${namespace}/${name}:${port}`;
}
