import assert from 'node:assert/strict';
import { buildMeshModel } from '../../../mesh-model/translate.ts';
import type {
  BackendRef,
  K8sObject,
  ParentReference,
  RouteRuleSpec,
} from '../../../mesh-model/k8s-objects.ts';
import {
  MAX_CONDITION_MESSAGE,
  capText,
  conditionTime,
  desiredParentStatuses,
  listMessages,
  mergeRouteStatus,
  readParentStatuses,
  type Condition,
  type RouteObject,
  type RouteParentStatus,
} from '../../../controller/route-status.ts';
import { MESH_CONTROLLER_NAME } from '../../../mesh-model/controller-name.ts';
import { service as manifestService } from '../../support/manifests.ts';

// Expectations come from the Gateway API v1.6.1 standard CRDs (RouteParentStatus schema) and the condition
// types and reasons documented in the v1.6.1 API (apis/v1/shared_types.go), not from another mesh.

const NOW = '2026-03-01T10:00:00Z';
const LATER = '2026-03-01T10:05:00Z';
const GATEWAY_CONTROLLER = 'example.net/gateway-controller';

const service = (namespace: string, name: string, ports: (number | [number, string])[]): K8sObject =>
  manifestService(namespace, name, ports, '10.96.0.10');

const SERVICES: K8sObject[] = [
  service('app', 'svc', [
    [80, 'http'],
    [8080, 'admin'],
  ]),
  service('app', 'grpc', [[9000, 'grpc']]),
  service('app', 'v1', [80]),
  service('app', 'v2', [80]),
  service('other', 'remote', [80]),
];

type NamedParent = ParentReference & { name: string };

function serviceParent(name = 'svc', extra: Partial<ParentReference> = {}): NamedParent {
  return { group: '', kind: 'Service', name, ...extra };
}

function gatewayParent(name: string): NamedParent {
  return { group: 'gateway.networking.k8s.io', kind: 'Gateway', name };
}

function backend(name: string, extra: Partial<BackendRef> = {}): BackendRef {
  return { group: '', kind: 'Service', name, port: 80, weight: 1, ...extra };
}

/** A GRPCRoute method match (the shared rule type declares HTTPRoute's string method). */
function grpcMethod(service: string): NonNullable<RouteRuleSpec['matches']>[number] {
  return { method: { service } } as unknown as NonNullable<RouteRuleSpec['matches']>[number];
}

interface RouteOptions {
  kind?: 'HTTPRoute' | 'GRPCRoute';
  name?: string;
  generation?: number;
  parentRefs?: ParentReference[];
  rules?: RouteRuleSpec[];
  parents?: RouteParentStatus[];
}

function route(opts: RouteOptions = {}): RouteObject {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: opts.kind ?? 'HTTPRoute',
    metadata: { namespace: 'app', name: opts.name ?? 'r', generation: opts.generation ?? 1 },
    spec: {
      parentRefs: opts.parentRefs ?? [serviceParent()],
      rules: opts.rules ?? [{ backendRefs: [backend('v1')] }],
    },
    ...(opts.parents ? { status: { parents: opts.parents } } : {}),
  };
}

/** What the controller does: build the model from everything, find the route, compute its entries. */
function desired(routeObject: RouteObject, now = NOW, objects: K8sObject[] = SERVICES): RouteParentStatus[] {
  const model = buildMeshModel([...objects, routeObject]);
  const compiled = model.routes.find(
    (r) => r.kind === routeObject.kind && r.name === routeObject.metadata?.name,
  );
  assert.ok(compiled, 'route compiled');
  return desiredParentStatuses(compiled, routeObject, model, now);
}

/** Condition summary "Type=Status/Reason", in order. */
function summary(entry: RouteParentStatus | undefined): string[] {
  assert.ok(entry, 'entry present');
  return entry.conditions.map((c) => `${c.type}=${c.status}/${c.reason}`);
}

function cond(entry: RouteParentStatus | undefined, type: string): Condition {
  const c = entry?.conditions.find((x) => x.type === type);
  assert.ok(c, `condition ${type} present`);
  return c;
}

const REASON = /^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/;
const TYPE =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$/;
const CONTROLLER =
  /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$/;

/** The constraints the API server enforces on status.parents (HTTPRoute/GRPCRoute v1 schema). */
function assertValidStatus(parents: RouteParentStatus[]): void {
  assert.ok(parents.length <= 32, 'at most 32 parents');
  for (const p of parents) {
    assert.ok(typeof p.parentRef.name === 'string' && p.parentRef.name.length >= 1, 'parentRef.name');
    assert.ok(CONTROLLER.test(p.controllerName) && p.controllerName.length <= 253, 'controllerName');
    assert.ok(p.conditions.length >= 1 && p.conditions.length <= 8, '1..8 conditions');
    assert.equal(new Set(p.conditions.map((c) => c.type)).size, p.conditions.length, 'types unique');
    for (const c of p.conditions) {
      assert.ok(TYPE.test(c.type) && c.type.length <= 316, `type ${c.type}`);
      assert.ok(['True', 'False', 'Unknown'].includes(c.status), 'status');
      assert.ok(REASON.test(c.reason) && c.reason.length <= 1024, `reason ${c.reason}`);
      assert.ok(c.message.length <= MAX_CONDITION_MESSAGE, 'message length');
      assert.ok(!Number.isNaN(Date.parse(c.lastTransitionTime)), 'lastTransitionTime');
      if (c.observedGeneration !== undefined) assert.ok(c.observedGeneration >= 0, 'observedGeneration');
    }
  }
}

const OK = ['Accepted=True/Accepted', 'ResolvedRefs=True/ResolvedRefs'];

describe('route status: desired entries for Service parents', () => {
  const cases: { name: string; route: RouteObject; want: string[][]; messages?: (string | RegExp)[] }[] = [
    { name: 'accepted and resolved', route: route(), want: [OK] },
    {
      name: 'missing backend Service',
      route: route({ rules: [{ backendRefs: [backend('nope')] }] }),
      want: [['Accepted=True/Accepted', 'ResolvedRefs=False/BackendNotFound']],
      messages: ['', 'rule 0: BackendNotFound: Service app/nope not found'],
    },
    {
      name: 'backend Service without that port',
      route: route({ rules: [{ backendRefs: [backend('v1', { port: 81 })] }] }),
      want: [['Accepted=True/Accepted', 'ResolvedRefs=False/BackendNotFound']],
      messages: ['', /Service app\/v1 has no port 81/],
    },
    {
      // The CRD asks for a ReferenceGrant on cross-namespace backendRefs; Sluice's model allows mesh
      // backendRefs across namespaces without one, and status follows the model: no RefNotPermitted.
      name: 'cross-namespace backend without ReferenceGrant (allowed by the model)',
      route: route({ rules: [{ backendRefs: [backend('remote', { namespace: 'other' })] }] }),
      want: [OK],
    },
    {
      name: 'cross-namespace backend that does not exist',
      route: route({ rules: [{ backendRefs: [backend('gone', { namespace: 'other' })] }] }),
      want: [['Accepted=True/Accepted', 'ResolvedRefs=False/BackendNotFound']],
      messages: ['', /Service other\/gone not found/],
    },
    {
      name: 'backend of another kind',
      route: route({
        rules: [{ backendRefs: [backend('bucket', { group: 'example.com', kind: 'Bucket' })] }],
      }),
      want: [['Accepted=True/Accepted', 'ResolvedRefs=False/InvalidKind']],
      messages: ['', /InvalidKind: backendRef example.com\/Bucket bucket is not a core Service/],
    },
    {
      name: 'ExtensionRef filter cannot be resolved',
      route: route({
        rules: [{ filters: [{ type: 'ExtensionRef', extensionRef: {} }], backendRefs: [backend('v1')] }],
      }),
      want: [['Accepted=True/Accepted', 'ResolvedRefs=False/InvalidKind']],
    },
    {
      name: 'mirror to a missing Service',
      route: route({
        rules: [
          {
            filters: [{ type: 'RequestMirror', requestMirror: { backendRef: backend('shadow') } }],
            backendRefs: [backend('v1')],
          },
        ],
      }),
      want: [['Accepted=True/Accepted', 'ResolvedRefs=False/BackendNotFound']],
    },
    {
      name: 'several unresolved refs: reason of the first, message lists all',
      route: route({
        rules: [
          { backendRefs: [backend('bucket', { group: 'example.com', kind: 'Bucket' }), backend('nope')] },
          { matches: [{ path: { type: 'PathPrefix', value: '/b' } }], backendRefs: [backend('gone')] },
        ],
      }),
      want: [['Accepted=True/Accepted', 'ResolvedRefs=False/InvalidKind']],
      messages: [
        '',
        'rule 0: InvalidKind: backendRef example.com/Bucket bucket is not a core Service; ' +
          'rule 0: BackendNotFound: Service app/nope not found; rule 1: BackendNotFound: Service app/gone not found',
      ],
    },
    {
      name: 'parent Service that does not exist',
      route: route({ parentRefs: [serviceParent('ghost')] }),
      want: [['Accepted=False/NoMatchingParent', 'ResolvedRefs=True/ResolvedRefs']],
      messages: ['parent Service app/ghost not found'],
    },
    {
      name: 'parent port the Service does not have',
      route: route({ parentRefs: [serviceParent('svc', { port: 81 })] }),
      want: [['Accepted=False/NoMatchingParent', 'ResolvedRefs=True/ResolvedRefs']],
      messages: ['Service app/svc has no port 81'],
    },
    {
      name: 'parent sectionName the Service does not have',
      route: route({ parentRefs: [serviceParent('svc', { sectionName: 'metrics' })] }),
      want: [['Accepted=False/NoMatchingParent', 'ResolvedRefs=True/ResolvedRefs']],
      messages: ['Service app/svc has no port named metrics'],
    },
    {
      name: 'port and sectionName that match',
      route: route({ parentRefs: [serviceParent('svc', { port: 8080, sectionName: 'admin' })] }),
      want: [OK],
      messages: ['attached to Service app/svc port 8080'],
    },
    {
      name: 'consumer route (parent in another namespace)',
      route: route({ parentRefs: [serviceParent('remote', { namespace: 'other' })] }),
      want: [OK],
      messages: ['attached to Service other/remote port 80'],
    },
    {
      name: 'some rules dropped: Accepted with PartiallyInvalid',
      route: route({
        rules: [
          { backendRefs: [backend('v1')] },
          { matches: [{ path: { type: 'Exact', value: 'no-slash' } }], backendRefs: [backend('v2')] },
        ],
      }),
      want: [[...OK, 'PartiallyInvalid=True/UnsupportedValue']],
    },
    {
      name: 'every rule dropped: not accepted, no PartiallyInvalid',
      route: route({ rules: [{ matches: [{ path: { type: 'Exact', value: 'x' } }], backendRefs: [] }] }),
      want: [['Accepted=False/UnsupportedValue', 'ResolvedRefs=True/ResolvedRefs']],
      messages: [/^all rules invalid: rule 0: path "x"/],
    },
    {
      name: 'no rules at all',
      route: route({ rules: [] }),
      want: [['Accepted=False/UnsupportedValue', 'ResolvedRefs=True/ResolvedRefs']],
      messages: ['route has no rules'],
    },
    {
      name: 'one entry per Service parent, in parentRefs order; Gateway parents are not ours',
      route: route({
        parentRefs: [
          gatewayParent('ingress'),
          serviceParent('svc', { port: 80 }),
          serviceParent('ghost'),
          { group: 'example.com', kind: 'Service', name: 'svc' },
          serviceParent('remote', { namespace: 'other', group: 'core' }),
        ],
      }),
      want: [OK, ['Accepted=False/NoMatchingParent', 'ResolvedRefs=True/ResolvedRefs'], OK],
    },
    {
      name: 'PartiallyInvalid only on the parents that accepted the route',
      route: route({
        parentRefs: [serviceParent('ghost'), serviceParent('svc')],
        rules: [
          { backendRefs: [backend('v1')] },
          { matches: [{ method: 'BREW' }], backendRefs: [backend('v2')] },
        ],
      }),
      want: [
        ['Accepted=False/NoMatchingParent', 'ResolvedRefs=True/ResolvedRefs'],
        [...OK, 'PartiallyInvalid=True/UnsupportedValue'],
      ],
    },
    {
      name: 'GRPCRoute accepted and resolved',
      route: route({
        kind: 'GRPCRoute',
        parentRefs: [serviceParent('grpc')],
        rules: [{ matches: [grpcMethod('echo.Echo')], backendRefs: [backend('v1')] }],
      }),
      want: [OK],
      messages: ['attached to Service app/grpc port 9000'],
    },
    {
      name: 'GRPCRoute with a missing backend and an HTTP-only filter',
      route: route({
        kind: 'GRPCRoute',
        parentRefs: [serviceParent('grpc')],
        rules: [
          { backendRefs: [backend('nope')] },
          { filters: [{ type: 'URLRewrite', urlRewrite: {} }], backendRefs: [backend('v1')] },
        ],
      }),
      want: [
        [
          'Accepted=True/Accepted',
          'ResolvedRefs=False/BackendNotFound',
          'PartiallyInvalid=True/UnsupportedValue',
        ],
      ],
      messages: ['', '', 'Dropped Rule(s): rule 1: URLRewrite is not a GRPCRoute filter'],
    },
    {
      name: 'no Service parents: no entries',
      route: route({ parentRefs: [gatewayParent('ingress')] }),
      want: [],
    },
    { name: 'no parentRefs: no entries', route: route({ parentRefs: [] }), want: [] },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const parents = desired(c.route);
      assertValidStatus(parents);
      assert.deepEqual(parents.map(summary), c.want);
      for (const p of parents) assert.equal(p.controllerName, MESH_CONTROLLER_NAME);
      c.messages?.forEach((want, i) => {
        if (want === '') return;
        const message = parents[0]?.conditions[i]?.message ?? '';
        if (typeof want === 'string') assert.equal(message, want);
        else assert.match(message, want);
      });
    });
  }

  it('echoes each parentRef exactly as written in spec', () => {
    const refs: ParentReference[] = [
      { group: '', kind: 'Service', name: 'svc' },
      { group: 'core', kind: 'Service', name: 'remote', namespace: 'other', port: 80 },
      { kind: 'Service', name: 'svc', sectionName: 'admin' },
    ];
    const parents = desired(route({ parentRefs: refs }));
    assert.deepEqual(
      parents.map((p) => p.parentRef),
      refs,
    );
  });

  it('a Service parent without a name gets no entry (the API would reject it)', () => {
    const parents = desired(route({ parentRefs: [{ group: '', kind: 'Service' }, serviceParent('svc')] }));
    assert.deepEqual(
      parents.map((p) => p.parentRef.name),
      ['svc'],
    );
  });

  it('sets observedGeneration to metadata.generation and lastTransitionTime to now on every condition', () => {
    const parents = desired(
      route({ generation: 7, rules: [{ backendRefs: [backend('v1')] }, { matches: [{ method: 'BREW' }] }] }),
    );
    const conditions = parents[0]?.conditions ?? [];
    assert.equal(conditions.length, 3);
    for (const c of conditions) {
      assert.equal(c.observedGeneration, 7);
      assert.equal(c.lastTransitionTime, NOW);
    }
  });

  it('omits observedGeneration when the object has no generation', () => {
    const obj = route();
    delete obj.metadata!.generation;
    const parents = desired(obj);
    assert.equal(cond(parents[0], 'Accepted').observedGeneration, undefined);
    assert.equal(Object.hasOwn(cond(parents[0], 'Accepted'), 'observedGeneration'), false);
  });

  it('caps a long ResolvedRefs message to the CRD limit and counts what it left out', () => {
    const long = 'x'.repeat(200);
    const backendRefs = Array.from({ length: 400 }, (_, i) => backend(`${long}-${i}`));
    const parents = desired(route({ rules: [{ backendRefs }] }));
    assertValidStatus(parents);
    const message = cond(parents[0], 'ResolvedRefs').message;
    assert.ok(message.length <= MAX_CONDITION_MESSAGE);
    assert.ok(message.length > MAX_CONDITION_MESSAGE - 400, 'uses the room it has');
    assert.match(message, /^rule 0: BackendNotFound: Service app\/x+-0 not found; /);
    const more = /; and (\d+) more$/.exec(message);
    assert.ok(more, message.slice(-80));
    const listed = message.split('; rule 0:').length;
    assert.equal(listed + Number(more[1]), 400);
  });

  it('uses the compiled route from the model when none is passed, and recompiles a stale one', () => {
    const v1 = route({ generation: 1, rules: [{ backendRefs: [backend('v1')] }] });
    const v2 = route({ generation: 2, rules: [{ backendRefs: [backend('nope')] }] });
    const oldModel = buildMeshModel([...SERVICES, v1]);
    const newModel = buildMeshModel([...SERVICES, v2]);
    const stale = oldModel.routes[0];
    assert.ok(stale);
    // Model and object agree: the model's route is used even if the caller passes none.
    assert.deepEqual(summary(desiredParentStatuses(undefined, v2, newModel, NOW)[0]), [
      'Accepted=True/Accepted',
      'ResolvedRefs=False/BackendNotFound',
    ]);
    // The caller's compiled route describes generation 1; the object is generation 2.
    const fresh = desiredParentStatuses(stale, v2, oldModel, NOW);
    assert.deepEqual(summary(fresh[0]), ['Accepted=True/Accepted', 'ResolvedRefs=False/BackendNotFound']);
    assert.equal(cond(fresh[0], 'ResolvedRefs').observedGeneration, 2);
  });

  it('recompiles when parentRefs changed under the same model entry (indexes follow the object)', () => {
    const before = route({ generation: 1, parentRefs: [serviceParent('ghost'), serviceParent('svc')] });
    const after = route({ generation: 2, parentRefs: [serviceParent('svc'), serviceParent('ghost')] });
    const model = buildMeshModel([...SERVICES, before]);
    const parents = desiredParentStatuses(model.routes[0], after, model, NOW);
    assert.deepEqual(
      parents.map((p) => `${p.parentRef.name}:${cond(p, 'Accepted').status}`),
      ['svc:True', 'ghost:False'],
    );
  });

  it('handles broken objects without throwing', () => {
    const model = buildMeshModel(SERVICES);
    const weird: RouteObject[] = [
      { kind: 'HTTPRoute' },
      { kind: 'HTTPRoute', metadata: { name: 'r' }, spec: 'nonsense' },
      { kind: 'HTTPRoute', metadata: { name: 'r' }, spec: { parentRefs: [null, 5, 'x', serviceParent()] } },
      { kind: 'TCPRoute', metadata: { name: 'r' }, spec: { parentRefs: [serviceParent()] } },
      { kind: 'HTTPRoute', spec: { parentRefs: [serviceParent()] } },
    ];
    const results = weird.map((obj) => desiredParentStatuses(undefined, obj, model, NOW));
    assert.deepEqual(
      results.map((r) => r.length),
      [0, 0, 1, 0, 0],
    );
  });
});

/** An entry as another controller (a Gateway implementation) would have written it. */
function foreign(name: string, status: 'True' | 'False' = 'True'): RouteParentStatus {
  return {
    parentRef: gatewayParent(name),
    controllerName: GATEWAY_CONTROLLER,
    conditions: [
      {
        type: 'Accepted',
        status,
        reason: status === 'True' ? 'Accepted' : 'NotAllowedByListeners',
        message: '',
        lastTransitionTime: '2025-01-01T00:00:00Z',
        observedGeneration: 1,
      },
    ],
  };
}

describe('route status: merge with what is already written', () => {
  it('writes nothing when there is nothing to say', () => {
    assert.equal(mergeRouteStatus(undefined, []), undefined);
    assert.equal(mergeRouteStatus([], []), undefined);
    const others = [foreign('gw')];
    assert.equal(mergeRouteStatus(others, []), undefined);
  });

  it('adds our entries to an empty status', () => {
    const want = desired(route());
    assert.deepEqual(mergeRouteStatus(undefined, want), want);
  });

  it('unchanged status → undefined, even with a later clock', () => {
    const written = mergeRouteStatus(undefined, desired(route()));
    assert.ok(written);
    assert.equal(mergeRouteStatus(written, desired(route(), LATER)), undefined);
  });

  it('key order and round-tripped JSON do not count as a change', () => {
    const written = mergeRouteStatus(undefined, desired(route()));
    assert.ok(written);
    const reordered = (JSON.parse(JSON.stringify(written)) as RouteParentStatus[]).map((p) => ({
      conditions: p.conditions.map(
        (c) => Object.fromEntries(Object.entries(c).reverse()) as unknown as Condition,
      ),
      controllerName: p.controllerName,
      parentRef: Object.fromEntries(Object.entries(p.parentRef).reverse()) as RouteParentStatus['parentRef'],
    }));
    assert.equal(mergeRouteStatus(reordered, desired(route(), LATER)), undefined);
  });

  it('keeps entries of other controllers untouched and in place', () => {
    const parentRefs = [gatewayParent('a'), serviceParent('svc'), gatewayParent('b'), serviceParent('ghost')];
    const first = desired(route({ parentRefs }));
    const a = foreign('a');
    const b = foreign('b', 'False');
    const existing = [a, first[0]!, b];
    const merged = mergeRouteStatus(existing, first);
    assert.ok(merged);
    assert.equal(merged.length, 4);
    assert.equal(merged[0], a, 'same object, same place');
    assert.equal(merged[2], b, 'same object, same place');
    assert.deepEqual(a, foreign('a'), 'not modified');
    assert.deepEqual(
      merged.map((p) => `${p.controllerName}:${p.parentRef.name}`),
      [
        `${GATEWAY_CONTROLLER}:a`,
        `${MESH_CONTROLLER_NAME}:svc`,
        `${GATEWAY_CONTROLLER}:b`,
        `${MESH_CONTROLLER_NAME}:ghost`,
      ],
    );
  });

  it('another controller claiming the same Service parent keeps its entry next to ours', () => {
    const ours = desired(route());
    const theirs: RouteParentStatus = { ...ours[0]!, controllerName: 'other-mesh.example/controller' };
    const merged = mergeRouteStatus([theirs], ours);
    assert.deepEqual(
      merged?.map((p) => p.controllerName),
      ['other-mesh.example/controller', MESH_CONTROLLER_NAME],
    );
  });

  it('removes our entry for a parentRef that no longer exists', () => {
    const old = desired(
      route({ parentRefs: [serviceParent('svc'), serviceParent('remote', { namespace: 'other' })] }),
    );
    const existing = [foreign('gw'), ...old];
    const now = desired(
      route({ generation: 2, parentRefs: [gatewayParent('gw'), serviceParent('svc')] }),
      LATER,
    );
    const merged = mergeRouteStatus(existing, now);
    assert.deepEqual(
      merged?.map((p) => p.parentRef.name),
      ['gw', 'svc'],
    );
  });

  it('removes all our entries once the route has no Service parent', () => {
    const existing = [...desired(route()), foreign('gw')];
    assert.deepEqual(mergeRouteStatus(existing, []), [foreign('gw')]);
  });

  it('a changed parentRef (port added) replaces the old entry', () => {
    const existing = desired(route());
    const now = desired(route({ generation: 2, parentRefs: [serviceParent('svc', { port: 80 })] }), LATER);
    const merged = mergeRouteStatus(existing, now);
    assert.ok(merged);
    assert.deepEqual(
      merged.map((p) => p.parentRef),
      [serviceParent('svc', { port: 80 })],
    );
    assert.equal(merged[0]?.conditions[0]?.lastTransitionTime, LATER, 'a new parent starts its own history');
  });

  it('drops duplicates of our own entries', () => {
    const ours = desired(route());
    const merged = mergeRouteStatus([ours[0]!, ours[0]!], ours);
    assert.equal(merged?.length, 1);
  });

  it('keeps lastTransitionTime when the status stays, even if reason or message change', () => {
    const before = desired(route({ rules: [{ backendRefs: [backend('nope')] }] }));
    const after = desired(route({ generation: 2, rules: [{ backendRefs: [backend('gone')] }] }), LATER);
    const merged = mergeRouteStatus(before, after);
    assert.ok(merged, 'message and generation changed: a write');
    const resolved = cond(merged[0], 'ResolvedRefs');
    assert.equal(resolved.status, 'False');
    assert.match(resolved.message, /app\/gone/);
    assert.equal(resolved.lastTransitionTime, NOW);
    assert.equal(cond(merged[0], 'Accepted').lastTransitionTime, NOW);
  });

  it('updates lastTransitionTime when the status flips', () => {
    const before = desired(route({ rules: [{ backendRefs: [backend('nope')] }] }));
    const after = desired(route({ generation: 2 }), LATER);
    const merged = mergeRouteStatus(before, after);
    assert.ok(merged);
    assert.equal(cond(merged[0], 'ResolvedRefs').status, 'True');
    assert.equal(cond(merged[0], 'ResolvedRefs').lastTransitionTime, LATER);
    assert.equal(cond(merged[0], 'Accepted').lastTransitionTime, NOW, 'Accepted stayed True');
  });

  it('a condition that appears gets now; one that disappears is removed', () => {
    const partial: RouteRuleSpec[] = [{ backendRefs: [backend('v1')] }, { matches: [{ method: 'BREW' }] }];
    const whole = desired(route());
    const broken = mergeRouteStatus(whole, desired(route({ generation: 2, rules: partial }), LATER));
    assert.ok(broken);
    assert.equal(cond(broken[0], 'PartiallyInvalid').lastTransitionTime, LATER);
    assert.equal(cond(broken[0], 'Accepted').lastTransitionTime, NOW);
    const fixed = mergeRouteStatus(broken, desired(route({ generation: 3 }), '2026-03-01T11:00:00Z'));
    assert.deepEqual(summary(fixed?.[0]), OK);
  });

  it('a generation bump alone changes observedGeneration (a write) and keeps transition times', () => {
    const written = mergeRouteStatus(undefined, desired(route({ generation: 1 })));
    assert.ok(written);
    const merged = mergeRouteStatus(written, desired(route({ generation: 2 }), LATER));
    assert.ok(merged);
    for (const c of merged[0]!.conditions) {
      assert.equal(c.observedGeneration, 2);
      assert.equal(c.lastTransitionTime, NOW);
    }
    assert.equal(mergeRouteStatus(merged, desired(route({ generation: 2 }), LATER)), undefined);
  });

  it('GRPCRoute: merge, no-op and flip work the same', () => {
    const grpc = (generation: number, backendName: string): RouteObject =>
      route({
        kind: 'GRPCRoute',
        generation,
        parentRefs: [serviceParent('grpc')],
        rules: [{ backendRefs: [backend(backendName)] }],
      });
    const written = mergeRouteStatus([foreign('gw')], desired(grpc(1, 'v1')));
    assert.ok(written);
    assert.equal(mergeRouteStatus(written, desired(grpc(1, 'v1'), LATER)), undefined);
    const flipped = mergeRouteStatus(written, desired(grpc(2, 'nope'), LATER));
    assert.ok(flipped);
    assert.equal(flipped[0], written[0], 'the Gateway entry is untouched');
    assert.deepEqual(summary(flipped[1]), ['Accepted=True/Accepted', 'ResolvedRefs=False/BackendNotFound']);
    assert.equal(cond(flipped[1], 'ResolvedRefs').lastTransitionTime, LATER);
  });

  it('at most 32 entries: other controllers win, ours are cut from the end', () => {
    const others = Array.from({ length: 30 }, (_, i) => foreign(`gw-${i}`));
    const parentRefs = [
      serviceParent('svc'),
      serviceParent('remote', { namespace: 'other' }),
      serviceParent('v1'),
      serviceParent('v2'),
    ];
    const merged = mergeRouteStatus(others, desired(route({ parentRefs })));
    assert.ok(merged);
    assert.equal(merged.length, 32);
    assert.deepEqual(merged.slice(0, 30), others);
    assert.deepEqual(
      merged.slice(30).map((p) => p.parentRef.name),
      ['svc', 'remote'],
    );
    assertValidStatus(merged);
    // Stable: the same inputs again write nothing.
    assert.equal(mergeRouteStatus(merged, desired(route({ parentRefs }), LATER)), undefined);
  });

  it('tolerates malformed existing entries (kept if foreign, replaced if ours)', () => {
    const junk = [
      { controllerName: GATEWAY_CONTROLLER },
      { controllerName: MESH_CONTROLLER_NAME },
    ] as unknown;
    const ours = desired(route());
    const merged = mergeRouteStatus(junk as RouteParentStatus[], ours);
    assert.deepEqual(merged, [{ controllerName: GATEWAY_CONTROLLER }, ...ours]);
    const broken = [{ ...ours[0]!, conditions: 'nope' }] as unknown as RouteParentStatus[];
    assert.deepEqual(mergeRouteStatus(broken, ours), ours);
  });
});

describe('route status: helpers', () => {
  it('readParentStatuses reads status.parents, whoever wrote them', () => {
    assert.equal(readParentStatuses(route()), undefined);
    assert.equal(readParentStatuses({ status: { parents: 'x' } }), undefined);
    const parents = [foreign('gw')];
    assert.equal(readParentStatuses(route({ parents })), parents);
  });

  it('end to end: read, compute, merge, and nothing more to write', () => {
    const obj = route({ parentRefs: [gatewayParent('gw'), serviceParent('svc')], parents: [foreign('gw')] });
    const next = mergeRouteStatus(readParentStatuses(obj), desired(obj));
    assert.ok(next);
    const written = { ...obj, status: { parents: next } };
    assert.equal(mergeRouteStatus(readParentStatuses(written), desired(written, LATER)), undefined);
  });

  it('conditionTime writes whole seconds in UTC', () => {
    assert.equal(conditionTime(new Date('2026-03-01T10:00:00.789Z')), '2026-03-01T10:00:00Z');
  });

  it('capText never splits a surrogate pair', () => {
    assert.equal(capText('abc', 3), 'abc');
    assert.equal(capText('abcdef', 4), 'abc…');
    const emoji = 'ab😀😀';
    const cut = capText(emoji, 4);
    assert.equal(cut, 'ab…');
    assert.ok(cut.length <= 4);
  });

  it('listMessages keeps whole messages and counts the rest', () => {
    assert.equal(listMessages([]), '');
    assert.equal(listMessages(['a', 'b']), 'a; b');
    const parts = Array.from({ length: 10 }, (_, i) => `m${i}`.padEnd(20, '.'));
    const out = listMessages(parts, 100);
    assert.ok(out.length <= 100, out);
    assert.match(out, /^m0\.+; m1\.+; and 8 more$/);
    const huge = listMessages(['y'.repeat(500), 'z'], 100);
    assert.ok(huge.length <= 100);
    assert.match(huge, /^y+…; and 1 more$/);
    assert.equal(listMessages(['y'.repeat(500)], 100).length, 100);
  });
});
