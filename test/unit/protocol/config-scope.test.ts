import assert from 'node:assert/strict';
import {
  inScope,
  normalizeTimestamp,
  objectScope,
  resourceKey,
  stripObject,
} from '../../../protocol/config-scope.ts';
import type { K8sObject } from '../../../mesh-model/k8s-objects.ts';
import { buildProxyView, type ProxyView } from '../../../mesh-model/proxy-view.ts';
import {
  INIT_CONTAINER,
  INJECTED,
  PROXY_CONTAINER,
  STATUS_ANNOTATION,
} from '../../../mesh-model/endpoints.ts';

const TD = 'cluster.local';
const NOISE = {
  annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"big":"blob"}' },
  managedFields: [{ manager: 'kubectl', operation: 'Update', fieldsV1: { 'f:spec': {} } }],
  resourceVersion: '12345',
  uid: '0b7c1a9e-0000-4000-8000-000000000001',
  labels: { app: 'x' },
};

function service(namespace: string, name: string, ip: string, ports: unknown[]): K8sObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace, ...NOISE },
    spec: {
      clusterIP: ip,
      clusterIPs: [ip],
      ports,
      selector: { app: name },
      type: 'ClusterIP',
      sessionAffinity: 'None',
      ipFamilies: ['IPv4'],
    },
    status: { loadBalancer: {} },
  };
}

function slice(namespace: string, service: string, pods: [string, string][], portName?: string): K8sObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: `${service}-abcde`,
      namespace,
      ...NOISE,
      labels: { 'kubernetes.io/service-name': service, 'endpointslice.kubernetes.io/managed-by': 'x' },
    },
    addressType: 'IPv4',
    ports: [{ name: portName ?? '', port: 8080, protocol: 'TCP', appProtocol: 'http' }, 'junk'],
    endpoints: [
      ...pods.map(([pod, ip], i) => ({
        addresses: [ip, 7],
        conditions: { ready: i !== 1, serving: true, terminating: false },
        nodeName: 'node-1',
        zone: 'z1',
        hints: { forZones: [{ name: 'z1' }] },
        targetRef: { kind: 'Pod', name: pod, namespace, uid: 'u', resourceVersion: '9' },
      })),
      null,
    ],
  } as K8sObject;
}

function pod(namespace: string, name: string, sa: string, meshed: boolean): K8sObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace,
      ...NOISE,
      annotations: {
        'kubectl.kubernetes.io/last-applied-configuration': '{}',
        ...(meshed ? { [STATUS_ANNOTATION]: INJECTED } : {}),
      },
    },
    spec: {
      serviceAccountName: sa,
      nodeName: 'node-1',
      ...(meshed ? { initContainers: [{ name: INIT_CONTAINER, image: 'sluice:1' }] } : {}),
      containers: [
        { name: 'app', image: 'app:1', env: [{ name: 'A', value: 'b' }] },
        ...(meshed ? [{ name: PROXY_CONTAINER, image: 'sluice:1' }] : []),
      ],
      volumes: [{ name: 'token' }],
    },
    status: { phase: 'Running', podIP: '10.0.0.1', conditions: [{ type: 'Ready', status: 'True' }] },
  };
}

function route(
  namespace: string,
  name: string,
  parentRefs: unknown[],
  backend: string,
  extra: Record<string, unknown> = {},
): K8sObject {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: {
      name,
      namespace,
      generation: 3,
      creationTimestamp: `2026-01-0${(name.length % 9) + 1}T00:00:00Z`,
      ...NOISE,
    },
    spec: {
      parentRefs,
      rules: [
        {
          matches: [{ path: { type: 'PathPrefix', value: `/${name}` } }],
          backendRefs: [{ name: backend, namespace: 'shop', port: 80 }],
        },
      ],
      ...extra,
    },
    status: { parents: [{ controllerName: 'sluice.dev/mesh', conditions: [] }] },
  };
}

const svcRef = (name: string, namespace?: string, extra: Record<string, unknown> = {}): unknown => ({
  group: '',
  kind: 'Service',
  name,
  ...(namespace ? { namespace } : {}),
  ...extra,
});

/** A small mesh with every kind of object and route the scope rules distinguish. */
function fixture(): K8sObject[] {
  return [
    service('shop', 'reviews', '10.96.0.10', [{ name: 'http', port: 80, targetPort: 8080 }, null]),
    service('shop', 'reviews-v2', '10.96.0.11', [{ name: 'http', port: 80, targetPort: 8080 }]),
    service('a', 'frontend', '10.96.0.20', [{ port: 80, targetPort: 'web', appProtocol: 'http' }]),
    slice(
      'shop',
      'reviews',
      [
        ['reviews-1', '10.0.1.1'],
        ['reviews-2', '10.0.1.2'],
      ],
      'http',
    ),
    slice('shop', 'reviews-v2', [['reviews-v2-1', '10.0.1.3']], 'http'),
    pod('shop', 'reviews-1', 'reviews', true),
    pod('shop', 'reviews-2', 'reviews', false),
    pod('shop', 'reviews-v2-1', 'reviews-v2', true),
    // producer route (parent in its own namespace, namespace left out)
    route('shop', 'producer', [svcRef('reviews')], 'reviews'),
    // consumer routes of namespaces a and b
    route('a', 'consumer-a', [svcRef('reviews', 'shop')], 'reviews-v2'),
    route('b', 'consumer-b', [svcRef('reviews', 'shop', { port: 80 })], 'reviews-v2'),
    // mixed parents: producer for a/frontend, consumer for shop/reviews
    route('a', 'mixed', [svcRef('reviews', 'shop'), svcRef('frontend', 'a')], 'reviews'),
    // Gateway parent only: not a mesh route
    route('shop', 'gateway-only', [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'gw' }], 'x'),
  ];
}

/** What a view decides, in plain data (compiled matchers and object identities left out). */
function summary(view: ProxyView): unknown {
  const routing = [...view.byDestination].map(([dest, r]) => ({
    dest,
    service: `${r.service.namespace}/${r.service.name}`,
    type: r.type,
    kind: r.kind,
    routes: r.routes.map((x) => `${x.namespace}/${x.name}`),
    ignored: r.ignored.map((i) => `${i.route.namespace}/${i.route.name}: ${i.reason}`),
    wildcard: r.wildcard.map((e) => `${e.rule.route.name}#${e.rule.index}.${e.matchIndex}`),
    segments: [...r.bySegment].map(([s, list]) => [
      s,
      list.map((e) => `${e.rule.route.name}#${e.rule.index}`),
    ]),
    backends: r.routes.flatMap((x) =>
      x.rules.flatMap((rule) => rule.backends.map((b) => [b.name, b.invalid])),
    ),
  }));
  return { routing, endpoints: [...view.endpoints], services: [...view.model.services.keys()] };
}

describe('config scope', () => {
  describe('stripObject', () => {
    it('keeps only what the model reads from a Service', () => {
      const s = stripObject(
        service('shop', 'reviews', '10.96.0.10', [{ name: 'http', port: 80, targetPort: 8080, nodePort: 1 }]),
      );
      assert.deepEqual(s, {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'reviews', namespace: 'shop' },
        spec: {
          clusterIP: '10.96.0.10',
          clusterIPs: ['10.96.0.10'],
          ports: [{ name: 'http', port: 80, targetPort: 8080 }],
        },
      });
    });

    it('keeps the service-name label, ports and endpoint addressing of an EndpointSlice', () => {
      const s = stripObject(slice('shop', 'reviews', [['reviews-1', '10.0.1.1']], 'http'));
      assert.deepEqual(s, {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: {
          name: 'reviews-abcde',
          namespace: 'shop',
          labels: { 'kubernetes.io/service-name': 'reviews' },
        },
        ports: [{ name: 'http', port: 8080 }],
        endpoints: [
          {
            addresses: ['10.0.1.1'],
            conditions: { ready: true, serving: true, terminating: false },
            targetRef: { kind: 'Pod', name: 'reviews-1', namespace: 'shop' },
          },
        ],
      });
    });

    it("shrinks a Pod to its name, the injector's marker, service account and container names", () => {
      assert.deepEqual(stripObject(pod('shop', 'reviews-1', 'reviews', true)), {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'reviews-1', namespace: 'shop', annotations: { [STATUS_ANNOTATION]: INJECTED } },
        spec: {
          serviceAccountName: 'reviews',
          initContainers: [{ name: INIT_CONTAINER }],
          containers: [{ name: 'app' }, { name: PROXY_CONTAINER }],
        },
      });
      assert.deepEqual(stripObject(pod('shop', 'reviews-2', 'reviews', false))!.metadata, {
        name: 'reviews-2',
        namespace: 'shop',
      });
    });

    it('keeps a route spec as written, without status and metadata noise', () => {
      const r = route('a', 'consumer-a', [svcRef('reviews', 'shop')], 'reviews-v2');
      const s = stripObject(r)!;
      assert.deepEqual(s.metadata, {
        name: 'consumer-a',
        namespace: 'a',
        generation: 3,
        creationTimestamp: r.metadata!.creationTimestamp,
      });
      assert.deepEqual(s.spec, r.spec);
      assert.equal(s.status, undefined);
    });

    it('writes Date timestamps (typed client lists) like the API server does', () => {
      const r = route('a', 'x', [], 'y');
      r.metadata!.creationTimestamp = new Date('2026-02-03T04:05:06Z') as unknown as string;
      assert.equal(stripObject(r)!.metadata!.creationTimestamp, '2026-02-03T04:05:06Z');
      assert.equal(normalizeTimestamp(new Date('2026-02-03T04:05:06.250Z')), '2026-02-03T04:05:06.250Z');
      assert.equal(normalizeTimestamp(new Date('nonsense')), undefined);
      assert.equal(normalizeTimestamp('2026-02-03T04:05:06Z'), '2026-02-03T04:05:06Z');
    });

    it('refuses what the sidecar cannot use, whatever the input', () => {
      for (const bad of [
        undefined,
        null,
        'Service',
        42,
        [],
        { kind: 'ConfigMap', metadata: { name: 'x' } },
        { kind: 'Service' },
        { kind: 'Service', metadata: { name: '' } },
        { kind: 'Service', metadata: { name: 'x', namespace: 7 } },
        { kind: 'Service', apiVersion: 1, metadata: { name: 'x' } },
        { kind: 3, metadata: { name: 'x' } },
      ]) {
        assert.equal(stripObject(bad), undefined, JSON.stringify(bad));
      }
    });

    it('defaults the namespace as the model does and survives odd field types', () => {
      const s = stripObject({ kind: 'Pod', metadata: { name: 'p' }, spec: { containers: 'no' } });
      assert.deepEqual(s, {
        kind: 'Pod',
        metadata: { name: 'p', namespace: 'default' },
        spec: { containers: [] },
      });
      assert.deepEqual(
        stripObject({ kind: 'EndpointSlice', metadata: { name: 's', labels: 'x' }, endpoints: 5 }),
        {
          kind: 'EndpointSlice',
          metadata: { name: 's', namespace: 'default' },
          ports: [],
          endpoints: [],
        },
      );
      assert.deepEqual(stripObject({ kind: 'Service', metadata: { name: 's' }, spec: 'x' }), {
        kind: 'Service',
        metadata: { name: 's', namespace: 'default' },
      });
    });

    it('builds the same view from stripped objects as from the originals, in every namespace', () => {
      const objects = fixture();
      const stripped = objects.map((o) => stripObject(o)).filter((o) => o !== undefined);
      assert.equal(stripped.length, objects.length);
      for (const ns of ['shop', 'a', 'b', 'other']) {
        const full = buildProxyView(objects, ns, TD);
        const small = buildProxyView(stripped, ns, TD);
        assert.deepEqual(summary(small), summary(full), ns);
        assert.deepEqual(small.model.warnings, full.model.warnings, ns);
        assert.deepEqual(
          small.model.routes.map((r) => [r.name, r.problems, r.generation, r.creationTimestamp]),
          full.model.routes.map((r) => [r.name, r.problems, r.generation, r.creationTimestamp]),
        );
      }
      // the fixture exercises what it should
      const a = summary(buildProxyView(objects, 'a', TD)) as { routing: { type: string }[] };
      assert.ok(a.routing.some((r) => r.type === 'consumer'));
      assert.ok(buildProxyView(objects, 'a', TD).model.warnings.length > 0);
    });
  });

  describe('resourceKey', () => {
    it('is kind/namespace/name', () => {
      assert.equal(resourceKey(stripObject(pod('shop', 'p1', 'sa', true))!), 'Pod/shop/p1');
      assert.equal(resourceKey({ kind: 'Service', metadata: { name: 's' } }), 'Service/default/s');
    });
  });

  describe('objectScope / inScope', () => {
    const scopeOf = (parentRefs: unknown[], namespace = 'a'): unknown =>
      objectScope(stripObject(route(namespace, 'r', parentRefs, 'reviews'))!);

    it('puts Services, EndpointSlices and Pods in every scope', () => {
      for (const o of fixture().slice(0, 8)) {
        assert.deepEqual(objectScope(stripObject(o)!), { type: 'all' });
        assert.ok(inScope(o, 'anything'));
      }
    });

    it('classifies routes by their Service parents like the model does', () => {
      assert.deepEqual(scopeOf([svcRef('frontend')]), { type: 'all' });
      assert.deepEqual(scopeOf([svcRef('frontend', 'a')]), { type: 'all' });
      assert.deepEqual(scopeOf([svcRef('reviews', 'shop')]), { type: 'namespace', namespace: 'a' });
      assert.deepEqual(scopeOf([svcRef('reviews', 'shop'), svcRef('frontend')]), { type: 'all' });
      assert.deepEqual(scopeOf([{ kind: 'Service', group: 'core', name: 'x', namespace: 'shop' }]), {
        type: 'namespace',
        namespace: 'a',
      });
      assert.deepEqual(scopeOf([{ kind: 'Service', name: 'x', namespace: '' }]), { type: 'all' });
      // not Service parents: the model does not attach them
      assert.deepEqual(scopeOf([{ name: 'frontend' }]), { type: 'none' });
      assert.deepEqual(scopeOf([{ kind: 'Service', group: 'example.com', name: 'x' }]), { type: 'none' });
      assert.deepEqual(scopeOf([{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'g' }]), {
        type: 'none',
      });
      assert.deepEqual(scopeOf(['junk', null]), { type: 'none' });
      assert.deepEqual(objectScope({ kind: 'GRPCRoute', metadata: { name: 'g' }, spec: 'x' }), {
        type: 'none',
      });
      assert.deepEqual(objectScope({ kind: 'ConfigMap', metadata: { name: 'c' } }), { type: 'none' });
    });

    it('consumer routes reach only their own namespace', () => {
      const consumer = route('a', 'c', [svcRef('reviews', 'shop')], 'reviews');
      assert.ok(inScope(consumer, 'a'));
      assert.ok(!inScope(consumer, 'b'));
      assert.ok(!inScope(consumer, 'shop'));
    });

    it('a scope builds the same routing as the whole mesh, for its namespace', () => {
      const objects = fixture();
      for (const ns of ['shop', 'a', 'b', 'other']) {
        const scoped = objects.filter((o) => inScope(o, ns));
        assert.ok(scoped.length < objects.length);
        assert.deepEqual(
          summary(buildProxyView(scoped, ns, TD)),
          summary(buildProxyView(objects, ns, TD)),
          ns,
        );
      }
    });
  });
});
