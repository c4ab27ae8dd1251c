import { isObject, isShaped, objectKey, type K8sObject, type ServiceSpec } from './k8s-objects.ts';
import type { MeshService, ServicePortInfo } from './model.ts';

/** Reads Services into the model; a Service without a usable name or ports is reported, not fatal. */
export function readService(obj: K8sObject, warnings: string[]): MeshService | undefined {
  const namespace = obj.metadata?.namespace ?? 'default';
  const name = obj.metadata?.name;
  if (typeof name !== 'string' || name === '') {
    warnings.push('Service without metadata.name ignored');
    return undefined;
  }
  const spec = (isObject(obj.spec) ? obj.spec : {}) as ServiceSpec;
  const ips = Array.isArray(spec.clusterIPs) ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : [];
  const ports: ServicePortInfo[] = [];
  for (const p of Array.isArray(spec.ports) ? spec.ports : []) {
    if (!isShaped(p) || !Number.isInteger(p.port) || p.port! < 1 || p.port! > 65535) {
      warnings.push(`Service ${objectKey(namespace, name)}: port entry without a valid port ignored`);
      continue;
    }
    ports.push({
      name: typeof p.name === 'string' ? p.name : undefined,
      port: p.port!,
      targetPort: p.targetPort ?? p.port!,
      protocol: typeof p.protocol === 'string' ? p.protocol : 'TCP',
      appProtocol: typeof p.appProtocol === 'string' ? p.appProtocol : undefined,
    });
  }
  return {
    namespace,
    name,
    clusterIPs: ips.filter((ip) => typeof ip === 'string' && ip !== '' && ip !== 'None'),
    ports,
  };
}
