import {
  createSecureContext,
  type ConnectionOptions,
  type PeerCertificate,
  type SecureContext,
  type SecureContextOptions,
  type Server,
  type TlsOptions,
} from 'node:tls';
import type { Identity } from './identity.ts';
import { spiffeIdFromCertificate } from './peer-identity.ts';

/**
 * ALPN marker of sidecar-to-sidecar mTLS. Mesh clients offer it after the application protocols, so it
 * is visible in the cleartext ClientHello (an inbound listener can tell mesh mTLS from a workload's own
 * TLS without terminating it) while servers still pick h2 or http/1.1. A server selects it only when a
 * client offers nothing else, which means an opaque byte stream (TCP) rather than HTTP.
 */
export const MESH_ALPN = 'sluice/1';
export const MESH_ALPN_PROTOCOLS: readonly string[] = ['h2', 'http/1.1', MESH_ALPN];

/** Context options shared by both sides: the identity, TLS 1.3 only, X25519 or P-256 key exchange. */
export function secureContextOptions(identity: Identity): SecureContextOptions {
  return {
    cert: identity.certPem,
    key: identity.keyPem,
    ca: identity.bundlePem,
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    ecdhCurve: 'X25519:P-256',
  };
}

export function createMeshSecureContext(identity: Identity): SecureContext {
  return createSecureContext(secureContextOptions(identity));
}

/**
 * Options for tls.createServer / http2.createSecureServer on a sidecar's mTLS listener. The chain of the
 * client certificate is checked against the bundle during the handshake; its SPIFFE ID must be checked
 * after it with authenticatePeer (pki/peer-identity.ts).
 */
export function serverTlsOptions(
  identity: Identity,
  options: { alpnProtocols?: readonly string[] } = {},
): TlsOptions {
  return {
    ...secureContextOptions(identity),
    requestCert: true,
    rejectUnauthorized: true,
    ALPNProtocols: [...(options.alpnProtocols ?? MESH_ALPN_PROTOCOLS)],
  };
}

/** Rotation on a server: new connections use the new identity, open connections are left as they are. */
export function rotateServerIdentity(server: Server, identity: Identity): void {
  server.setSecureContext(secureContextOptions(identity));
}

/**
 * A checkServerIdentity that accepts the server only if its certificate has exactly one URI SAN and it is
 * (one of) the expected SPIFFE ID(s). The host name is ignored: mesh certificates carry no DNS names
 * to match, which is why Node's default check cannot be used.
 */
export function checkServerSpiffeId(
  expected: string | readonly string[],
): (hostname: string, cert: PeerCertificate) => Error | undefined {
  const allowed = new Set(typeof expected === 'string' ? [expected] : expected);
  return (_hostname, cert) => {
    let actual: string;
    try {
      actual = spiffeIdFromCertificate(cert);
    } catch (err) {
      return Object.assign(new Error(`server ${(err as Error).message}`), { code: 'ERR_SPIFFE_ID_MISMATCH' });
    }
    if (allowed.has(actual)) return undefined;
    const want = [...allowed].join(' or ');
    return Object.assign(new Error(`server SPIFFE ID is ${actual}, expected ${want}`), {
      code: 'ERR_SPIFFE_ID_MISMATCH',
    });
  };
}

export interface ClientTlsParams {
  /** From createMeshSecureContext; make a new one on rotation. */
  readonly secureContext: SecureContext;
  /** SPIFFE ID(s) the server must present. */
  readonly expectedSpiffeId: string | readonly string[];
  /** SNI sent to the server (optional; it plays no part in authentication). */
  readonly servername?: string;
  readonly alpnProtocols?: readonly string[];
}

/** Options for tls.connect / http2.connect from a sidecar to a peer sidecar. */
export function clientTlsOptions(params: ClientTlsParams): ConnectionOptions {
  return {
    secureContext: params.secureContext,
    // Already in secureContext; kept so that options copied without the context still mean TLS 1.3 only.
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    rejectUnauthorized: true,
    checkServerIdentity: checkServerSpiffeId(params.expectedSpiffeId),
    ALPNProtocols: [...(params.alpnProtocols ?? MESH_ALPN_PROTOCOLS)],
    ...(params.servername === undefined ? {} : { servername: params.servername }),
  };
}

/**
 * The current identity's TLS material, for one sidecar: serverOptions() for listeners (which it keeps
 * rotated), clientOptions() for each outbound connection. update() swaps in a rotated identity.
 */
export class MeshTlsCredentials {
  #identity: Identity;
  #clientContext: SecureContext;
  readonly #servers = new Set<Server>();

  constructor(identity: Identity) {
    this.#identity = identity;
    this.#clientContext = createMeshSecureContext(identity);
  }

  get identity(): Identity {
    return this.#identity;
  }

  update(identity: Identity): void {
    const context = createMeshSecureContext(identity);
    for (const server of this.#servers) rotateServerIdentity(server, identity);
    this.#identity = identity;
    this.#clientContext = context;
  }

  serverOptions(options: { alpnProtocols?: readonly string[] } = {}): TlsOptions {
    return serverTlsOptions(this.#identity, options);
  }

  /** Keeps `server` (created with serverOptions()) on the current identity until it closes. */
  track(server: Server): void {
    this.#servers.add(server);
    server.once('close', () => this.#servers.delete(server));
  }

  clientOptions(params: Omit<ClientTlsParams, 'secureContext'>): ConnectionOptions {
    return clientTlsOptions({ ...params, secureContext: this.#clientContext });
  }
}
