// The mesh-wide settings object: the ConfigMap sluice-system/sluice-mesh-config (ADR 0011). The model only
// finds it among the objects and keeps its string data; protocol/tracing-config.ts reads the tracing keys.
import { isObject, type K8sObject } from './k8s-objects.ts';

export const MESH_CONFIG_NAME = 'sluice-mesh-config';
/** The control-plane namespace (protocol/config-protocol.ts CONTROLLER_NAMESPACE; the model may not import it). */
export const MESH_CONFIG_NAMESPACE = 'sluice-system';

export function isMeshConfig(obj: K8sObject): boolean {
  return (
    obj.kind === 'ConfigMap' &&
    obj.metadata?.name === MESH_CONFIG_NAME &&
    obj.metadata.namespace === MESH_CONFIG_NAMESPACE
  );
}

/** The string values of the mesh config's data, or undefined when there is no such object. */
export function meshConfigData(objects: readonly K8sObject[]): Readonly<Record<string, string>> | undefined {
  const found: (K8sObject & { data?: unknown }) | undefined = objects.find(isMeshConfig);
  if (!found) return undefined;
  const data = isObject(found.data) ? found.data : {};
  return Object.fromEntries(
    Object.entries(data).filter((e): e is [string, string] => typeof e[1] === 'string'),
  );
}
