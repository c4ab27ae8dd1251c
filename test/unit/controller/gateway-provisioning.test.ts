import assert from 'node:assert/strict';
import {
  GATEWAY_NAME_LABEL,
  gatewayInfrastructure,
  gatewayOfServiceAccount,
  infrastructureName,
  SERVICE_TYPE_ANNOTATION,
} from '../../../controller/gateway-provisioning.ts';
import { applyPath, ourGateways } from '../../../controller/gateway-provisioner.ts';
import { decideInjection } from '../../../injector/pod-injection.ts';
import type { K8sObject } from '../../../mesh-model/k8s-objects.ts';
import { DEFAULT_PROXY_RESOURCES } from '../../../protocol/proxy-resources.ts';

const SETTINGS = {
  image: 'sluice:dev',
  imagePullPolicy: 'IfNotPresent',
  controllerAddress: 'sluice-controller.sluice-system.svc:15012',
  trustDomain: 'cluster.local',
  proxyResources: DEFAULT_PROXY_RESOURCES,
};

function gateway(extra: Record<string, unknown> = {}, annotations?: Record<string, string>): K8sObject {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: 'web', namespace: 'edge', uid: 'u-1', ...(annotations ? { annotations } : {}) },
    spec: {
      gatewayClassName: 'sluice',
      listeners: [
        { name: 'http', port: 80, protocol: 'HTTP' },
        { name: 'https-a', port: 443, protocol: 'HTTPS', hostname: 'a.example.com' },
        { name: 'https-b', port: 443, protocol: 'HTTPS', hostname: 'b.example.com' },
      ],
      ...extra,
    },
  };
}

function objects(gw: K8sObject): K8sObject[] {
  const out = gatewayInfrastructure(gw, SETTINGS);
  assert.ok(Array.isArray(out), JSON.stringify(out));
  return out;
}

/* eslint-disable @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-argument -- reading generated manifests */
describe('gateway provisioning', () => {
  it('makes a ServiceAccount, Deployment and Service named <gateway>-sluice, owned by the Gateway', () => {
    const [sa, deployment, service] = objects(gateway());
    assert.deepEqual(
      [sa, deployment, service].map((o) => `${o!.kind}/${o!.metadata?.namespace}/${o!.metadata?.name}`),
      ['ServiceAccount/edge/web-sluice', 'Deployment/edge/web-sluice', 'Service/edge/web-sluice'],
    );
    for (const o of [sa, deployment, service]) {
      assert.deepEqual((o!.metadata as any).ownerReferences, [
        {
          apiVersion: 'gateway.networking.k8s.io/v1',
          kind: 'Gateway',
          name: 'web',
          uid: 'u-1',
          controller: true,
          blockOwnerDeletion: true,
        },
      ]);
      assert.equal((o!.metadata as any).labels[GATEWAY_NAME_LABEL], 'web');
    }
  });

  it('runs sluice proxy --mode gateway as the gateway service account; listener changes do not roll the pods', () => {
    const deployment = objects(gateway())[1] as any;
    const pod = deployment.spec.template;
    assert.equal(pod.spec.serviceAccountName, 'web-sluice');
    const [container] = pod.spec.containers;
    assert.equal(container.image, 'sluice:dev');
    assert.deepEqual(container.args.slice(0, 4), [
      'proxy',
      '--mode=gateway',
      '--gateway=web',
      '--controller=sluice-controller.sluice-system.svc:15012',
    ]);
    assert.deepEqual(
      container.ports.map((p: { containerPort: number }) => p.containerPort),
      [15021],
    );
    const moved = gateway({ listeners: [{ name: 'http', port: 8080, protocol: 'HTTP' }] });
    assert.deepEqual((objects(moved)[1] as any).spec.template, pod);
    assert.deepEqual(
      (objects(moved)[2] as any).spec.ports.map((p: { port: number }) => p.port),
      [8080],
    );
    assert.deepEqual(deployment.spec.selector.matchLabels, { [GATEWAY_NAME_LABEL]: 'web' });
  });

  it('leaves gateway pods to themselves: the injector skips them', () => {
    const pod = (objects(gateway())[1] as any).spec.template;
    const decision = decideInjection(pod, { ...SETTINGS, nativeSidecars: true, mtlsMode: 'PERMISSIVE' });
    assert.deepEqual(decision, { action: 'skip', reason: 'opted-out' });
  });

  it('a Service of type LoadBalancer by default, ClusterIP or NodePort by annotation', () => {
    const typeOf = (gw: K8sObject): unknown => (objects(gw)[2] as any).spec.type;
    assert.equal(typeOf(gateway()), 'LoadBalancer');
    assert.equal(typeOf(gateway({}, { [SERVICE_TYPE_ANNOTATION]: 'ClusterIP' })), 'ClusterIP');
    assert.equal(
      typeOf(gateway({ infrastructure: { annotations: { [SERVICE_TYPE_ANNOTATION]: 'nodeport' } } })),
      'NodePort',
    );
    const bad = gatewayInfrastructure(gateway({}, { [SERVICE_TYPE_ANNOTATION]: 'ExternalName' }), SETTINGS);
    assert.ok(!Array.isArray(bad) && /must be one of/.test(bad.error));
    const service = objects(gateway())[2] as any;
    assert.deepEqual(service.spec.ports, [
      { name: 'http-80', port: 80, targetPort: 80, protocol: 'TCP' },
      { name: 'https-443', port: 443, targetPort: 443, protocol: 'TCP' },
    ]);
  });

  it('requests the configured proxy resources; a Gateway’s annotation overrides them, a bad one is an error', () => {
    const requestsOf = (gw: K8sObject): unknown =>
      (objects(gw)[1] as any).spec.template.spec.containers[0].resources.requests;
    const out = (gw: K8sObject, settings = SETTINGS) => gatewayInfrastructure(gw, settings);
    assert.deepEqual(requestsOf(gateway()), { cpu: '50m', memory: '64Mi' });
    const low = { ...SETTINGS, proxyResources: { cpuRequest: '10m', memoryRequest: '64Mi' } };
    const lowObjects = out(gateway(), low);
    assert.ok(Array.isArray(lowObjects));
    assert.deepEqual((lowObjects[1] as any).spec.template.spec.containers[0].resources, {
      requests: { cpu: '10m', memory: '64Mi' },
      limits: { memory: '256Mi' },
    });
    assert.deepEqual(requestsOf(gateway({}, { 'sluice.dev/proxy-cpu-request': '0.2' })), {
      cpu: '0.2',
      memory: '64Mi',
    });
    assert.deepEqual(
      requestsOf(
        gateway({ infrastructure: { annotations: { 'sluice.dev/proxy-memory-request': '128Mi' } } }),
      ),
      { cpu: '50m', memory: '128Mi' },
    );
    const bad = out(gateway({}, { 'sluice.dev/proxy-cpu-request': 'a lot' }));
    assert.ok(
      !Array.isArray(bad) && /annotation sluice.dev\/proxy-cpu-request: must be a CPU/.test(bad.error),
    );
  });

  it('propagates spec.infrastructure labels and annotations to every object and the pods', () => {
    const gw = gateway({ infrastructure: { labels: { team: 'a' }, annotations: { note: 'x' } } });
    for (const o of objects(gw) as any[]) {
      assert.equal(o.metadata.labels.team, 'a');
      assert.equal(o.metadata.annotations.note, 'x');
    }
    const pod = (objects(gw)[1] as any).spec.template;
    assert.equal(pod.metadata.labels.team, 'a');
    assert.equal(pod.metadata.annotations.note, 'x');
    assert.equal(pod.metadata.annotations['sluice.dev/inject'], 'disabled');
  });

  it('keeps long names within 63 characters, unique per Gateway', () => {
    const long = 'g'.repeat(70);
    const a = infrastructureName(long);
    const b = infrastructureName(`${long}x`);
    assert.ok(a.length <= 63 && b.length <= 63);
    assert.notEqual(a, b);
    assert.ok(a.endsWith('-sluice'));
  });

  it('maps a proxy service account back to its Gateway only in the same namespace', () => {
    const refs = [{ namespace: 'edge', name: 'web' }];
    assert.deepEqual(gatewayOfServiceAccount(refs, 'edge', 'web-sluice'), refs[0]);
    assert.equal(gatewayOfServiceAccount(refs, 'other', 'web-sluice'), undefined);
    assert.equal(gatewayOfServiceAccount(refs, 'edge', 'web'), undefined);
  });

  it('provisions only Gateways of a class naming our controller; refuses one without a uid', () => {
    const classes = [
      {
        kind: 'GatewayClass',
        metadata: { name: 'sluice' },
        spec: { controllerName: 'sluice.dev/gateway-controller' },
      },
      { kind: 'GatewayClass', metadata: { name: 'other' }, spec: { controllerName: 'example.com/gw' } },
    ] as K8sObject[];
    const other = { ...gateway(), spec: { gatewayClassName: 'other' } } as K8sObject;
    assert.deepEqual(ourGateways([gateway(), other], classes), [gateway()]);
    const noUid = { ...gateway(), metadata: { name: 'web', namespace: 'edge' } } as K8sObject;
    assert.ok(!Array.isArray(gatewayInfrastructure(noUid, SETTINGS)));
    assert.equal(applyPath(objects(gateway())[1]!), '/apis/apps/v1/namespaces/edge/deployments/web-sluice');
  });
});
