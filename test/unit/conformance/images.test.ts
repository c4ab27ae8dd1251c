import assert from 'node:assert/strict';
import { imagesIn, imagesNamed } from '../../../conformance/images.ts';
import { placeholderObjects } from '../../../conformance/mesh-only-workaround.ts';

const MANIFESTS = `apiVersion: v1
kind: Namespace
metadata: { name: gateway-conformance-mesh }
---
apiVersion: apps/v1
kind: Deployment
spec:
  template:
    spec:
      initContainers:
        - image: registry.k8s.io/coredns/coredns:v1.12.2
      containers:
        - name: echo
          image: registry.k8s.io/gateway-api/echo-advanced:v1.5.1
---
apiVersion: apps/v1
kind: Deployment
spec: { template: { spec: { containers: [{ image: registry.k8s.io/gateway-api/echo-advanced:v1.5.1 }] } } }
`;

describe('conformance images', () => {
  it('finds every image the manifests name, once', () => {
    assert.deepEqual(imagesIn(MANIFESTS), [
      'registry.k8s.io/coredns/coredns:v1.12.2',
      'registry.k8s.io/gateway-api/echo-advanced:v1.5.1',
    ]);
  });

  it('picks every tag of a repository, by its last path part', () => {
    const images = imagesIn(MANIFESTS);
    assert.deepEqual(imagesNamed(images, 'echo-advanced'), [
      'registry.k8s.io/gateway-api/echo-advanced:v1.5.1',
    ]);
    assert.deepEqual(
      imagesNamed([...images, 'registry.k8s.io/gateway-api/echo-advanced:v2'], 'echo-advanced'),
      ['registry.k8s.io/gateway-api/echo-advanced:v1.5.1', 'registry.k8s.io/gateway-api/echo-advanced:v2'],
    );
    assert.throws(() => imagesNamed(images, 'echo-basic'), /no echo-basic image/);
  });

  it('gives the mesh-only run one pod in each gateway backend namespace', () => {
    const objects = placeholderObjects('docker.io/library/sluice-pause:dev') as {
      kind: string;
      metadata: { name: string; namespace?: string };
    }[];
    assert.deepEqual(
      objects.map((o) => `${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}`),
      [
        'Namespace /gateway-conformance-app-backend',
        'Pod gateway-conformance-app-backend/mesh-only-placeholder',
        'Namespace /gateway-conformance-web-backend',
        'Pod gateway-conformance-web-backend/mesh-only-placeholder',
      ],
    );
  });
});
