// Minimal shapes of the Kubernetes objects the mesh reads. Everything is optional because input comes from
// users (files on disk, the API server) and is validated during translation, never trusted.

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface K8sObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
  spec?: unknown;
  status?: unknown;
}

export interface ServiceSpecPort {
  name?: string;
  port?: number;
  targetPort?: number | string;
  protocol?: string;
  appProtocol?: string;
}

export interface ServiceSpec {
  clusterIP?: string;
  clusterIPs?: string[];
  ports?: ServiceSpecPort[];
  selector?: Record<string, string>;
  type?: string;
}

export interface ParentReference {
  group?: string;
  kind?: string;
  namespace?: string;
  name?: string;
  sectionName?: string;
  port?: number;
}

export interface BackendRef {
  group?: string;
  kind?: string;
  namespace?: string;
  name?: string;
  port?: number;
  weight?: number;
  filters?: RouteFilter[];
}

export interface HeaderModifierSpec {
  set?: { name?: string; value?: string }[];
  add?: { name?: string; value?: string }[];
  remove?: string[];
}

export interface PathModifierSpec {
  type?: string;
  replaceFullPath?: string;
  replacePrefixMatch?: string;
}

export interface RouteFilter {
  type?: string;
  requestHeaderModifier?: HeaderModifierSpec;
  responseHeaderModifier?: HeaderModifierSpec;
  requestRedirect?: {
    scheme?: string;
    hostname?: string;
    path?: PathModifierSpec;
    port?: number;
    statusCode?: number;
  };
  urlRewrite?: { hostname?: string; path?: PathModifierSpec };
  requestMirror?: {
    backendRef?: BackendRef;
    percent?: number;
    fraction?: { numerator?: number; denominator?: number };
  };
  extensionRef?: unknown;
  cors?: unknown;
  externalAuth?: unknown;
}

export interface StringMatchSpec {
  type?: string;
  name?: string;
  value?: string;
}

export interface HttpRouteMatchSpec {
  path?: { type?: string; value?: string };
  headers?: StringMatchSpec[];
  queryParams?: StringMatchSpec[];
  method?: string;
}

export interface GrpcRouteMatchSpec {
  method?: { type?: string; service?: string; method?: string };
  headers?: StringMatchSpec[];
}

export interface RouteRuleSpec {
  name?: string;
  matches?: (HttpRouteMatchSpec & GrpcRouteMatchSpec)[];
  filters?: RouteFilter[];
  backendRefs?: BackendRef[];
  timeouts?: { request?: string; backendRequest?: string };
  retry?: { codes?: number[]; attempts?: number; backoff?: string };
}

export interface RouteSpec {
  parentRefs?: ParentReference[];
  hostnames?: string[];
  rules?: RouteRuleSpec[];
}

export const GATEWAY_GROUP = 'gateway.networking.k8s.io';

/** An object of the Gateway API group (any version); apiVersion is untrusted input. */
export function isGatewayApiObject(obj: K8sObject): boolean {
  const apiVersion: unknown = obj.apiVersion;
  return typeof apiVersion === 'string' && apiVersion.startsWith(`${GATEWAY_GROUP}/`);
}

export function objectKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

export { isRecord as isObject } from '../lib/is-record.ts';

/** Like isObject, but keeps the declared shape of a value that is typed yet untrusted. */
export function isShaped<T extends object>(value: T | null | undefined): value is T {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
