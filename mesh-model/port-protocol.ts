import { servicePortKey, type ServicePortInfo } from './model.ts';
import type { ProxyView } from './proxy-view.ts';

/**
 * How a sidecar treats a connection to a Service port:
 * - `http`: the port is declared HTTP (HTTP/1.1, h2c or gRPC). Always parsed as HTTP, never relayed as
 *   opaque bytes; what does not parse is answered 400. Only here can an app trust the identity header.
 * - `opaque`: declared as some other protocol; relayed as bytes without detection.
 * - `detect`: undeclared; the first bytes decide.
 */
export type PortProtocol = 'http' | 'opaque' | 'detect';

const HTTP_APP_PROTOCOLS = new Set(['http', 'h2c', 'grpc', 'kubernetes.io/h2c']);
const OPAQUE_APP_PROTOCOLS = new Set(['tcp', 'mysql', 'redis', 'mongodb', 'postgresql', 'kubernetes.io/tcp']);

/**
 * The Service port's `appProtocol` wins when set (as in Kubernetes); otherwise the port name, by the usual
 * `<protocol>[-<suffix>]` convention: `http`, `http-*`, `h2c`, `h2c-*`, `grpc`, `grpc-*`.
 */
export function servicePortProtocol(port: Pick<ServicePortInfo, 'name' | 'appProtocol'>): PortProtocol {
  if (port.appProtocol !== undefined) {
    const p = port.appProtocol.toLowerCase();
    if (HTTP_APP_PROTOCOLS.has(p)) return 'http';
    return OPAQUE_APP_PROTOCOLS.has(p) ? 'opaque' : 'detect';
  }
  const name = (port.name ?? '').toLowerCase();
  const prefix = name.split('-', 1)[0];
  return prefix === 'http' || prefix === 'h2c' || prefix === 'grpc' ? 'http' : 'detect';
}

const inboundCache = new WeakMap<ProxyView, ReadonlyMap<string, PortProtocol>>();

/**
 * Inbound: the protocol of a pod's own port (its address and the target port a client dialled), from the
 * Service ports whose endpoints name it. A port that any Service declares HTTP is HTTP (a forged identity
 * header must never pass through raw); otherwise a declared opaque port stays opaque, else `detect`.
 */
export function inboundPortProtocol(
  view: ProxyView | undefined,
  address: string,
  port: number,
): PortProtocol {
  if (!view) return 'detect';
  let index = inboundCache.get(view);
  if (!index) {
    const built = new Map<string, PortProtocol>();
    for (const svc of view.model.services.values()) {
      for (const sp of svc.ports) {
        const protocol = servicePortProtocol(sp);
        if (protocol === 'detect') continue;
        for (const ep of view.endpoints.get(servicePortKey(svc.namespace, svc.name, sp.port)) ?? []) {
          const key = `${ep.address}:${ep.port}`;
          if (protocol === 'http' || !built.has(key)) built.set(key, protocol);
        }
      }
    }
    index = built;
    inboundCache.set(view, index);
  }
  return index.get(`${unmapped(address)}:${port}`) ?? 'detect';
}

/** `::ffff:10.0.0.1` → `10.0.0.1`. */
function unmapped(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}
