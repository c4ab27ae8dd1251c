import assert from 'node:assert/strict';
import type { ConfigSubscriber } from '../../../controller/config-hub.ts';
import { GatewayFeed, gatewayObjects, type GatewayFeedInputs } from '../../../controller/gateway-feed.ts';
import type { K8sObject } from '../../../mesh-model/k8s-objects.ts';
import { parseFrame } from '../../../protocol/config-protocol.ts';

const CERT = Buffer.from('-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n').toString('base64');
const KEY = Buffer.from('-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n').toString('base64');

function secret(namespace: string, name: string, cert = CERT): K8sObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace, annotations: { secret: 'not sent' } },
    type: 'kubernetes.io/tls',
    data: { 'tls.crt': cert, 'tls.key': KEY, extra: 'not sent' },
  } as K8sObject;
}

function inputs(secrets: K8sObject[], configMaps: K8sObject[] = []): GatewayFeedInputs {
  const gateway = {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: 'web', namespace: 'edge', generation: 1 },
    spec: {
      gatewayClassName: 'sluice',
      listeners: [
        {
          name: 'a',
          port: 443,
          protocol: 'HTTPS',
          hostname: 'a.example',
          tls: { certificateRefs: [{ name: 'own' }] },
        },
        {
          name: 'b',
          port: 443,
          protocol: 'HTTPS',
          hostname: 'b.example',
          tls: { certificateRefs: [{ name: 'foreign', namespace: 'vault' }] },
        },
      ],
    },
  } as K8sObject;
  return {
    namespaces: () => [],
    mesh: () => [],
    gatewayClasses: () => [
      {
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'GatewayClass',
        metadata: { name: 'sluice' },
        spec: { controllerName: 'sluice.dev/gateway-controller' },
      },
    ],
    gateways: () => [gateway],
    routes: () => [],
    referenceGrants: () => [],
    secrets: () => secrets,
    configMaps: () => configMaps,
  };
}

const secretsIn = (objects: K8sObject[]): string[] =>
  objects.filter((o) => o.kind === 'Secret').map((o) => `${o.metadata?.namespace}/${o.metadata?.name}`);

describe('gateway feed', () => {
  it('sends only Secrets the Gateway may use: same namespace, or granted; only tls.crt and tls.key', () => {
    const all = [secret('edge', 'own'), secret('vault', 'foreign'), secret('edge', 'unrelated')];
    const objects = gatewayObjects(inputs(all), { namespace: 'edge', name: 'web' }, 'cluster.local');
    assert.deepEqual(secretsIn(objects), ['edge/own']);
    const sent = objects.find((o) => o.kind === 'Secret') as unknown as Record<string, unknown>;
    assert.deepEqual(Object.keys(sent.data as object).sort(), ['tls.crt', 'tls.key']);
    assert.deepEqual(sent.metadata, { name: 'own', namespace: 'edge' });
    // Another Gateway's proxies (or a missing one) get nothing.
    assert.deepEqual(gatewayObjects(inputs(all), { namespace: 'edge', name: 'other' }, 'cluster.local'), []);
  });

  it('sends the mesh config (tracing settings) and no other ConfigMap', () => {
    const cm = (namespace: string, name: string): K8sObject =>
      ({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name, namespace, annotations: { a: 'not sent' } },
        data: { 'tracing.samplingPercent': '100' },
      }) as K8sObject;
    const objects = gatewayObjects(
      inputs([], [cm('sluice-system', 'sluice-mesh-config'), cm('edge', 'other')]),
      { namespace: 'edge', name: 'web' },
      'cluster.local',
    );
    assert.deepEqual(
      objects.filter((o) => o.kind === 'ConfigMap'),
      [
        {
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: { name: 'sluice-mesh-config', namespace: 'sluice-system' },
          data: { 'tracing.samplingPercent': '100' },
        },
      ],
    );
  });

  it('streams a snapshot, then a delta with the rotated Secret', () => {
    let current = [secret('edge', 'own')];
    const feed = new GatewayFeed({
      inputs: { ...inputs([]), secrets: () => current },
      trustDomain: 'cluster.local',
      epoch: 't',
    });
    const frames: string[] = [];
    const sub: ConfigSubscriber = {
      namespace: 'edge',
      write: (b) => frames.push(b.toString()),
      bufferedBytes: () => 0,
      drop: () => undefined,
    };
    const unsubscribe = feed.subscribe(sub, { namespace: 'edge', name: 'web' });
    const snapshot = parseFrame(frames[0]!);
    assert.ok(typeof snapshot !== 'string' && snapshot.type === 'snapshot');
    assert.deepEqual(secretsIn(snapshot.objects), ['edge/own']);
    feed.flush();
    assert.equal(frames.length, 1, 'nothing changed, nothing sent');
    const rotated = Buffer.from('-----BEGIN CERTIFICATE-----\ny\n-----END CERTIFICATE-----\n').toString(
      'base64',
    );
    current = [secret('edge', 'own', rotated)];
    feed.flush();
    const delta = parseFrame(frames[1]!);
    assert.ok(typeof delta !== 'string' && delta.type === 'delta');
    assert.equal(delta.base, snapshot.version);
    assert.deepEqual(secretsIn(delta.upserts), ['edge/own']);
    unsubscribe();
    assert.equal(feed.subscribers, 0);
    feed.close();
  });
});
