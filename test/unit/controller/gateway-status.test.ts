import assert from 'node:assert/strict';
import {
  dataPlaneState,
  GatewayStatusCache,
  gatewayClassStatusUpdate,
  gatewayProgrammed,
  gatewayStatusUpdate,
  serviceAddresses,
} from '../../../controller/gateway-status-loop.ts';
import type { AddressCheck } from '../../../controller/gateway-address-probe.ts';
import { routeStatusUpdate } from '../../../controller/route-status-loop.ts';
import type { RouteParentStatus } from '../../../controller/route-status.ts';
import { MESH_CONTROLLER_NAME } from '../../../mesh-model/controller-name.ts';
import { GATEWAY_SUPPORTED_FEATURES, type ListenerStatus } from '../../../mesh-model/gateway-status.ts';
import type { K8sObject } from '../../../mesh-model/k8s-objects.ts';
import { buildMeshModel } from '../../../mesh-model/translate.ts';

const T0 = '2026-01-01T00:00:00Z';
const T1 = '2026-01-01T00:01:00Z';
const GW_CONTROLLER = 'sluice.dev/gateway-controller';

const accepted = { type: 'Accepted', status: 'True' as const, reason: 'Accepted', message: 'ok' };
const listener: ListenerStatus = {
  name: 'http',
  supportedKinds: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute' }],
  attachedRoutes: 2,
  conditions: [
    accepted,
    { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'ok' },
    { type: 'Conflicted', status: 'False', reason: 'NoConflicts', message: 'ok' },
  ],
};

function gatewayObject(status?: unknown): K8sObject {
  return {
    kind: 'Gateway',
    metadata: { name: 'web', namespace: 'edge', generation: 3 },
    spec: {},
    ...(status ? { status } : {}),
  };
}

type Status = Record<string, unknown> & {
  conditions: {
    type: string;
    status: string;
    reason: string;
    lastTransitionTime: string;
    observedGeneration?: number;
  }[];
  listeners: { conditions: { type: string; status: string }[]; attachedRoutes: number }[];
  addresses?: unknown;
};

describe('gateway status (controller side)', () => {
  const computed = { conditions: [accepted], listeners: [listener] };
  const ready = {
    readyPods: 1,
    addresses: [{ type: 'IPAddress' as const, value: '10.96.0.5' }],
    ports: [80],
    problem: undefined,
  };

  it('is Programmed only with a ready pod and an address; addresses come from the Service', () => {
    const waiting = gatewayStatusUpdate(gatewayObject(), computed, { ...ready, readyPods: 0 }, T0) as Status;
    const programmed = waiting.conditions.find((c) => c.type === 'Programmed')!;
    assert.equal(programmed.status, 'False');
    assert.equal(programmed.reason, 'Pending');
    assert.equal(waiting.listeners[0]!.conditions.find((c) => c.type === 'Programmed')!.status, 'False');

    const done = gatewayStatusUpdate(gatewayObject(waiting), computed, ready, T1) as Status;
    assert.equal(done.conditions.find((c) => c.type === 'Programmed')!.status, 'True');
    assert.deepEqual(done.addresses, [{ type: 'IPAddress', value: '10.96.0.5' }]);
    assert.equal(done.listeners[0]!.attachedRoutes, 2);
    assert.equal(done.listeners[0]!.conditions.find((c) => c.type === 'Programmed')!.status, 'True');
    // Accepted held: its time stays; Programmed changed: new time; generation observed.
    assert.equal(done.conditions.find((c) => c.type === 'Accepted')!.lastTransitionTime, T0);
    assert.equal(done.conditions.find((c) => c.type === 'Programmed')!.lastTransitionTime, T1);
    assert.equal(done.conditions[0]!.observedGeneration, 3);
    // Nothing changes: nothing to write.
    assert.equal(gatewayStatusUpdate(gatewayObject(done), computed, ready, T1), undefined);
  });

  it('is Programmed only once the address accepts connections, when the controller checks it', () => {
    const programmed = (address: AddressCheck) => gatewayProgrammed(true, { ...ready, address });
    const waiting = programmed({ state: 'waiting', detail: '10.96.0.5:80: ECONNREFUSED' });
    assert.deepEqual([waiting.status, waiting.reason], ['False', 'Pending']);
    assert.match(waiting.message, /accept connections \(10\.96\.0\.5:80: ECONNREFUSED\)/);
    assert.equal(programmed({ state: 'answering' }).status, 'True');
    // Given up (a NetworkPolicy may keep the controller out): Programmed, and the message says so.
    const unverified = programmed({ state: 'unverified', detail: '10.96.0.5:80: ETIMEDOUT' });
    assert.equal(unverified.status, 'True');
    assert.match(unverified.message, /not verified from the controller \(10\.96\.0\.5:80: ETIMEDOUT\)/);
  });

  it('reports a provisioning problem as Programmed False/Invalid', () => {
    const s = gatewayStatusUpdate(gatewayObject(), computed, { ...ready, problem: 'bad type' }, T0) as Status;
    const p = s.conditions.find((c) => c.type === 'Programmed')!;
    assert.deepEqual([p.status, p.reason], ['False', 'Invalid']);
  });

  it('takes load balancer addresses first, cluster IPs otherwise, counts only ready pods', () => {
    const svc = {
      kind: 'Service',
      metadata: { name: 'web-sluice', namespace: 'edge' },
      spec: { clusterIP: '10.96.0.5', clusterIPs: ['10.96.0.5'] },
    } as K8sObject;
    assert.deepEqual(serviceAddresses(svc), [{ type: 'IPAddress', value: '10.96.0.5' }]);
    const lb = { ...svc, status: { loadBalancer: { ingress: [{ ip: '192.0.2.1' }] } } } as K8sObject;
    assert.deepEqual(serviceAddresses(lb), [{ type: 'IPAddress', value: '192.0.2.1' }]);
    const pod = (ready: string): K8sObject => ({
      kind: 'Pod',
      metadata: {
        name: `p${ready}`,
        namespace: 'edge',
        labels: { 'gateway.networking.k8s.io/gateway-name': 'web' },
      },
      status: { conditions: [{ type: 'Ready', status: ready }] },
    });
    const state = dataPlaneState('edge', 'web', [pod('True'), pod('False')], [svc], undefined);
    assert.equal(state.readyPods, 1);
    assert.equal(state.addresses.length, 1);
    const withPorts = { ...svc, spec: { ...(svc.spec as object), ports: [{ port: 80 }, { port: 8443 }] } };
    assert.deepEqual(
      dataPlaneState('edge', 'web', [], [withPorts as K8sObject], undefined).ports,
      [80, 8443],
    );
  });

  it('writes the class conditions with the supported features', () => {
    const gc = { kind: 'GatewayClass', metadata: { name: 'sluice', generation: 1 } } as K8sObject;
    const s = gatewayClassStatusUpdate(gc, [accepted], T0) as { supportedFeatures: { name: string }[] };
    assert.deepEqual(
      s.supportedFeatures.map((f) => f.name),
      [...GATEWAY_SUPPORTED_FEATURES],
    );
  });

  it('merges gateway route parents beside the mesh entries and other controllers, keeping all', () => {
    const other: RouteParentStatus = {
      parentRef: { name: 'theirs', kind: 'Gateway', group: 'gateway.networking.k8s.io' },
      controllerName: 'example.com/other',
      conditions: [
        { type: 'Accepted', status: 'True', reason: 'Accepted', message: '', lastTransitionTime: T0 },
      ],
    };
    const route = {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'r', namespace: 'shop', generation: 2 },
      spec: {
        parentRefs: [
          { group: '', kind: 'Service', name: 'svc' },
          { group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: 'edge', name: 'web' },
          { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'theirs' },
        ],
        rules: [{ backendRefs: [{ name: 'svc', port: 80 }] }],
      },
      status: { parents: [other] },
    } as K8sObject;
    const svc = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'svc', namespace: 'shop' },
      spec: { clusterIP: '10.96.0.9', ports: [{ port: 80 }] },
    } as K8sObject;
    const model = buildMeshModel([svc, route]);
    const gatewayParents = [
      {
        parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: 'edge', name: 'web' },
        controllerName: GW_CONTROLLER,
        conditions: [
          accepted,
          { type: 'ResolvedRefs', status: 'True' as const, reason: 'ResolvedRefs', message: 'ok' },
        ],
      },
    ];
    const status = routeStatusUpdate(route, model, T0, gatewayParents) as { parents: RouteParentStatus[] };
    assert.deepEqual(
      status.parents.map((p) => p.controllerName),
      ['example.com/other', MESH_CONTROLLER_NAME, GW_CONTROLLER],
    );
    const ours = status.parents[2]!;
    assert.equal(ours.conditions[0]!.lastTransitionTime, T0);
    assert.equal(ours.conditions[0]!.observedGeneration, 2);
    // Written back: nothing more to do; the gateway entry goes when the gateway controller no longer has one.
    const written = { ...route, status } as K8sObject;
    assert.equal(routeStatusUpdate(written, model, T1, gatewayParents), undefined);
    const dropped = routeStatusUpdate(written, model, T1, []) as { parents: RouteParentStatus[] };
    assert.deepEqual(
      dropped.parents.map((p) => p.controllerName),
      ['example.com/other', MESH_CONTROLLER_NAME],
    );
  });

  it('computes the statuses once per change, however many readers (route and gateway status loops)', () => {
    let reads = 0;
    const objects: K8sObject[] = [
      {
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'GatewayClass',
        metadata: { name: 'sluice' },
        spec: { controllerName: GW_CONTROLLER },
      },
      {
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'Gateway',
        metadata: { name: 'web', namespace: 'edge' },
        spec: { gatewayClassName: 'sluice', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] },
      },
    ];
    const cache = new GatewayStatusCache(() => {
      reads++;
      return objects;
    });
    const first = cache.get();
    assert.equal(cache.get(), first);
    assert.equal(reads, 1);
    assert.ok(first.gateways.has('edge/web'));
    objects.pop();
    cache.invalidate();
    assert.ok(!cache.get().gateways.has('edge/web'));
    assert.equal(reads, 2);
  });
});
