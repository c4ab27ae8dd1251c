// Generated Kubernetes objects for fuzzing the route engine: Services, EndpointSlices, HTTPRoutes and
// GRPCRoutes with random matches, filters, weights and timeouts, often plausible and sometimes junk (wrong
// types, nulls, huge numbers, control characters, hostile regexes), as a user's manifests or a confused
// controller could hand them over.
import type { K8sObject } from '../../../mesh-model/k8s-objects.ts';
import type { PlanRequest } from '../../../mesh-model/request-plan.ts';
import type { Prng } from './prng.ts';

export const NAMESPACES = ['shop', 'web', 'other'];
const SERVICES = ['svc', 'v1', 'v2', 'reviews', 'ghost'];
const PORTS = [80, 8080, 9080, 0, -1, 65536, 443];
const HEADER_NAMES = [
  'x-tester',
  'Host',
  'host',
  ':authority',
  'x-sluice-peer-identity',
  'bad name',
  'a\r\nb',
  '',
];
const SEGMENTS = ['', 'api', 'v1', 'admin', '..', '.', '%2e', '%2F', 'a b', '\u0000', 'ü', '*', '?q=1', '#f'];

/** Something of any type: what a field may hold when the input is junk. */
export function junk(r: Prng, depth = 0): unknown {
  switch (r.int(0, 11)) {
    case 0:
      return null;
    case 1:
      return undefined;
    case 2:
      return r.pick([0, -1, Infinity, Number.NaN, 2 ** 53, 0.5, 1e6, -0]);
    case 3:
      return r.pick([true, false]);
    case 4:
      return r.string(r.int(0, 12), 'ab/.*?[](){}\\^$|\r\n\0\t %');
    case 5:
      return depth > 2 ? [] : Array.from({ length: r.int(0, 3) }, () => junk(r, depth + 1));
    case 6:
      return depth > 2
        ? {}
        : { type: junk(r, depth + 1), value: junk(r, depth + 1), name: junk(r, depth + 1) };
    case 7:
      return 'x'.repeat(r.int(1000, 5000));
    case 8:
      return r.pick(['(a+)+$', '(?i)abc', '[', '\\', '.*'.repeat(50), '\\p{L}+', '(?P<n>a)', 'a{1000}']);
    default:
      return r.pick(['Exact', 'PathPrefix', 'RegularExpression', 'RequestHeaderModifier', '/', 'GET', '']);
  }
}

// 'typed': junk keeps the JSON type a field should have (hostile strings and numbers, not nulls), as input
// that passed the CRDs' schema validation would; 'any': junk of any type, as files on disk can hold.
let junkKind: 'typed' | 'any' = 'any';

/** A hostile value of the same JSON type as `good`. */
function mutate(r: Prng, good: unknown): unknown {
  if (typeof good === 'string') {
    return r.pick([
      '',
      '\u0000',
      'a\r\nb: c',
      'x'.repeat(r.int(300, 3000)),
      '(a+)+$',
      '[',
      '..',
      '%00',
      'é',
      ' ',
    ]);
  }
  if (typeof good === 'number') return r.pick([0, -1, Infinity, 2 ** 53, 0.5, 65536, -0, 1e6]);
  if (typeof good === 'boolean') return !good;
  if (Array.isArray(good)) return r.chance(0.5) ? [] : (good as unknown[]).concat(good as unknown[]);
  if (typeof good === 'object' && good !== null) {
    const keys = Object.keys(good);
    if (keys.length === 0) return good;
    const key = r.pick(keys);
    return { ...good, [key]: mutate(r, (good as Record<string, unknown>)[key]) };
  }
  return good;
}

/** Usually `good()`, sometimes junk. */
function maybe(r: Prng, junkRate: number, good: () => unknown): unknown {
  if (!r.chance(junkRate)) return good();
  return junkKind === 'typed' ? mutate(r, good()) : junk(r);
}

function path(r: Prng): string {
  const n = r.int(0, 4);
  let p = '';
  for (let i = 0; i < n; i++) p += '/' + r.pick(SEGMENTS);
  return r.chance(0.9) ? p || '/' : p;
}

function stringMatch(r: Prng, j: number): unknown {
  return maybe(r, j, () => ({
    type: r.pick(['Exact', 'RegularExpression', 'Prefix', undefined]),
    name: r.pick(HEADER_NAMES),
    value: r.pick(['true', 'v2', '^a.*$', '(', '', 'a\nb', 'x'.repeat(300)]),
  }));
}

function headerModifier(r: Prng, j: number): unknown {
  const pair = (): unknown =>
    maybe(r, j, () => ({
      name: r.pick(HEADER_NAMES),
      value: r.pick(['v', '', 'a\u0001b', 'é', 'x'.repeat(100)]),
    }));
  return maybe(r, j, () => ({
    ...(r.chance(0.6) ? { set: Array.from({ length: r.int(0, 3) }, pair) } : {}),
    ...(r.chance(0.5) ? { add: Array.from({ length: r.int(0, 3) }, pair) } : {}),
    ...(r.chance(0.4)
      ? { remove: Array.from({ length: r.int(0, 2) }, () => maybe(r, j, () => r.pick(HEADER_NAMES))) }
      : {}),
  }));
}

function pathModifier(r: Prng, j: number): unknown {
  return maybe(r, j, () => ({
    type: r.pick(['ReplaceFullPath', 'ReplacePrefixMatch', 'Other']),
    ...(r.chance(0.6) ? { replaceFullPath: maybe(r, j, () => path(r)) } : {}),
    ...(r.chance(0.6) ? { replacePrefixMatch: maybe(r, j, () => path(r)) } : {}),
  }));
}

function backendRef(r: Prng, j: number): unknown {
  return maybe(r, j, () => ({
    ...(r.chance(0.1) ? { group: r.pick(['', 'apps', 'gateway.networking.k8s.io']) } : {}),
    ...(r.chance(0.1) ? { kind: r.pick(['Service', 'Pod', '']) } : {}),
    ...(r.chance(0.2) ? { namespace: r.pick(NAMESPACES) } : {}),
    name: maybe(r, j, () => r.pick(SERVICES)),
    port: maybe(r, j, () => r.pick(PORTS)),
    ...(r.chance(0.7) ? { weight: maybe(r, j, () => r.pick([0, 1, 10, 50, 90, 100, 1000000, -5])) } : {}),
    ...(r.chance(0.2) ? { filters: Array.from({ length: r.int(0, 2) }, () => filter(r, j)) } : {}),
  }));
}

function filter(r: Prng, j: number): unknown {
  const type = r.pick([
    'RequestHeaderModifier',
    'ResponseHeaderModifier',
    'RequestRedirect',
    'URLRewrite',
    'RequestMirror',
    'ExtensionRef',
    'CORS',
    'Junk',
  ]);
  return maybe(r, j, () => ({
    type,
    requestHeaderModifier: headerModifier(r, j),
    ...(r.chance(0.5) ? { responseHeaderModifier: headerModifier(r, j) } : {}),
    ...(type === 'RequestRedirect' || r.chance(0.1)
      ? {
          requestRedirect: maybe(r, j, () => ({
            ...(r.chance(0.4) ? { scheme: r.pick(['http', 'https', 'ftp', '']) } : {}),
            ...(r.chance(0.4) ? { hostname: r.pick(['b.example', '', 'a b', 'x'.repeat(300)]) } : {}),
            ...(r.chance(0.4) ? { path: pathModifier(r, j) } : {}),
            ...(r.chance(0.3) ? { port: r.pick(PORTS) } : {}),
            ...(r.chance(0.3) ? { statusCode: r.pick([301, 302, 303, 307, 308, 200, 999]) } : {}),
          })),
        }
      : {}),
    ...(type === 'URLRewrite' || r.chance(0.1)
      ? {
          urlRewrite: maybe(r, j, () => ({
            ...(r.chance(0.5) ? { hostname: r.pick(['up.example', '', 'bad host']) } : {}),
            ...(r.chance(0.7) ? { path: pathModifier(r, j) } : {}),
          })),
        }
      : {}),
    ...(type === 'RequestMirror' || r.chance(0.1)
      ? {
          requestMirror: maybe(r, j, () => ({
            backendRef: backendRef(r, j),
            ...(r.chance(0.4) ? { percent: r.pick([0, 50, 100, 101, -1]) } : {}),
            ...(r.chance(0.3)
              ? { fraction: { numerator: r.pick([0, 1, 5, -1]), denominator: r.pick([0, 1, 10, 100]) } }
              : {}),
          })),
        }
      : {}),
  }));
}

function httpMatch(r: Prng, j: number): unknown {
  return maybe(r, j, () => ({
    ...(r.chance(0.8)
      ? {
          path: maybe(r, j, () => ({
            type: r.pick(['Exact', 'PathPrefix', 'RegularExpression', 'Other']),
            value: r.chance(0.2) ? r.pick(['^/a.*', '(', '/(a+)+$', '/[0-9]{2,}']) : path(r),
          })),
        }
      : {}),
    ...(r.chance(0.3) ? { method: r.pick(['GET', 'POST', 'get', 'M-SEARCH', '', 'PATCH']) } : {}),
    ...(r.chance(0.3) ? { headers: Array.from({ length: r.int(0, 3) }, () => stringMatch(r, j)) } : {}),
    ...(r.chance(0.2) ? { queryParams: Array.from({ length: r.int(0, 2) }, () => stringMatch(r, j)) } : {}),
  }));
}

function grpcMatch(r: Prng, j: number): unknown {
  return maybe(r, j, () => ({
    ...(r.chance(0.8)
      ? {
          method: maybe(r, j, () => ({
            type: r.pick(['Exact', 'RegularExpression', 'Other']),
            ...(r.chance(0.7) ? { service: r.pick(['helloworld.Greeter', 'a.B', '(', '', 'x/y']) } : {}),
            ...(r.chance(0.6) ? { method: r.pick(['SayHello', 'Say.*', '', '/']) } : {}),
          })),
        }
      : {}),
    ...(r.chance(0.3) ? { headers: Array.from({ length: r.int(0, 3) }, () => stringMatch(r, j)) } : {}),
  }));
}

function rule(r: Prng, grpc: boolean, j: number): unknown {
  return maybe(r, j, () => ({
    ...(r.chance(0.2) ? { name: r.pick(['a', '', 'x'.repeat(300)]) } : {}),
    ...(r.chance(0.8)
      ? { matches: Array.from({ length: r.int(0, 3) }, () => (grpc ? grpcMatch(r, j) : httpMatch(r, j))) }
      : {}),
    ...(r.chance(0.5) ? { filters: Array.from({ length: r.int(0, 3) }, () => filter(r, j)) } : {}),
    ...(r.chance(0.85) ? { backendRefs: Array.from({ length: r.int(0, 4) }, () => backendRef(r, j)) } : {}),
    ...(r.chance(0.2)
      ? {
          timeouts: maybe(r, j, () => ({
            request: r.pick(['1s', '0s', '10ms', '1h', 'x', '-1s', '99999999h']),
            backendRequest: r.pick(['500ms', '2s', '']),
          })),
        }
      : {}),
    ...(r.chance(0.15)
      ? {
          retry: maybe(r, j, () => ({
            codes: maybe(r, j, () => [500, 503, r.pick([0, 999, 404])]),
            attempts: r.pick([0, 1, 3, 1000, -1]),
            backoff: r.pick(['100ms', '1s', 'x']),
          })),
        }
      : {}),
  }));
}

function parentRef(r: Prng, j: number): unknown {
  return maybe(r, j, () => ({
    group: r.pick(['', '', 'gateway.networking.k8s.io', 'core']),
    kind: r.pick(['Service', 'Service', 'Gateway', undefined]),
    name: r.pick(SERVICES),
    ...(r.chance(0.3) ? { namespace: r.pick(NAMESPACES) } : {}),
    ...(r.chance(0.3) ? { port: r.pick(PORTS) } : {}),
    ...(r.chance(0.1) ? { sectionName: r.pick(['http', 'grpc', '']) } : {}),
  }));
}

export function routeObject(r: Prng, index: number, junkRate: number): K8sObject {
  const grpc = r.chance(0.3);
  return {
    apiVersion: r.chance(0.95)
      ? 'gateway.networking.k8s.io/v1'
      : r.pick(['v1', 'gateway.networking.k8s.io/v9', '']),
    kind: grpc ? 'GRPCRoute' : 'HTTPRoute',
    metadata: maybe(r, junkRate / 4, () => ({
      name: `r${index}`,
      namespace: r.pick(NAMESPACES),
      ...(r.chance(0.3) ? { creationTimestamp: r.pick(['2026-01-01T00:00:00Z', 'yesterday']) } : {}),
    })),
    spec: maybe(r, junkRate / 4, () => ({
      parentRefs: maybe(r, junkRate / 2, () =>
        Array.from({ length: r.int(0, 3) }, () => parentRef(r, junkRate)),
      ),
      ...(r.chance(0.2) ? { hostnames: maybe(r, junkRate, () => ['svc', '*.example']) } : {}),
      rules: maybe(r, junkRate / 2, () => Array.from({ length: r.int(0, 5) }, () => rule(r, grpc, junkRate))),
    })),
  } as K8sObject;
}

export function serviceObjects(r: Prng, junkRate: number): K8sObject[] {
  const out: K8sObject[] = [];
  let ip = 10;
  for (const namespace of NAMESPACES) {
    for (const name of SERVICES.slice(0, 4)) {
      if (r.chance(0.25)) continue;
      const ports = Array.from({ length: r.int(1, 3) }, () =>
        maybe(r, junkRate / 2, () => ({
          port: r.pick([80, 8080, 9080]),
          ...(r.chance(0.5) ? { name: r.pick(['http', 'grpc', 'h2c', 'tcp', 'http-web', '']) } : {}),
          ...(r.chance(0.3)
            ? { appProtocol: r.pick(['http', 'kubernetes.io/h2c', 'grpc', 'tcp', 'x']) }
            : {}),
          ...(r.chance(0.2) ? { protocol: r.pick(['TCP', 'UDP', 'SCTP']) } : {}),
          ...(r.chance(0.3) ? { targetPort: r.pick([9080, 'http', 0]) } : {}),
        })),
      );
      out.push({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { namespace, name },
        spec: maybe(r, junkRate / 4, () => ({
          clusterIP: r.chance(0.9) ? `10.96.0.${ip++}` : r.pick(['None', '', 'fd00::1', 'junk']),
          ports,
        })),
      });
      if (r.chance(0.7)) {
        out.push({
          apiVersion: 'discovery.k8s.io/v1',
          kind: 'EndpointSlice',
          metadata: { namespace, name: `${name}-1`, labels: { 'kubernetes.io/service-name': name } },
          ...(maybe(r, junkRate / 2, () => ({
            addressType: r.pick(['IPv4', 'IPv6', 'FQDN']),
            ports: [{ port: r.pick([9080, 8080]), ...(r.chance(0.5) ? { name: 'http' } : {}) }],
            endpoints: Array.from({ length: r.int(0, 3) }, (_, k) =>
              maybe(r, junkRate, () => ({
                addresses: [`10.248.0.${k + 2}`],
                conditions: { ready: r.chance(0.8) },
                ...(r.chance(0.5) ? { targetRef: { kind: 'Pod', name: `p${k}`, namespace } } : {}),
              })),
            ),
          })) as object),
        });
      }
    }
  }
  return out;
}

/** One mesh: Services with endpoints, routes, and now and then an object of another or no kind. */
export function meshObjects(r: Prng, junkRate: number, kind: 'typed' | 'any' = 'typed'): K8sObject[] {
  junkKind = kind;
  const objects = serviceObjects(r, junkRate);
  const routes = r.int(0, 8);
  for (let i = 0; i < routes; i++) objects.push(routeObject(r, i, junkRate));
  // Top-level items are objects by contract (io/ and the informers never hand over anything else).
  if (kind === 'any' && r.chance(junkRate)) {
    objects.push({ apiVersion: junk(r), kind: junk(r), spec: junk(r) } as K8sObject);
  }
  if (r.chance(junkRate))
    objects.push({ apiVersion: 'v1', kind: 'Pod', metadata: mutate(r, { name: 'p' }) } as K8sObject);
  return objects;
}

/** A request as the sidecar hands it to plan(): parsed, but with whatever the client sent. */
export function planRequest(r: Prng): PlanRequest {
  const p = path(r) || '/';
  const query = r.chance(0.3) ? r.pick(['a=1', 'q=%00', '', 'x=1&x=2']) : '';
  const authority = r.pick(['svc', 'svc:80', 'reviews.shop.svc.cluster.local', '', 'a b', '[::1]:80']);
  const headers: Record<string, string | string[]> = { host: authority };
  if (r.chance(0.3)) headers['x-tester'] = r.pick(['true', 'false', '']);
  if (r.chance(0.2)) headers['content-type'] = 'application/grpc';
  if (r.chance(0.1)) headers['x-multi'] = ['a', 'b'];
  return {
    method: r.pick(['GET', 'POST', 'PUT', 'DELETE', 'M-SEARCH', 'CONNECT', 'get']),
    path: r.chance(0.2) ? `/${r.pick(['helloworld.Greeter', 'a.B'])}/${r.pick(['SayHello', 'X'])}` : p,
    query,
    ...(r.chance(0.5) ? { target: query ? `${p}?${query}` : p } : {}),
    scheme: 'http',
    authority,
    headers,
  };
}
