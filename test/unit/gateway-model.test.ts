import assert from 'node:assert/strict';
import {
  compareHostnameSpecificity,
  effectiveHostnames,
  hostnameMatches,
  hostnamesOverlap,
  hostOfAuthority,
  intersectHostnames,
} from '../../mesh-model/hostnames.ts';
import { readReferenceGrants } from '../../mesh-model/reference-grants.ts';
import { labelsMatch } from '../../mesh-model/label-selector.ts';
import type { K8sObject } from '../../mesh-model/k8s-objects.ts';
import {
  buildGatewayView,
  GATEWAY_CONTROLLER_NAME,
  planGatewayRequest,
  selectListener,
} from '../../mesh-model/gateway-view.ts';
import { computeGatewayStatuses, GATEWAY_SUPPORTED_FEATURES } from '../../mesh-model/gateway-status.ts';
import type { PlanRequest } from '../../mesh-model/request-plan.ts';

// The rules of the gateway translation that are easy to get subtly wrong; the golden corpus in
// test/golden-gateway covers the whole pipeline.

const CLASS: K8sObject = {
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'GatewayClass',
  metadata: { name: 'sluice' },
  spec: { controllerName: GATEWAY_CONTROLLER_NAME },
};

function gateway(listeners: unknown[], extra: Record<string, unknown> = {}): K8sObject {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: 'gw', namespace: 'infra' },
    spec: { gatewayClassName: 'sluice', listeners, ...extra },
  };
}

function service(namespace: string, name: string, port = 80): K8sObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace, name },
    spec: { clusterIP: '10.0.0.1', ports: [{ port }] },
  };
}

function tlsSecret(namespace: string, name: string): K8sObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { namespace, name },
    type: 'kubernetes.io/tls',
  } as K8sObject;
}

function route(namespace: string, name: string, spec: Record<string, unknown>, created = ''): K8sObject {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { namespace, name, creationTimestamp: created },
    spec,
  };
}

function request(authority: string, path = '/'): PlanRequest {
  return { method: 'GET', path, query: '', scheme: 'http', authority, headers: { host: authority } };
}

function conditionOf(conditions: { type: string; status: string; reason: string }[], type: string): string {
  const c = conditions.find((x) => x.type === type);
  return c ? `${c.status}/${c.reason}` : 'absent';
}

describe('gateway hostnames', () => {
  it('a wildcard matches one or more labels, never the bare suffix', () => {
    assert.ok(hostnameMatches('*.example.com', 'a.example.com'));
    assert.ok(hostnameMatches('*.example.com', 'a.b.example.com'));
    assert.ok(!hostnameMatches('*.example.com', 'example.com'));
    assert.ok(!hostnameMatches('*.example.com', 'aexample.com'));
    assert.ok(hostnameMatches(undefined, 'anything'));
  });

  it('intersects exact names, wildcards and both', () => {
    assert.equal(intersectHostnames('a.example.com', 'a.example.com'), 'a.example.com');
    assert.equal(intersectHostnames('a.example.com', 'b.example.com'), undefined);
    assert.equal(intersectHostnames('*.example.com', 'foo.example.com'), 'foo.example.com');
    assert.equal(intersectHostnames('foo.bar.example.com', '*.example.com'), 'foo.bar.example.com');
    assert.equal(intersectHostnames('*.example.com', 'example.com'), undefined);
    assert.equal(intersectHostnames('*.foo.example.com', '*.example.com'), '*.foo.example.com');
    assert.equal(intersectHostnames('*.example.com', '*.foo.example.com'), '*.foo.example.com');
    assert.equal(intersectHostnames('*.example.com', '*.example.net'), undefined);
    // A suffix that is not a whole label does not count.
    assert.equal(intersectHostnames('*.xample.com', 'e.example.com'), undefined);
    assert.equal(intersectHostnames('*.ample.com', '*.example.com'), undefined);
  });

  it('effective hostnames follow the listener when the route has none, and drop the ones outside it', () => {
    assert.deepEqual(effectiveHostnames(undefined, []), [undefined]);
    assert.deepEqual(effectiveHostnames('*.example.com', []), ['*.example.com']);
    assert.deepEqual(effectiveHostnames(undefined, ['a.test', 'a.test']), ['a.test']);
    assert.deepEqual(
      effectiveHostnames('*.example.com', ['test.example.com', 'test.example.net', '*.example.com']),
      ['test.example.com', '*.example.com'],
    );
    assert.deepEqual(effectiveHostnames('very.specific.com', ['*.specific.com']), ['very.specific.com']);
    assert.deepEqual(effectiveHostnames('a.example.com', ['b.example.com']), []);
  });

  it('overlap treats "any host" as overlapping everything', () => {
    assert.ok(hostnamesOverlap([undefined], ['a.test']));
    assert.ok(hostnamesOverlap(['*.example.com'], ['www.example.com']));
    assert.ok(!hostnamesOverlap(['www.example.org'], ['*.example.com']));
  });

  it('orders exact names first, then wildcards by labels after the star, then none', () => {
    const sorted = [undefined, '*.example.com', 'abc.foo.example.com', '*.foo.example.com', 'a.b'].sort(
      compareHostnameSpecificity,
    );
    assert.deepEqual(sorted, ['abc.foo.example.com', 'a.b', '*.foo.example.com', '*.example.com', undefined]);
  });

  it('strips port, case and the trailing dot from an authority', () => {
    assert.equal(hostOfAuthority('Shop.Example.COM:8080'), 'shop.example.com');
    assert.equal(hostOfAuthority('shop.example.com.'), 'shop.example.com');
    assert.equal(hostOfAuthority('[::1]:80'), '[::1]');
  });
});

describe('ReferenceGrants', () => {
  const grant = (namespace: string, from: unknown[], to: unknown[]): K8sObject => ({
    apiVersion: 'gateway.networking.k8s.io/v1beta1',
    kind: 'ReferenceGrant',
    metadata: { namespace, name: 'g' },
    spec: { from, to },
  });
  const from = { group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: 'shop' };

  it('same namespace needs no grant; another namespace needs one in the target namespace', () => {
    const none = readReferenceGrants([]);
    assert.ok(none.permits(from, { group: '', kind: 'Service', namespace: 'shop', name: 'x' }));
    assert.ok(!none.permits(from, { group: '', kind: 'Service', namespace: 'b', name: 'x' }));
    const wrongPlace = readReferenceGrants([grant('shop', [from], [{ group: '', kind: 'Service' }])]);
    assert.ok(!wrongPlace.permits(from, { group: '', kind: 'Service', namespace: 'b', name: 'x' }));
  });

  it('matches from kind and namespace, to kind and the optional name', () => {
    const grants = readReferenceGrants([
      grant('b', [from], [{ group: '', kind: 'Service', name: 'only' }]),
      grant('c', [{ ...from, kind: 'GRPCRoute' }], [{ group: '', kind: 'Service' }]),
    ]);
    assert.ok(grants.permits(from, { group: '', kind: 'Service', namespace: 'b', name: 'only' }));
    assert.ok(!grants.permits(from, { group: '', kind: 'Service', namespace: 'b', name: 'other' }));
    assert.ok(!grants.permits(from, { group: '', kind: 'Secret', namespace: 'b', name: 'only' }));
    assert.ok(!grants.permits(from, { group: '', kind: 'Service', namespace: 'c', name: 'x' }));
    assert.ok(
      grants.permits(
        { ...from, kind: 'GRPCRoute' },
        { group: '', kind: 'Service', namespace: 'c', name: 'x' },
      ),
    );
    assert.ok(
      !grants.permits(
        { ...from, namespace: 'other' },
        { group: '', kind: 'Service', namespace: 'b', name: 'only' },
      ),
    );
  });
});

describe('label selectors', () => {
  it('ANDs matchLabels and every matchExpressions operator', () => {
    const labels = { tier: 'web', expose: 'true' };
    assert.ok(labelsMatch({}, labels));
    assert.ok(labelsMatch({ matchLabels: { tier: 'web' } }, labels));
    assert.ok(!labelsMatch({ matchLabels: { tier: 'api' } }, labels));
    assert.ok(
      labelsMatch({ matchExpressions: [{ key: 'tier', operator: 'In', values: ['web', 'api'] }] }, labels),
    );
    assert.ok(
      !labelsMatch({ matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['web'] }] }, labels),
    );
    assert.ok(labelsMatch({ matchExpressions: [{ key: 'x', operator: 'NotIn', values: ['web'] }] }, labels));
    assert.ok(labelsMatch({ matchExpressions: [{ key: 'expose', operator: 'Exists' }] }, labels));
    assert.ok(!labelsMatch({ matchExpressions: [{ key: 'expose', operator: 'DoesNotExist' }] }, labels));
    assert.ok(!labelsMatch({ matchExpressions: [{ key: 'expose', operator: 'Near' }] }, labels));
    assert.ok(!labelsMatch(undefined, labels));
  });
});

describe('gateway listeners and routes', () => {
  it('HTTP and HTTPS on one port conflict, and neither is served', () => {
    const objects = [
      CLASS,
      tlsSecret('infra', 'c'),
      gateway([
        { name: 'a', port: 8000, protocol: 'HTTP' },
        { name: 'b', port: 8000, protocol: 'HTTPS', tls: { certificateRefs: [{ name: 'c' }] } },
        { name: 'c', port: 80, protocol: 'HTTP' },
      ]),
    ];
    const status = computeGatewayStatuses(objects).gateways.get('infra/gw')!;
    assert.deepEqual(
      status.listeners.map((l) => conditionOf(l.conditions, 'Conflicted')),
      ['True/ProtocolConflict', 'True/ProtocolConflict', 'False/NoConflicts'],
    );
    assert.equal(conditionOf(status.conditions, 'Accepted'), 'True/ListenersNotValid');
    const view = buildGatewayView(objects, 'infra', 'gw', 'cluster.local')!;
    assert.deepEqual([...view.ports.keys()], [80]);
  });

  it('a Gateway of another class, or without a class, has no view and no status', () => {
    const other = { ...gateway([{ name: 'a', port: 80, protocol: 'HTTP' }]) };
    other.spec = { ...(other.spec as object), gatewayClassName: 'someone-else' };
    assert.equal(buildGatewayView([CLASS, other], 'infra', 'gw', 'td'), undefined);
    assert.equal(computeGatewayStatuses([CLASS, other]).gateways.size, 0);
  });

  it('a cross-namespace certificate needs a ReferenceGrant from the Gateway', () => {
    const secret = tlsSecret('certs', 'c');
    const gw = gateway([
      {
        name: 'https',
        port: 443,
        protocol: 'HTTPS',
        tls: { certificateRefs: [{ name: 'c', namespace: 'certs' }] },
      },
    ]);
    const denied = computeGatewayStatuses([CLASS, secret, gw]).gateways.get('infra/gw')!;
    assert.equal(conditionOf(denied.listeners[0]!.conditions, 'ResolvedRefs'), 'False/RefNotPermitted');
    assert.equal(buildGatewayView([CLASS, secret, gw], 'infra', 'gw', 'td')!.ports.size, 0);
    const grant: K8sObject = {
      apiVersion: 'gateway.networking.k8s.io/v1beta1',
      kind: 'ReferenceGrant',
      metadata: { namespace: 'certs', name: 'g' },
      spec: {
        from: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: 'infra' }],
        to: [{ group: '', kind: 'Secret', name: 'c' }],
      },
    };
    const allowed = computeGatewayStatuses([CLASS, secret, gw, grant]).gateways.get('infra/gw')!;
    assert.equal(conditionOf(allowed.listeners[0]!.conditions, 'ResolvedRefs'), 'True/ResolvedRefs');
    const view = buildGatewayView([CLASS, secret, gw, grant], 'infra', 'gw', 'td')!;
    assert.deepEqual(view.ports.get(443)!.listeners[0]!.certificates, [{ namespace: 'certs', name: 'c' }]);
  });

  it('the older of an HTTPRoute and a GRPCRoute with overlapping hostnames wins, by time then name', () => {
    const grpc: K8sObject = {
      ...route('infra', 'b-grpc', {
        parentRefs: [{ name: 'gw' }],
        rules: [{ backendRefs: [{ name: 's', port: 80 }] }],
      }),
      kind: 'GRPCRoute',
    };
    const http = route('infra', 'a-http', {
      parentRefs: [{ name: 'gw' }],
      hostnames: ['x.test'],
      rules: [{ backendRefs: [{ name: 's', port: 80 }] }],
    });
    const objects = [CLASS, gateway([{ name: 'l', port: 80, protocol: 'HTTP' }]), service('infra', 's')];
    const sameAge = computeGatewayStatuses([...objects, grpc, http]).routeParents;
    assert.equal(
      conditionOf(sameAge.get('HTTPRoute/infra/a-http')![0]!.conditions, 'Accepted'),
      'True/Accepted',
    );
    assert.equal(
      conditionOf(sameAge.get('GRPCRoute/infra/b-grpc')![0]!.conditions, 'Accepted'),
      'False/NotAllowedByListeners',
    );
    const older = { ...grpc, metadata: { ...grpc.metadata, creationTimestamp: '2020-01-01T00:00:00Z' } };
    const newer = { ...http, metadata: { ...http.metadata, creationTimestamp: '2021-01-01T00:00:00Z' } };
    const byAge = computeGatewayStatuses([...objects, newer, older]).routeParents;
    assert.equal(
      conditionOf(byAge.get('GRPCRoute/infra/b-grpc')![0]!.conditions, 'Accepted'),
      'True/Accepted',
    );
    assert.equal(
      conditionOf(byAge.get('HTTPRoute/infra/a-http')![0]!.conditions, 'Accepted'),
      'False/NotAllowedByListeners',
    );
    assert.equal(
      computeGatewayStatuses([...objects, newer, older]).gateways.get('infra/gw')!.listeners[0]!
        .attachedRoutes,
      1,
    );
  });

  it('route hostname precedence: exact before wildcard, and a rule-less match falls to the next hostname', () => {
    const objects = [
      CLASS,
      gateway([{ name: 'l', port: 80, protocol: 'HTTP' }]),
      service('infra', 'exact'),
      service('infra', 'wild'),
      route(
        'infra',
        'exact',
        {
          parentRefs: [{ name: 'gw' }],
          hostnames: ['a.example.com'],
          rules: [
            {
              matches: [{ path: { type: 'PathPrefix', value: '/a' } }],
              backendRefs: [{ name: 'exact', port: 80 }],
            },
          ],
        },
        '2030-01-01T00:00:00Z',
      ),
      route(
        'infra',
        'wild',
        {
          parentRefs: [{ name: 'gw' }],
          hostnames: ['*.example.com'],
          rules: [{ backendRefs: [{ name: 'wild', port: 80 }] }],
        },
        '2020-01-01T00:00:00Z',
      ),
    ];
    const view = buildGatewayView(objects, 'infra', 'gw', 'td')!;
    const backend = (authority: string, path: string): string => {
      const p = planGatewayRequest(view, 80, request(authority, path), 0);
      return p.kind === 'forward' ? p.backend.name : `${p.status}`;
    };
    assert.equal(backend('a.example.com', '/a/x'), 'exact');
    assert.equal(backend('a.example.com', '/b'), 'wild');
    assert.equal(backend('b.example.com', '/a'), 'wild');
    assert.equal(backend('example.com', '/a'), '404');
  });

  it('selectListener picks by SNI: exact, then more specific wildcard, then no hostname', () => {
    const secret = (name: string): K8sObject => tlsSecret('infra', name);
    const https = (name: string, hostname?: string): unknown => ({
      name,
      port: 443,
      protocol: 'HTTPS',
      ...(hostname ? { hostname } : {}),
      tls: { certificateRefs: [{ name }] },
    });
    const view = buildGatewayView(
      [
        CLASS,
        secret('any'),
        secret('wild'),
        secret('deeper'),
        secret('exact'),
        gateway([
          https('any'),
          https('wild', '*.example.com'),
          https('deeper', '*.a.example.com'),
          https('exact', 'x.a.example.com'),
        ]),
      ],
      'infra',
      'gw',
      'td',
    )!;
    const pick = (sni: string | undefined): string | undefined => selectListener(view, 443, sni)?.name;
    assert.equal(pick('x.a.example.com'), 'exact');
    assert.equal(pick('y.a.example.com'), 'deeper');
    assert.equal(pick('b.example.com'), 'wild');
    assert.equal(pick('other.test'), 'any');
    assert.equal(pick(undefined), 'any');
    assert.equal(selectListener(view, 8443, 'x.a.example.com'), undefined);
  });

  it('SupportedVersion reads the CRD bundle versions; the class stays Accepted (best effort)', () => {
    const crd = (version: string): K8sObject => ({
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: {
        name: 'httproutes.gateway.networking.k8s.io',
        annotations: { 'gateway.networking.k8s.io/bundle-version': version },
      },
    });
    const version = (objects: K8sObject[]): string[] =>
      computeGatewayStatuses([CLASS, ...objects])
        .gatewayClasses.get('sluice')!
        .map((c) => `${c.type}=${c.status}`);
    assert.deepEqual(version([crd('v1.6.1')]), ['Accepted=True', 'SupportedVersion=True']);
    assert.deepEqual(version([crd('v1.6.3')]), ['Accepted=True', 'SupportedVersion=True']);
    assert.deepEqual(version([crd('v1.5.0')]), ['Accepted=True', 'SupportedVersion=False']);
    assert.deepEqual(version([]), ['Accepted=True', 'SupportedVersion=False']);
    const other = { ...CLASS, metadata: { name: 'x' }, spec: { controllerName: 'example.com/x' } };
    assert.equal(computeGatewayStatuses([other]).gatewayClasses.size, 0);
  });

  it('declares supported features sorted, as the GatewayClass status requires', () => {
    assert.deepEqual([...GATEWAY_SUPPORTED_FEATURES].sort(), GATEWAY_SUPPORTED_FEATURES);
    assert.equal(new Set(GATEWAY_SUPPORTED_FEATURES).size, GATEWAY_SUPPORTED_FEATURES.length);
  });
});
