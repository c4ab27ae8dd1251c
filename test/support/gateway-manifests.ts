// Gateway API objects for tests: our GatewayClass and a Gateway of it.
import type { K8sObject } from '../../mesh-model/k8s-objects.ts';

const GATEWAY_API = 'gateway.networking.k8s.io/v1';

/** GatewayClass `sluice` with our controllerName. */
export function sluiceGatewayClass(): K8sObject {
  return {
    apiVersion: GATEWAY_API,
    kind: 'GatewayClass',
    metadata: { name: 'sluice' },
    spec: { controllerName: 'sluice.dev/gateway-controller' },
  };
}

/** Gateway `namespace/name` of class sluice (generation 1) with these listeners. */
export function sluiceGateway(namespace: string, name: string, listeners: unknown[]): K8sObject {
  return {
    apiVersion: GATEWAY_API,
    kind: 'Gateway',
    metadata: { name, namespace, generation: 1 },
    spec: { gatewayClassName: 'sluice', listeners },
  };
}
