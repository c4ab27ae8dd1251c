import assert from 'node:assert/strict';
import { buildProxyView, endpointsFor } from '../../mesh-model/proxy-view.ts';
import { endpointTier, nodeUnreachableServices, type Endpoint } from '../../mesh-model/endpoints.ts';
import type { K8sObject } from '../../mesh-model/k8s-objects.ts';
import { stripObject } from '../../protocol/config-scope.ts';
import { LoadBalancer } from '../../sidecar/load-balancer.ts';
import { serviceWithEndpoints } from '../support/mesh-manifests.ts';

type Conditions = { ready?: boolean; serving?: boolean; terminating?: boolean };
/** A pod's kubelet verdict: ContainersReady, and its readiness gates' conditions (undefined: not set). */
type PodState = { containersReady: boolean; gates?: Record<string, boolean | undefined> };

/**
 * Service app/svc with one endpoint per entry, 10.0.0.1, 10.0.0.2, … with these conditions, and the pods
 * p1, p2, … in these states (no Pod object where the state is undefined).
 */
function objects(conditions: Conditions[], states: (PodState | undefined)[] = []): K8sObject[] {
  const pods = conditions.map((_, i) => ({
    name: `p${i + 1}`,
    namespace: 'app',
    ip: `10.0.0.${i + 1}`,
    serviceAccount: 'default',
    meshed: false,
  }));
  const [service, slice] = serviceWithEndpoints('app', 'svc', '10.96.0.1', [[80, 8080]], pods);
  const endpoints = (slice as unknown as { endpoints: { conditions: Conditions }[] }).endpoints;
  endpoints.forEach((e, i) => (e.conditions = conditions[i]!));
  const podObjects = states.flatMap((state, i) => {
    if (!state) return [];
    const gates = Object.entries(state.gates ?? {});
    const status = (on: boolean) => (on ? 'True' : 'False');
    return [
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `p${i + 1}`, namespace: 'app' },
        spec: {
          containers: [{ name: 'app' }],
          ...(gates.length > 0 ? { readinessGates: gates.map(([type]) => ({ conditionType: type })) } : {}),
        },
        status: {
          conditions: [
            { type: 'PodScheduled', status: 'True', lastTransitionTime: '2026-12-04T00:00:00Z' },
            // Ready as the kubelet computes it; the node lifecycle controller may have set it False since.
            { type: 'Ready', status: 'False', lastTransitionTime: '2026-12-04T00:02:12Z' },
            { type: 'ContainersReady', status: status(state.containersReady) },
            ...gates.flatMap(([type, on]) => (on === undefined ? [] : [{ type, status: status(on) }])),
          ],
        },
      },
    ];
  });
  return [service!, slice!, ...podObjects];
}

function endpoints(
  conditions: Conditions[],
  strip = false,
  states: (PodState | undefined)[] = [],
): readonly Endpoint[] {
  const all = objects(conditions, states);
  const input = strip ? all.map((o) => stripObject(o)!) : all;
  return endpointsFor(buildProxyView(input, 'app', 'cluster.local'), 'app', 'svc', 80);
}

/** Uniform-looking but reproducible numbers in [0, 1). */
function seeded(seed: number): () => number {
  let s = seed;
  return () => ((s = (s * 16807) % 2147483647) - 1) / 2147483646;
}

function picked(eps: readonly Endpoint[]): string[] {
  const lb = new LoadBalancer({ random: seeded(3) });
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const ep = lb.pick(eps);
    if (ep) seen.add(ep.address);
  }
  return [...seen].sort();
}

describe('endpoint lifecycle: EndpointSlice conditions → proxy view → load balancer', () => {
  it('reads ready, serving and terminating, with the API defaults for unset ones', () => {
    const eps = endpoints([
      {},
      { ready: true },
      { ready: false, serving: true, terminating: true },
      { ready: false, serving: false, terminating: true },
      { ready: false },
      { ready: true, terminating: true }, // not a state the API writes: terminating wins
    ]);
    assert.deepEqual(
      eps.map((e) => [e.address, e.ready, e.serving, e.terminating]),
      [
        ['10.0.0.1', true, true, false],
        ['10.0.0.2', true, true, false],
        ['10.0.0.3', false, true, true],
        ['10.0.0.4', false, false, true],
        ['10.0.0.5', false, false, false],
        ['10.0.0.6', false, true, true],
      ],
    );
  });

  it('the conditions survive the config stream (stripped objects give the same endpoints)', () => {
    const conditions = [
      { ready: true },
      { ready: false, serving: true, terminating: true },
      { ready: false },
    ];
    assert.deepEqual(endpoints(conditions, true), endpoints(conditions));
  });

  it('terminating endpoints get no new requests while another is ready', () => {
    const eps = endpoints([
      { ready: true },
      { ready: false, serving: true, terminating: true },
      { ready: true },
    ]);
    assert.deepEqual(picked(eps), ['10.0.0.1', '10.0.0.3']);
  });

  it('when none is ready, the terminating ones that still serve take requests (as kube-proxy does)', () => {
    const eps = endpoints([
      { ready: false, serving: true, terminating: true },
      { ready: false, serving: false, terminating: true },
      { ready: false, serving: true, terminating: true },
      { ready: false }, // not ready and not terminating: starting, never used
    ]);
    assert.deepEqual(picked(eps), ['10.0.0.1', '10.0.0.3']);
  });

  it('nothing to pick when no endpoint is ready and none is terminating and serving', () => {
    assert.deepEqual(
      picked(endpoints([{ ready: false }, { ready: false, serving: false, terminating: true }])),
      [],
    );
  });

  describe('pods of a NotReady node (ADR 0021): their kubelet last found them ready', () => {
    const notReady = { ready: false, serving: false, terminating: false };
    const kubeletReady: PodState = { containersReady: true };

    it('none ready: the endpoints whose pod has its containers and every readiness gate ready take requests', () => {
      const states: (PodState | undefined)[] = [
        kubeletReady,
        { containersReady: false }, // a probe failing, or starting
        { containersReady: true, gates: { 'example.com/lb': true, 'example.com/warm': true } },
        { containersReady: true, gates: { 'example.com/lb': true, 'example.com/warm': false } },
        { containersReady: true, gates: { 'example.com/lb': undefined } }, // a gate not set yet: unmet
        undefined, // no Pod object: nothing known
      ];
      const eps = endpoints(Array<Conditions>(6).fill(notReady), false, states);
      assert.deepEqual(
        eps.map((e) => e.kubeletReady),
        [true, false, true, false, false, false],
      );
      assert.deepEqual(picked(eps), ['10.0.0.1', '10.0.0.3']);
      assert.deepEqual(
        eps.map((e) => endpointTier(e, false)),
        ['node-unreachable', 'unused', 'node-unreachable', 'unused', 'unused', 'unused'],
      );
      assert.deepEqual(
        nodeUnreachableServices(
          buildProxyView(objects(Array<Conditions>(6).fill(notReady), states), 'app', 'cluster.local')
            .endpoints,
        ),
        ['app/svc:80'],
      );
    });

    it('one ready endpoint takes everything (a single dead node among live ones)', () => {
      const eps = endpoints([notReady, { ready: true }, notReady], false, [
        kubeletReady,
        kubeletReady,
        kubeletReady,
      ]);
      assert.deepEqual(picked(eps), ['10.0.0.2']);
      assert.deepEqual(
        eps.map((e) => endpointTier(e, true)),
        ['unused', 'ready', 'unused'],
      );
    });

    it('with terminating ones still serving, both are used; a terminating one is never node-unreachable', () => {
      const eps = endpoints(
        [
          { ready: false, serving: true, terminating: true },
          notReady,
          { ready: false, serving: false, terminating: true },
        ],
        false,
        [kubeletReady, kubeletReady, kubeletReady],
      );
      assert.deepEqual(picked(eps), ['10.0.0.1', '10.0.0.2']);
      assert.deepEqual(
        eps.map((e) => endpointTier(e, false)),
        ['terminating', 'node-unreachable', 'unused'],
      );
    });

    it('a single endpoint: used when its kubelet last found it ready, not otherwise', () => {
      assert.deepEqual(picked(endpoints([notReady], false, [kubeletReady])), ['10.0.0.1']);
      assert.deepEqual(picked(endpoints([notReady], false, [{ containersReady: false }])), []);
      assert.deepEqual(picked(endpoints([notReady])), []);
    });

    it('the stream keeps what the rule reads, without timestamps or other conditions', () => {
      const conditions = Array<Conditions>(4).fill(notReady);
      const states: PodState[] = [
        kubeletReady,
        { containersReady: false },
        { containersReady: true, gates: { 'example.com/lb': true } },
        { containersReady: true, gates: { 'example.com/lb': false } },
      ];
      assert.deepEqual(endpoints(conditions, true, states), endpoints(conditions, false, states));
      const pod = objects(conditions, states).find((o) => o.metadata?.name === 'p3')!;
      const stripped = stripObject(pod)!;
      assert.deepEqual(stripped.status, {
        conditions: [
          { type: 'ContainersReady', status: 'True' },
          { type: 'example.com/lb', status: 'True' },
        ],
      });
      assert.deepEqual((stripped.spec as { readinessGates?: unknown }).readinessGates, [
        { conditionType: 'example.com/lb' },
      ]);
    });
  });

  describe('a restarted kubelet: every container not ready until its first probe (ADR 0021)', () => {
    const ep = (address: string, state: Partial<Endpoint>): Endpoint => ({
      address,
      port: 8080,
      ready: false,
      serving: false,
      terminating: false,
      kubeletReady: false,
      identity: undefined,
      pod: undefined,
      ...state,
    });

    it("an endpoint used as an unreachable node's stays a last resort for 15 s", () => {
      const lb = new LoadBalancer({ random: seeded(5) });
      assert.equal(lb.pick([ep('10.0.0.1', { kubeletReady: true })], undefined, 1000)?.address, '10.0.0.1');
      const dipped = [ep('10.0.0.1', {}), ep('10.0.0.2', {})]; // .2 was never used: starting
      assert.equal(lb.pick(dipped, undefined, 15_999)?.address, '10.0.0.1');
      assert.equal(lb.pick([ep('10.0.0.2', {})], undefined, 1000), undefined);
      assert.equal(lb.pick(dipped, undefined, 16_000), undefined);
    });

    it('not while another endpoint is eligible, nor when terminating', () => {
      const lb = new LoadBalancer({ random: seeded(5) });
      lb.pick([ep('10.0.0.1', { kubeletReady: true }), ep('10.0.0.2', { kubeletReady: true })], undefined, 0);
      const serving = ep('10.0.0.2', { serving: true, terminating: true });
      assert.equal(lb.pick([ep('10.0.0.1', {}), serving], undefined, 1000), serving);
      assert.equal(lb.pick([ep('10.0.0.1', { terminating: true })], undefined, 1000), undefined);
      const ready = ep('10.0.0.3', { ready: true, serving: true });
      assert.equal(lb.pick([ep('10.0.0.1', {}), ready], undefined, 1000), ready);
    });
  });
});
