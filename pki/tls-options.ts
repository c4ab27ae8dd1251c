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
 * ALPN names of sidecar-to-sidecar mTLS: the client sidecar declares what it will send, and the server
 * sidecar holds it to that (a declared HTTP stream is always parsed as HTTP, never relayed as bytes).
 * They are visible in the cleartext ClientHello, so an inbound listener can tell mesh mTLS from a
 * workload's own TLS without terminating it. A client offers one of them first (a server sidecar
 * prefers them to every other name), then the matching older names for a server of the previous version.
 */
export const MESH_ALPN_HTTP1 = 'sluice/http1';
export const MESH_ALPN_H2 = 'sluice/h2';
export const MESH_ALPN_TCP = 'sluice/tcp';
/**
 * The first marker, offered after `h2`/`http/1.1` by earlier sidecars (opaque TCP when offered alone).
 * Still accepted, with the same rules: `h2` and `http/1.1` are parsed as HTTP.
 */
export const MESH_ALPN = 'sluice/1';
export const MESH_ALPN_PROTOCOLS: readonly string[] = ['h2', 'http/1.1', MESH_ALPN];
/** What a sidecar's mTLS server accepts, in its order of preference. */
export const MESH_SERVER_ALPN_PROTOCOLS: readonly string[] = [
  MESH_ALPN_H2,
  MESH_ALPN_HTTP1,
  MESH_ALPN_TCP,
  ...MESH_ALPN_PROTOCOLS,
];

/** Whether an ALPN name offered in a ClientHello marks sidecar-to-sidecar mTLS. */
export function isMeshAlpn(name: string): boolean {
  return name === MESH_ALPN || name === MESH_ALPN_HTTP1 || name === MESH_ALPN_H2 || name === MESH_ALPN_TCP;
}

/** The protocol a negotiated ALPN name declares: HTTP/1.1, HTTP/2 or opaque bytes; undefined if not ours. */
export function declaredProtocol(
  alpn: string | false | null | undefined,
): 'http1' | 'h2' | 'tcp' | undefined {
  if (alpn === MESH_ALPN_H2 || alpn === 'h2') return 'h2';
  if (alpn === MESH_ALPN_HTTP1 || alpn === 'http/1.1') return 'http1';
  if (alpn === MESH_ALPN_TCP || alpn === MESH_ALPN) return 'tcp';
  return undefined;
}

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
    ALPNProtocols: [...(options.alpnProtocols ?? MESH_SERVER_ALPN_PROTOCOLS)],
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
