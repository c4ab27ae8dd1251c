// TLS termination on a gateway's HTTPS ports: one SecureContext per certificate Secret, chosen per
// handshake by SNI (the listener whose hostname matches best, then the listener's certificate that covers
// the name). Contexts are rebuilt only for Secrets whose PEM changed, and swapped in place, so a rotated
// Secret applies to the next handshake without a restart and without touching open connections.
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { selectListener, type GatewayListenerView } from '../mesh-model/gateway-view.ts';
import { refKey, type GatewayConfig } from './gateway-config.ts';

interface Loaded {
  readonly pem: string;
  readonly options: tls.SecureContextOptions;
  readonly context: tls.SecureContext;
  readonly x509: X509Certificate;
}

/** What the SNI callback picked, kept on the socket for the client-validation check after the handshake. */
export interface TlsChoice {
  readonly listener: GatewayListenerView | undefined;
}

export class GatewayCertificates {
  #loaded = new Map<string, Loaded>();
  #config: GatewayConfig | undefined;

  /** Takes a new config; returns one message per certificate that could not be loaded. */
  update(config: GatewayConfig): string[] {
    const problems: string[] = [];
    const next = new Map<string, Loaded>();
    for (const port of config.view?.ports.values() ?? []) {
      for (const listener of port.listeners) {
        const ca = (listener.clientValidation?.caCertificates ?? [])
          .map((ref) => config.caBundles.get(refKey(ref)))
          .filter((pem): pem is string => pem !== undefined);
        for (const ref of listener.certificates) {
          const pair = config.certificates.get(refKey(ref));
          if (!pair) continue;
          // The same Secret on listeners with different client CAs needs a context per CA set.
          const key = `${refKey(ref)}|${ca.join('')}`;
          const pem = `${pair.cert}\0${pair.key}\0${ca.join('')}`;
          const before = this.#loaded.get(key) ?? next.get(key);
          if (before?.pem === pem) {
            next.set(key, before);
            continue;
          }
          try {
            const options: tls.SecureContextOptions = {
              cert: pair.cert,
              key: pair.key,
              ...(ca.length > 0 ? { ca } : {}),
              minVersion: 'TLSv1.2',
            };
            const context = tls.createSecureContext(options);
            next.set(key, { pem, options, context, x509: new X509Certificate(pair.cert) });
          } catch (err) {
            problems.push(`certificate ${refKey(ref)}: ${(err as Error).message}`);
          }
        }
      }
    }
    this.#loaded = next;
    this.#config = config;
    return problems;
  }

  /** The listener and context for a handshake on `port` naming `serverName` (SNI), if any. */
  select(
    port: number,
    serverName: string | undefined,
  ):
    | { listener: GatewayListenerView; context: tls.SecureContext; options: tls.SecureContextOptions }
    | undefined {
    const config = this.#config;
    const view = config?.view;
    if (!view) return undefined;
    const name = serverName?.toLowerCase();
    const listeners = view.ports.get(port)?.listeners ?? [];
    const chosen = selectListener(view, port, name);
    // Without SNI, or with a name no listener takes, the first listener that has a certificate answers.
    const order = chosen ? [chosen, ...listeners.filter((l) => l !== chosen)] : listeners;
    for (const listener of order) {
      const ca = (listener.clientValidation?.caCertificates ?? [])
        .map((ref) => config.caBundles.get(refKey(ref)))
        .filter((pem): pem is string => pem !== undefined)
        .join('');
      const loaded = listener.certificates
        .map((ref) => this.#loaded.get(`${refKey(ref)}|${ca}`))
        .filter((l): l is Loaded => l !== undefined);
      const covering =
        name === undefined ? undefined : loaded.find((l) => l.x509.checkHost(name) !== undefined);
      const pick = covering ?? loaded[0];
      if (pick) return { listener, context: pick.context, options: pick.options };
    }
    return undefined;
  }

  get size(): number {
    return this.#loaded.size;
  }
}
