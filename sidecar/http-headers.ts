import type { IncomingHttpHeaders } from 'node:http';
import type { HeaderMap } from '../mesh-model/header-edits.ts';

/**
 * Header the server-side sidecar sets to the caller's verified SPIFFE ID on inbound HTTP requests it parsed
 * itself (mesh mTLS only). Dropped from every request a sidecar forwards (docs/security.md).
 */
export const PEER_IDENTITY_HEADER = 'x-sluice-peer-identity';

// RFC 9110 §7.6.1 connection-specific headers, plus HTTP/2 pseudo-headers (re-created per hop).
/**
 * Set by an inbound sidecar on its local reply when no byte of the request reached its app (the app was not
 * listening): the client sidecar may send the request elsewhere whatever its method (ADR 0015). Never
 * passed on, so an app cannot claim it.
 */
export const NOT_PROCESSED_HEADER = 'x-sluice-not-processed';
/**
 * Set by an inbound sidecar on its local reply when its app reset or closed the connection after getting
 * the request and before any response byte (an app shutting down): the client sidecar retries the request
 * elsewhere only if it is idempotent or its route has a retry policy (ADR 0015). Never passed on.
 */
export const RESET_BY_APP_HEADER = 'x-sluice-reset-by-app';

const HOP_BY_HOP = new Set([
  NOT_PROCESSED_HEADER,
  RESET_BY_APP_HEADER,
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'http2-settings',
]);

/** Header names the Connection header declares hop-by-hop (beyond the standard ones). */
function namedByConnection(headers: IncomingHttpHeaders): Set<string> | undefined {
  const connection = headers.connection;
  if (!connection || connection === 'keep-alive' || connection === 'close') return undefined;
  return new Set(connection.split(',').map((s) => s.trim().toLowerCase()));
}

/**
 * Copies end-to-end request headers for the next hop: drops hop-by-hop headers, those the Connection header
 * names, pseudo-headers and any identity header the caller sent. Keeps `te: trailers` (gRPC needs it). Keeps upgrade headers when `upgrade` is set.
 */
export function forwardHeaders(headers: IncomingHttpHeaders, upgrade = false): HeaderMap {
  const out: HeaderMap = {};
  const named = namedByConnection(headers);
  for (const name in headers) {
    if (name.charCodeAt(0) === 58 /* ':' */ || name === PEER_IDENTITY_HEADER) continue;
    if (HOP_BY_HOP.has(name) || named?.has(name)) {
      if (name === 'te' && /\btrailers\b/i.test(String(headers.te))) out.te = 'trailers';
      continue;
    }
    out[name] = headers[name];
  }
  if (upgrade) {
    out.connection = 'upgrade';
    out.upgrade = headers.upgrade;
  }
  return out;
}

/** Response headers for the downstream hop: drops hop-by-hop and pseudo-headers. */
export function forwardResponseHeaders(headers: IncomingHttpHeaders): HeaderMap {
  const out: HeaderMap = {};
  const named = namedByConnection(headers);
  for (const name in headers) {
    if (name.charCodeAt(0) === 58 || HOP_BY_HOP.has(name) || named?.has(name)) continue;
    out[name] = headers[name];
  }
  return out;
}
