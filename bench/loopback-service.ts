// The mesh the one-process benchmarks route through: app/svc at `vip`:80 whose one endpoint is
// 127.0.0.1:`appPort`, and a GAMMA HTTPRoute to it (plain data: a bench comparing another checkout hands it
// to that checkout's buildProxyView).
import type { K8sObject } from '../mesh-model/k8s-objects.ts';

export function loopbackService(vip: string, appPort: number): { service: K8sObject[]; route: K8sObject } {
  return {
    service: [
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'svc', namespace: 'app' },
        spec: { clusterIP: vip, ports: [{ name: 'http', port: 80, targetPort: appPort }] },
      },
      {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: 'svc-1', namespace: 'app', labels: { 'kubernetes.io/service-name': 'svc' } },
        ports: [{ name: 'http', port: appPort }],
        endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true } }],
      } as K8sObject,
    ],
    route: {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'svc', namespace: 'app' },
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'svc', port: 80 }],
        rules: [{ backendRefs: [{ name: 'svc', port: 80 }] }],
      },
    },
  };
}
