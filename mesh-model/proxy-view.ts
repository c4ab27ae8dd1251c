import type { K8sObject } from './k8s-objects.ts';
import type { MeshModel } from './model.ts';
import { servicePortKey } from './model.ts';
import { buildMeshModel } from './translate.ts';
import { buildPortRouting, type PortRouting } from './port-routing.ts';
import { buildEndpoints, type Endpoint } from './endpoints.ts';
import { meshConfigData } from './mesh-config.ts';

/** Everything one sidecar needs, for the namespace it runs in. Immutable; replaced whole on reload. */
export interface ProxyView {
  namespace: string;
  trustDomain: string;
  model: MeshModel;
  /** Routing per Service destination, keyed by `clusterIP:port` (IPv6 without brackets). */
  byDestination: ReadonlyMap<string, PortRouting>;
  /** Endpoints per Service port, keyed by `namespace/name:port`. */
  endpoints: ReadonlyMap<string, readonly Endpoint[]>;
  /** Increases with every view built in this process (shown in /ready and /config_dump). */
  version: number;
  /** Data of the mesh-wide ConfigMap (mesh-config.ts), when the config has one. */
  meshConfig?: Readonly<Record<string, string>> | undefined;
}

let versions = 0;

export function destinationKey(address: string, port: number): string {
  return `${address}:${port}`;
}

/** Kubernetes objects → per-proxy view. Pure apart from the version counter. */
export function buildProxyView(
  objects: readonly K8sObject[],
  namespace: string,
  trustDomain: string,
): ProxyView {
  const model = buildMeshModel(objects);
  const byDestination = new Map<string, PortRouting>();
  for (const svc of model.services.values()) {
    for (const p of svc.ports) {
      if (p.protocol !== 'TCP') continue;
      const routing = buildPortRouting(model, namespace, svc, p.port);
      for (const ip of svc.clusterIPs) byDestination.set(destinationKey(ip, p.port), routing);
    }
  }
  return {
    namespace,
    trustDomain,
    model,
    byDestination,
    endpoints: buildEndpoints(objects, model.services, trustDomain),
    version: ++versions,
    meshConfig: meshConfigData(objects),
  };
}

export function endpointsFor(
  view: Pick<ProxyView, 'endpoints'>,
  namespace: string,
  name: string,
  port: number,
): readonly Endpoint[] {
  return view.endpoints.get(servicePortKey(namespace, name, port)) ?? [];
}
