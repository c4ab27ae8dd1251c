// The gateway feed's per-change updates against the full recompute: after random bursts of informer changes,
// what each gateway proxy holds (snapshot plus deltas) equals gatewayObjects() of the inputs.
import assert from 'node:assert/strict';
import type { ConfigSubscriber } from '../../../controller/config-hub.ts';
import { GatewayFeed, gatewayObjects, type GatewayFeedInputs } from '../../../controller/gateway-feed.ts';
import type { K8sObject } from '../../../mesh-model/k8s-objects.ts';
import { parseFrame } from '../../../protocol/config-protocol.ts';
import { resourceKey } from '../../../protocol/config-scope.ts';
import { Prng } from '../../support/fuzz/prng.ts';

const GW = 'gateway.networking.k8s.io/v1';
type Input = keyof GatewayFeedInputs;
const pem = (label: string, body: string): string =>
  Buffer.from(`-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`).toString('base64');

/** Every input's possible objects, each in a few versions. */
function variants(rng: Prng): [Input, () => K8sObject][] {
  const v = (): number => rng.int(0, 2);
  const meta = (namespace: string | undefined, name: string, labels: Record<string, string> = {}) => ({
    name,
    ...(namespace ? { namespace } : {}),
    labels,
    creationTimestamp: '2026-12-01T00:00:00Z',
  });
  const listeners = (): unknown[] => [
    { name: 'http', port: 80, protocol: 'HTTP', allowedRoutes: { namespaces: { from: 'All' } } },
    {
      name: 'a',
      port: 443,
      protocol: 'HTTPS',
      hostname: 'a.example',
      tls: { certificateRefs: [{ name: rng.pick(['own', 'other']) }] },
      allowedRoutes: { namespaces: { from: 'All' } },
    },
    {
      name: 'b',
      port: 443,
      protocol: 'HTTPS',
      hostname: 'b.example',
      tls: { certificateRefs: [{ name: 'foreign', namespace: 'vault' }] },
    },
  ];
  const out: [Input, () => K8sObject][] = [];
  for (const ns of ['edge', 'apps', 'vault'])
    out.push([
      'namespaces',
      () => ({ apiVersion: 'v1', kind: 'Namespace', metadata: meta(undefined, ns, { v: `${v()}` }) }),
    ]);
  out.push([
    'gatewayClasses',
    () => ({
      apiVersion: GW,
      kind: 'GatewayClass',
      metadata: meta(undefined, 'sluice'),
      spec: { controllerName: 'sluice.dev/gateway-controller', description: `${v()}` },
    }),
  ]);
  for (const name of ['web', 'api'])
    out.push([
      'gateways',
      () => ({
        apiVersion: GW,
        kind: 'Gateway',
        metadata: meta('edge', name),
        spec: {
          gatewayClassName: 'sluice',
          listeners: name === 'web' ? listeners() : listeners().slice(0, 1),
          ...(rng.chance(0.5)
            ? {
                tls: {
                  frontend: {
                    default: {
                      validation: { caCertificateRefs: [{ name: 'ca', kind: 'ConfigMap', group: '' }] },
                    },
                  },
                },
              }
            : {}),
        },
      }),
    ]);
  for (let i = 0; i < 4; i++) {
    out.push([
      'mesh',
      () => ({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: meta('apps', `s${i}`),
        spec: { clusterIP: `10.0.0.${i + 1}`, ports: [{ name: 'http', port: 80 + v(), protocol: 'TCP' }] },
      }),
    ]);
    out.push([
      'mesh',
      () => ({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: meta('apps', `p${i}`, { app: `s${i}` }),
        status: { podIP: `10.1.0.${v() + 1}`, phase: 'Running' },
      }),
    ]);
    out.push([
      'routes',
      () => ({
        apiVersion: GW,
        kind: i === 3 ? 'GRPCRoute' : 'HTTPRoute',
        metadata: meta(i === 0 ? 'edge' : 'apps', `r${i}`),
        spec: {
          parentRefs: rng.pick([
            [{ name: 'web', namespace: 'edge' }],
            [{ name: 'api', namespace: 'edge', sectionName: 'http' }],
            [{ kind: 'Service', group: '', name: 's0' }],
            [
              { name: 'web', namespace: 'edge' },
              { name: 'api', namespace: 'edge' },
            ],
          ]),
          hostnames: [rng.pick(['a.example', 'b.example', 'c.example'])],
          rules: [{ backendRefs: [{ name: `s${i}`, namespace: 'apps', port: 80 }] }],
        },
      }),
    ]);
  }
  for (const [ns, name] of [
    ['edge', 'own'],
    ['edge', 'other'],
    ['vault', 'foreign'],
    ['edge', 'unrelated'],
  ] as const)
    out.push([
      'secrets',
      () =>
        ({
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: meta(ns, name),
          type: 'kubernetes.io/tls',
          data: { 'tls.crt': pem('CERTIFICATE', `${v()}`), 'tls.key': pem('PRIVATE KEY', 'k') },
        }) as K8sObject,
    ]);
  out.push([
    'referenceGrants',
    () => ({
      apiVersion: 'gateway.networking.k8s.io/v1beta1',
      kind: 'ReferenceGrant',
      metadata: meta('vault', 'edge-certs'),
      spec: {
        from: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: 'edge' }],
        to: [{ group: '', kind: rng.pick(['Secret', 'ConfigMap']) }],
      },
    }),
  ]);
  for (const [ns, name] of [
    ['sluice-system', 'sluice-mesh-config'],
    ['edge', 'ca'],
  ] as const)
    out.push([
      'configMaps',
      () =>
        ({
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: meta(ns, name),
          data: { 'ca.crt': `${v()}`, x: '1' },
        }) as K8sObject,
    ]);
  return out;
}

/** What a gateway proxy holds after the frames it was written. */
function replica(): { sub: ConfigSubscriber; objects: Map<string, string> } {
  const objects = new Map<string, string>();
  let version = '';
  const sub: ConfigSubscriber = {
    namespace: 'edge',
    write: (b) => {
      const frame = parseFrame(b.toString().trim());
      assert.ok(typeof frame !== 'string');
      if (frame.type === 'snapshot') {
        objects.clear();
        for (const o of frame.objects) objects.set(resourceKey(o), JSON.stringify(o));
        version = frame.version;
      } else if (frame.type === 'delta') {
        assert.equal(frame.base, version, 'a delta on the version the proxy has');
        for (const o of frame.upserts) objects.set(resourceKey(o), JSON.stringify(o));
        for (const k of frame.removals) objects.delete(k);
        version = frame.version;
      }
    },
    bufferedBytes: () => 0,
    drop: () => undefined,
  };
  return { sub, objects };
}

describe('gateway feed, per-change updates', () => {
  let secretsSeen = 0;
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    it(`matches the full recompute after random bursts (seed ${seed})`, () => {
      const rng = new Prng(seed);
      const pool = variants(rng);
      const store = new Map<Input, Map<string, K8sObject>>();
      const list = (input: Input) => () => [...(store.get(input)?.values() ?? [])];
      const inputs = Object.fromEntries(
        (
          [
            'namespaces',
            'mesh',
            'gatewayClasses',
            'gateways',
            'routes',
            'referenceGrants',
            'secrets',
            'configMaps',
          ] as const
        ).map((i) => [i, list(i)]),
      ) as unknown as GatewayFeedInputs;
      const feed = new GatewayFeed({ inputs, trustDomain: 'cluster.local', epoch: 't' });
      const apply = (emit: boolean): void => {
        const [input, make] = rng.pick(pool);
        const object = make();
        const objects = store.get(input) ?? new Map<string, K8sObject>();
        store.set(input, objects);
        const key = resourceKey(object);
        const old = objects.get(key);
        if (old && rng.chance(0.3)) {
          objects.delete(key);
          if (emit) feed.changed({ input, type: 'delete', object: old });
        } else {
          objects.set(key, object);
          if (emit) feed.changed({ input, type: old ? 'update' : 'add', object, ...(old ? { old } : {}) });
        }
      };
      for (let i = 0; i < 40; i++) apply(false);
      const refs = [
        { namespace: 'edge', name: 'web' },
        { namespace: 'edge', name: 'api' },
        { namespace: 'edge', name: 'missing' },
      ];
      const replicas = refs.map((ref) => {
        const r = replica();
        feed.subscribe(r.sub, ref);
        return { ref, ...r };
      });
      for (let burst = 0; burst < 60; burst++) {
        const n = rng.int(1, 5);
        for (let i = 0; i < n; i++) apply(true);
        feed.flushChanges();
        if (burst === 30) {
          const late = replica();
          feed.subscribe(late.sub, refs[0]!);
          replicas.push({ ref: refs[0]!, ...late });
        }
        for (const r of replicas) {
          if (r.ref.name === 'web')
            secretsSeen += [...r.objects.keys()].filter((k) => k.startsWith('Secret/')).length;
          const expected = new Map(
            gatewayObjects(inputs, r.ref, 'cluster.local').map((o) => [resourceKey(o), JSON.stringify(o)]),
          );
          assert.deepEqual(r.objects, expected, `${r.ref.name} after burst ${burst}`);
        }
      }
      feed.close();
    });
  }
  it('sent the Gateway its Secrets in some of those runs', () => {
    assert.ok(secretsSeen > 0);
  });
});
