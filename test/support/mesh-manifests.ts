// Kubernetes objects describing a test mesh: Services with ClusterIPs, EndpointSlices with the pods' IPs,
// and Pods (meshed ones carry the injector's marker and containers, as the injector would add them).
import type { K8sObject } from '../../mesh-model/k8s-objects.ts';
import { INIT_CONTAINER, INJECTED, PROXY_CONTAINER, STATUS_ANNOTATION } from '../../mesh-model/endpoints.ts';

export interface PodRef {
  name: string;
  namespace: string;
  ip: string;
  serviceAccount: string;
  meshed: boolean;
}

export function podObject(p: PodRef): K8sObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: p.name,
      namespace: p.namespace,
      ...(p.meshed ? { annotations: { [STATUS_ANNOTATION]: INJECTED } } : {}),
    },
    spec: {
      serviceAccountName: p.serviceAccount,
      ...(p.meshed ? { initContainers: [{ name: INIT_CONTAINER }] } : {}),
      containers: [{ name: 'app' }, ...(p.meshed ? [{ name: PROXY_CONTAINER }] : [])],
    },
    status: { podIP: p.ip },
  };
}

/** A Service plus its EndpointSlice. `ports`: [servicePort, targetPort, name?]. */
export function serviceWithEndpoints(
  namespace: string,
  name: string,
  clusterIP: string,
  ports: [number, number, string?][],
  pods: PodRef[],
  appProtocol?: string,
): K8sObject[] {
  return [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace },
      spec: {
        clusterIP,
        ports: ports.map(([port, targetPort, portName]) => ({
          port,
          targetPort,
          protocol: 'TCP',
          ...(portName ? { name: portName } : {}),
          ...(appProtocol ? { appProtocol } : {}),
        })),
      },
    },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: `${name}-1`, namespace, labels: { 'kubernetes.io/service-name': name } },
      addressType: pods[0]?.ip.includes(':') ? 'IPv6' : 'IPv4',
      ports: ports.map(([, targetPort, portName]) => ({
        port: targetPort,
        protocol: 'TCP',
        ...(portName ? { name: portName } : {}),
      })),
      endpoints: pods.map((p) => ({
        addresses: [p.ip],
        conditions: { ready: true },
        targetRef: { kind: 'Pod', name: p.name, namespace: p.namespace },
      })),
    } as K8sObject,
  ];
}

export function httpRoute(
  namespace: string,
  name: string,
  parent: string,
  rules: unknown[],
  kind = 'HTTPRoute',
): K8sObject {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind,
    metadata: { name, namespace },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: parent }], rules },
  };
}
