import { objectKey, type K8sObject } from './k8s-objects.ts';
import type { CompiledRoute, MeshModel, MeshService } from './model.ts';
import { servicePortKey } from './model.ts';
import { readService } from './services.ts';
import { compileRoute, PARENT_GROUP_HINT } from './compile-route.ts';

const ROUTE_KINDS = new Set(['HTTPRoute', 'GRPCRoute']);

/**
 * Kubernetes objects → mesh model. Pure: the controller feeds it from informers, the sidecar's standalone
 * mode and `sluice route explain` from files. Unknown kinds are ignored; broken objects become warnings.
 */
export function buildMeshModel(objects: readonly K8sObject[]): MeshModel {
  const warnings: string[] = [];
  const { services, servicesByIp } = readServices(objects, warnings);

  const routes: CompiledRoute[] = [];
  const attached = new Map<string, CompiledRoute[]>();
  for (const obj of objects) {
    const apiVersion: unknown = obj.apiVersion;
    if (
      !ROUTE_KINDS.has(obj.kind ?? '') ||
      typeof apiVersion !== 'string' ||
      !apiVersion.startsWith('gateway.networking.k8s.io/')
    )
      continue;
    const route = guarded(obj, warnings, () =>
      compileRoute(obj, obj.kind as CompiledRoute['kind'], services),
    );
    if (route === undefined) continue;
    if (typeof route === 'string') {
      warnings.push(route);
      continue;
    }
    routes.push(route);
    for (const p of route.problems) {
      // The one mistake that silently detaches a mesh route: say so wherever the model is shown.
      if (p.message.endsWith(PARENT_GROUP_HINT))
        warnings.push(`${route.kind} ${route.namespace}/${route.name}: ${p.message}`);
    }
    if (route.rules.length === 0) continue;
    for (const a of route.attachments) {
      for (const port of a.ports) {
        const key = servicePortKey(a.service.namespace, a.service.name, port);
        const list = attached.get(key);
        if (list) list.push(route);
        else attached.set(key, [route]);
      }
    }
  }
  return { services, servicesByIp, routes, attached, warnings };
}

/** The Services among the objects, by `namespace/name` and by cluster IP (what routes resolve against). */
export function readServices(
  objects: readonly K8sObject[],
  warnings: string[] = [],
): { services: Map<string, MeshService>; servicesByIp: Map<string, MeshService> } {
  const services = new Map<string, MeshService>();
  const servicesByIp = new Map<string, MeshService>();
  for (const obj of objects) {
    if (obj.kind !== 'Service' || !isCoreApi(obj.apiVersion)) continue;
    const svc = guarded(obj, warnings, () => readService(obj, warnings));
    if (!svc) continue;
    services.set(objectKey(svc.namespace, svc.name), svc);
    for (const ip of svc.clusterIPs) servicesByIp.set(ip, svc);
  }
  return { services, servicesByIp };
}

/**
 * The schema checks of compile-route.ts and services.ts follow the CRDs; an object the API server would
 * never have admitted (a null list item, a number where a string goes: manifests on disk) may still trip
 * them. Such an object is left out with a warning, never an exception that loses the whole model.
 */
function guarded<T>(obj: K8sObject, warnings: string[], read: () => T): T | undefined {
  try {
    return read();
  } catch (error) {
    const meta: { namespace?: unknown; name?: unknown } = obj.metadata ?? {};
    const name = [obj.kind, meta.namespace ?? 'default', meta.name].map((v) => JSON.stringify(v)).join(' ');
    warnings.push(`${name} ignored: malformed (${(error as Error).message})`);
    return undefined;
  }
}

function isCoreApi(apiVersion: string | undefined): boolean {
  return apiVersion === undefined || apiVersion === 'v1';
}
