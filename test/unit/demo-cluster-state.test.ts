import assert from 'node:assert/strict';
import {
  containerProblems,
  gatewayParentStatus,
  gatewayState,
  isImageProblem,
  meshParentStatus,
  podsWithoutSidecar,
  rolloutOf,
  runningPod,
  sidecarRoute,
  webhooksWithoutCaBundle,
} from '../../demo/cluster-state.ts';

function deployment(generation: number, spec: object, status: object): object {
  return { metadata: { name: 'web', generation }, spec, status };
}

function pod(name: string, spec: object, status: object = {}, metadata: object = {}): object {
  return { metadata: { name, ...metadata }, spec, status };
}

const condition = (type: string, status: string, observedGeneration: number, reason = type) => ({
  type,
  status,
  reason,
  message: `${type} message`,
  observedGeneration,
});

function route(generation: number, parents: object[]): object {
  return { metadata: { name: 'helloworld', generation }, status: { parents } };
}

const meshParent = (conditions: object[]) => ({
  parentRef: { group: '', kind: 'Service', name: 'helloworld', port: 5000 },
  controllerName: 'sluice.dev/mesh',
  conditions,
});

describe('demo: cluster state', () => {
  describe('rolloutOf', () => {
    it('is done when the current generation is updated and available, with no old replicas left', () => {
      const ready = { observedGeneration: 2, replicas: 2, updatedReplicas: 2, availableReplicas: 2 };
      assert.deepEqual(rolloutOf(deployment(2, { replicas: 2 }, ready)), {
        name: 'web',
        done: true,
        detail: '2 of 2 available, 2 updated',
      });
      assert.equal(rolloutOf(deployment(3, { replicas: 2 }, ready)).done, false);
      assert.equal(rolloutOf(deployment(2, { replicas: 2 }, { ...ready, replicas: 3 })).done, false);
      assert.equal(rolloutOf(deployment(2, { replicas: 2 }, { ...ready, availableReplicas: 1 })).done, false);
      assert.equal(rolloutOf(deployment(1, {}, { observedGeneration: 1 })).done, false);
    });

    it('tells why a rollout cannot progress (a webhook refusing pods)', () => {
      const status = {
        observedGeneration: 1,
        conditions: [
          {
            type: 'ReplicaFailure',
            status: 'True',
            reason: 'FailedCreate',
            message: 'failed calling webhook "inject.sluice.dev"',
          },
        ],
      };
      assert.equal(
        rolloutOf(deployment(1, { replicas: 1 }, status)).detail,
        'FailedCreate: failed calling webhook "inject.sluice.dev"',
      );
    });

    it('survives objects of any shape', () => {
      for (const junk of [null, 3, 'x', [], {}, { metadata: 1, spec: [], status: 'no' }]) {
        assert.equal(rolloutOf(junk).done, false);
      }
    });
  });

  it('finds containers stuck on images, crashes or config, init containers included', () => {
    const stuck = (name: string, reason: string) => ({
      name,
      image: `${name}:dev`,
      state: { waiting: { reason, message: `${reason}!` } },
    });
    const pods = [
      pod('a', {}, { initContainerStatuses: [stuck('sluice-proxy', 'ErrImageNeverPull')] }),
      pod(
        'b',
        {},
        { containerStatuses: [stuck('app', 'ContainerCreating'), stuck('side', 'CrashLoopBackOff')] },
      ),
      pod('c', {}, { containerStatuses: [{ name: 'app', state: { running: {} } }] }),
      'junk',
    ];
    const problems = containerProblems(pods);
    assert.deepEqual(
      problems.map((p) => [p.pod, p.container, p.image, p.reason, p.message, isImageProblem(p)]),
      [
        ['a', 'sluice-proxy', 'sluice-proxy:dev', 'ErrImageNeverPull', 'ErrImageNeverPull!', true],
        ['b', 'side', 'side:dev', 'CrashLoopBackOff', 'CrashLoopBackOff!', false],
      ],
    );
  });

  it('lists pods without the sluice-proxy container, native sidecar or classic, ignoring terminating ones', () => {
    const pods = [
      pod('native', {
        initContainers: [{ name: 'sluice-init' }, { name: 'sluice-proxy' }],
        containers: [{ name: 'app' }],
      }),
      pod('classic', { containers: [{ name: 'app' }, { name: 'sluice-proxy' }] }),
      pod('bare', { containers: [{ name: 'app' }] }),
      pod('old', { containers: [{ name: 'app' }] }, {}, { deletionTimestamp: '2026-01-01T00:00:00Z' }),
    ];
    assert.deepEqual(podsWithoutSidecar(pods), ['bare']);
  });

  it('finds a running client pod', () => {
    const pods = [
      pod('client-old', {}, { phase: 'Running' }, { labels: { app: 'client' }, deletionTimestamp: 'x' }),
      pod('client-pending', {}, { phase: 'Pending' }, { labels: { app: 'client' } }),
      pod('other', {}, { phase: 'Running' }, { labels: { app: 'helloworld' } }),
      pod('client-1', {}, { phase: 'Running' }, { labels: { app: 'client' } }),
    ];
    assert.equal(runningPod(pods, 'client'), 'client-1');
    assert.equal(runningPod([], 'client'), undefined);
  });

  it('waits for a caBundle in every webhook', () => {
    const config = (bundles: (string | undefined)[]) => ({
      webhooks: bundles.map((caBundle, i) => ({
        name: `w${i}`,
        clientConfig: caBundle === undefined ? {} : { caBundle },
      })),
    });
    assert.deepEqual(webhooksWithoutCaBundle(config(['LS0t', undefined, ''])), ['w1', 'w2']);
    assert.deepEqual(webhooksWithoutCaBundle(config(['LS0t'])), []);
    assert.deepEqual(webhooksWithoutCaBundle({}), ['(no webhooks)']);
  });

  describe('meshParentStatus', () => {
    it('is accepted when Accepted and ResolvedRefs are True for the current generation', () => {
      const status = meshParentStatus(
        route(2, [meshParent([condition('Accepted', 'True', 2), condition('ResolvedRefs', 'True', 2)])]),
        'helloworld',
      );
      assert.deepEqual(status, {
        accepted: true,
        lines: [
          'Accepted=True (Accepted): Accepted message',
          'ResolvedRefs=True (ResolvedRefs): ResolvedRefs message',
        ],
      });
    });

    it('is not accepted for an older generation, a False condition, or another controller', () => {
      const old = meshParentStatus(
        route(3, [meshParent([condition('Accepted', 'True', 2), condition('ResolvedRefs', 'True', 2)])]),
        'helloworld',
      );
      assert.equal(old.accepted, false);
      assert.match(old.lines[0]!, /\[generation 2\]$/);
      const unresolved = meshParentStatus(
        route(1, [
          meshParent([
            condition('Accepted', 'True', 1),
            condition('ResolvedRefs', 'False', 1, 'BackendNotFound'),
          ]),
        ]),
        'helloworld',
      );
      assert.equal(unresolved.accepted, false);
      assert.equal(unresolved.lines[1], 'ResolvedRefs=False (BackendNotFound): ResolvedRefs message');
      const foreign = { ...meshParent([condition('Accepted', 'True', 1)]), controllerName: 'example.net/gw' };
      assert.deepEqual(meshParentStatus(route(1, [foreign]), 'helloworld'), {
        accepted: false,
        lines: ['no status from sluice.dev/mesh yet'],
      });
      assert.equal(meshParentStatus({}, 'helloworld').accepted, false);
    });
  });

  describe('gatewayParentStatus', () => {
    it("reads the gateway controller's entry for a Gateway parent (kind defaults to Gateway)", () => {
      const entry = {
        parentRef: { name: 'storefront', sectionName: 'http' },
        controllerName: 'sluice.dev/gateway-controller',
        conditions: [condition('Accepted', 'True', 1), condition('ResolvedRefs', 'True', 1)],
      };
      assert.equal(gatewayParentStatus(route(1, [entry]), 'storefront').accepted, true);
      assert.equal(gatewayParentStatus(route(1, [entry]), 'other').accepted, false);
      const meshOnly = route(1, [meshParent([condition('Accepted', 'True', 1)])]);
      assert.deepEqual(gatewayParentStatus(meshOnly, 'helloworld').lines, [
        'no status from sluice.dev/gateway-controller yet',
      ]);
    });
  });

  describe('gatewayState', () => {
    const gateway = (generation: number, conditions: object[], addresses: object[]) => ({
      metadata: { name: 'storefront', generation },
      status: { conditions, addresses },
    });

    it('is ready with Programmed True for the current generation and an address', () => {
      const state = gatewayState(
        gateway(2, [condition('Programmed', 'True', 2)], [{ type: 'IPAddress', value: '10.96.0.20' }]),
      );
      assert.deepEqual(state, {
        ready: true,
        address: '10.96.0.20',
        lines: ['Programmed=True (Programmed): Programmed message'],
      });
    });

    it('is not ready without an address, for an older generation, or without status', () => {
      assert.equal(gatewayState(gateway(1, [condition('Programmed', 'True', 1)], [])).ready, false);
      const old = gatewayState(gateway(3, [condition('Programmed', 'True', 2)], [{ value: '10.96.0.20' }]));
      assert.equal(old.ready, false);
      assert.deepEqual(gatewayState({}).lines, ['no status yet', 'no address yet']);
    });
  });

  describe('sidecarRoute', () => {
    const expected = {
      route: 'HTTPRoute sluice-demo/helloworld',
      service: 'sluice-demo/helloworld:5000',
      generation: 2,
    };
    const dump = (version: number, routes: string[], extra: object = {}) => ({
      identity: { spiffeId: 'spiffe://cluster.local/ns/sluice-demo/sa/client' },
      config: {
        version,
        destinations: [
          { destination: '10.96.0.20:5000', service: 'sluice-demo/helloworld:5000', routes },
          { destination: '10.96.0.21:5000', service: 'sluice-demo/helloworld-v1:5000', routes: [] },
        ],
        ...extra,
      },
    });

    it('needs a config, the destination and the route on it', () => {
      assert.equal(sidecarRoute({ config: null }, expected).detail, 'no config loaded yet');
      assert.equal(sidecarRoute(dump(3, []), expected).current, false);
      assert.deepEqual(sidecarRoute(dump(3, ['HTTPRoute sluice-demo/helloworld']), expected), {
        current: true,
        version: 3,
        detail: 'config version 3',
      });
      assert.equal(sidecarRoute('junk', expected).current, false);
    });

    it('after a change without generations in the dump: needs a newer config version than before it', () => {
      const routes = ['HTTPRoute sluice-demo/helloworld'];
      assert.equal(sidecarRoute(dump(5, routes), { ...expected, versionBefore: 5 }).current, false);
      assert.equal(sidecarRoute(dump(6, routes), { ...expected, versionBefore: 5 }).current, true);
    });

    it('uses per-route generations when the dump has them', () => {
      const routes = ['HTTPRoute sluice-demo/helloworld'];
      const withGeneration = (generation: number) =>
        dump(9, routes, { routes: [{ route: 'HTTPRoute sluice-demo/helloworld', generation }] });
      assert.equal(sidecarRoute(withGeneration(1), { ...expected, versionBefore: 5 }).current, false);
      assert.deepEqual(sidecarRoute(withGeneration(2), expected), {
        current: true,
        version: 9,
        detail: 'HTTPRoute sluice-demo/helloworld generation 2',
      });
    });
  });
});
