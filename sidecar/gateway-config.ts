// What a gateway proxy runs with: the pure GatewayView (mesh-model/gateway-view.ts) and the PEM material of
// the certificate Secrets and client-CA ConfigMaps its listeners reference. Built from the same objects the
// controller streams (or standalone manifests), so a rotated Secret is a new config like any other change.
import { isObject, type K8sObject } from '../mesh-model/k8s-objects.ts';
import { buildGatewayView, type GatewayView, type SecretRef } from '../mesh-model/gateway-view.ts';
import { meshConfigData } from '../mesh-model/mesh-config.ts';
import type { ViewBuilder } from './config-source.ts';

export interface KeyPair {
  readonly cert: string;
  readonly key: string;
}

export interface GatewayConfig {
  /** The gateway this proxy serves (`namespace/name`). */
  readonly gateway: string;
  /** undefined while the Gateway is missing, of another class or not accepted: nothing is served then. */
  readonly view: GatewayView | undefined;
  /** Certificate and key per TLS Secret (`namespace/name`): kubernetes.io/tls with tls.crt and tls.key. */
  readonly certificates: ReadonlyMap<string, KeyPair>;
  /** CA bundles (PEM) per ConfigMap `namespace/name`, key ca.crt, for client certificate validation. */
  readonly caBundles: ReadonlyMap<string, string>;
  /** The mesh-wide settings (ConfigMap sluice-system/sluice-mesh-config): tracing. */
  readonly meshConfig: Readonly<Record<string, string>> | undefined;
  /** Increases with every config built in this process. */
  readonly version: number;
}

let versions = 0;

export function refKey(ref: SecretRef): string {
  return `${ref.namespace}/${ref.name}`;
}

/** data (base64) or stringData (standalone manifests) value of `key`, as text. */
function field(obj: K8sObject, key: string, base64: boolean): string | undefined {
  const raw = obj as unknown as Record<string, unknown>;
  const data = isObject(raw.data) ? raw.data[key] : undefined;
  if (typeof data === 'string') return base64 ? Buffer.from(data, 'base64').toString('utf8') : data;
  const plain = isObject(raw.stringData) ? raw.stringData[key] : undefined;
  return typeof plain === 'string' ? plain : undefined;
}

function keyOf(obj: K8sObject): string {
  return `${obj.metadata?.namespace ?? 'default'}/${obj.metadata?.name ?? ''}`;
}

/** Objects → the config of gateway `namespace/name`. Pure apart from the version counter. */
export function buildGatewayConfig(
  objects: readonly K8sObject[],
  namespace: string,
  name: string,
  trustDomain: string,
): GatewayConfig {
  const certificates = new Map<string, KeyPair>();
  const caBundles = new Map<string, string>();
  for (const obj of objects) {
    if (obj.kind === 'Secret') {
      const cert = field(obj, 'tls.crt', true);
      const key = field(obj, 'tls.key', true);
      if (cert && key) certificates.set(keyOf(obj), { cert, key });
    } else if (obj.kind === 'ConfigMap') {
      const ca = field(obj, 'ca.crt', false);
      if (ca) caBundles.set(keyOf(obj), ca);
    }
  }
  return {
    gateway: `${namespace}/${name}`,
    view: buildGatewayView(objects, namespace, name, trustDomain),
    certificates,
    caBundles,
    meshConfig: meshConfigData(objects),
    version: ++versions,
  };
}

/** The ViewBuilder for a config source: the namespace comes from the source (certificate or flag). */
export function gatewayConfigBuilder(name: string): ViewBuilder<GatewayConfig> {
  return (objects, namespace, trustDomain) => buildGatewayConfig(objects, namespace, name, trustDomain);
}
