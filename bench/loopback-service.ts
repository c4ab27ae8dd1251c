// The mesh and app the one-process benchmarks route through: app/svc at `vip`:80 whose one endpoint is
// 127.0.0.1:`appPort`, and a GAMMA HTTPRoute to it (plain data: a bench comparing another checkout hands it
// to that checkout's buildProxyView).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
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

/** The app behind it: node:http on 127.0.0.1 answering every request with 1 KiB; resolves once listening. */
export async function startLoopbackApp(
  options: http.ServerOptions = {},
): Promise<{ app: http.Server; port: number }> {
  const body = Buffer.alloc(1024, 'x');
  const app = http.createServer(options, (req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  return { app, port: (app.address() as AddressInfo).port };
}
