import assert from 'node:assert/strict';
import { buildProxyView, endpointsFor } from '../../mesh-model/proxy-view.ts';
import type { Endpoint } from '../../mesh-model/endpoints.ts';
import type { K8sObject } from '../../mesh-model/k8s-objects.ts';
import { stripObject } from '../../protocol/config-scope.ts';
import { LoadBalancer } from '../../sidecar/load-balancer.ts';
import { serviceWithEndpoints } from '../support/mesh-manifests.ts';

type Conditions = { ready?: boolean; serving?: boolean; terminating?: boolean };

/** Service app/svc with one endpoint per entry, 10.0.0.1, 10.0.0.2, … with these conditions. */
function objects(conditions: Conditions[]): K8sObject[] {
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
  return [service!, slice!];
}

function endpoints(conditions: Conditions[], strip = false): readonly Endpoint[] {
  const input = strip ? objects(conditions).map((o) => stripObject(o)!) : objects(conditions);
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
});
