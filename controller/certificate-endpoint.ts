// POST /v1/certificate on the controller's config port: a workload sends its pod's projected
// service-account token (Authorization: Bearer) and a CSR ({"csr": PEM}), and gets back
// {"certChain": PEM, "trustBundle": PEM}. TLS here admits clients without a certificate (a new workload
// has none); who the caller is comes from the token (WorkloadCa, TokenReview). A workload that sends no
// token but presents its current certificate on the connection (verified against the trust bundle) renews
// it: the new certificate is for the same SPIFFE ID, and no TokenReview is spent.
//
// Order of checks, cheapest first (certificate-admission.ts): method, a token shaped like a mesh token,
// the caller's source-address bucket, the body; then the CA (CSR checks, cached TokenReview under a global
// budget, the per-workload bucket, signing). A failed review costs the source extra tokens.
import http2 from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { authenticatePeer } from '../pki/peer-identity.ts';
import type { RouteHandler } from './config-server.ts';
import { sourceKey, tokenShape, type KeyedLimiter } from './certificate-admission.ts';
import type { IssuedCertificate, IssueResult, Refusal, RefusalCode, WorkloadCa } from './workload-ca.ts';

/** A CSR is under 1 KiB; the CA refuses CSRs over 16 KiB anyway, so a larger body is not read. */
export const MAX_REQUEST_BYTES = 64 * 1024;
const REQUEST_TIMEOUT_MS = 30_000;

const { HTTP2_HEADER_METHOD, HTTP2_HEADER_STATUS, HTTP2_HEADER_AUTHORIZATION, NGHTTP2_CANCEL } =
  http2.constants;

/** The HTTP status for a refusal: 4xx for the caller's mistakes, 503 (retry) when the API is unavailable. */
export function refusalHttpStatus(code: RefusalCode): number {
  switch (code) {
    case 'InvalidArgument':
      return 400;
    case 'Unauthenticated':
      return 401;
    case 'PermissionDenied':
      return 403;
    case 'ResourceExhausted':
      return 429;
    case 'Unavailable':
      return 503;
    case 'Internal':
      return 500;
  }
}

/** The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), or undefined. */
export function bearerToken(header: unknown): string | undefined {
  if (typeof header !== 'string') return undefined;
  const match = /^Bearer[ ]+(\S+)[ ]*$/i.exec(header);
  return match?.[1];
}

/** The CSR from the request body, or a one-line reason the body is not a certificate request. */
export function parseCertificateRequest(body: string): { csrPem: string } | string {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return 'the body is not JSON; send {"csr": "<PEM>"}';
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return 'the body is not a JSON object; send {"csr": "<PEM>"}';
  }
  const csr = (value as { csr?: unknown }).csr;
  if (typeof csr !== 'string' || csr === '') return 'the body has no "csr" string';
  return { csrPem: csr };
}

/** The response body of an issue result, with its HTTP status. */
export function certificateResponse(result: IssueResult): { status: number; body: Record<string, unknown> } {
  if (!result.ok) {
    return { status: refusalHttpStatus(result.code), body: { error: result.code, message: result.message } };
  }
  const issued: IssuedCertificate = result;
  return {
    status: 200,
    body: {
      certChain: issued.certChainPem,
      trustBundle: issued.trustBundlePem,
      spiffeId: issued.spiffeId,
      notBefore: issued.notBefore.toISOString(),
      notAfter: issued.notAfter.toISOString(),
    },
  };
}

function respondJson(
  stream: http2.ServerHttp2Stream,
  status: number,
  body: Record<string, unknown>,
  extra: Record<string, string> = {},
): void {
  if (stream.destroyed || stream.headersSent) return;
  // A request answered before its body was read still holds one of the session's few stream slots until
  // the body has been consumed: discard it.
  if (stream.readableFlowing !== true) stream.resume();
  stream.respond({
    [HTTP2_HEADER_STATUS]: status,
    'content-type': 'application/json',
    'cache-control': 'no-store',
    ...extra,
  });
  stream.end(`${JSON.stringify(body)}\n`);
}

/** Why a request ended the way it did: the bounded `reason` label of sluice_ca_certificates_total. */
export type CertificateReason =
  | 'issued'
  | 'renewed'
  | 'method'
  | 'no_token'
  | 'malformed_token'
  | 'source_rate_limited'
  | 'bad_request'
  | 'invalid_csr'
  | 'review_budget'
  | 'identity_rate_limited'
  | 'unauthenticated'
  | 'permission_denied'
  | 'review_unavailable'
  | 'internal';

/** The reason of what the CA answered. */
export function reasonOf(result: IssueResult, renewal = false): CertificateReason {
  if (result.ok) return renewal ? 'renewed' : 'issued';
  switch (result.code) {
    case 'InvalidArgument':
      return 'invalid_csr';
    case 'Unauthenticated':
      return 'unauthenticated';
    case 'PermissionDenied':
      return 'permission_denied';
    case 'ResourceExhausted':
      return result.limit === 'identity' ? 'identity_rate_limited' : 'review_budget';
    case 'Unavailable':
      return 'review_unavailable';
    case 'Internal':
      return 'internal';
  }
}

export interface CertificateOutcome {
  readonly reason: CertificateReason;
  readonly result: IssueResult;
  /** The caller's address, for the log. */
  readonly source: string;
}

export interface CertificateEndpointOptions {
  readonly ca: WorkloadCa;
  /** The audience mesh tokens are minted for; a token whose claims name another is refused unreviewed. */
  readonly audience: string;
  /** One bucket per source address, taken after the token looks right and before anything is read. */
  readonly perSource: KeyedLimiter;
  /** Tokens a source pays on top when its token fails review (Unauthenticated/PermissionDenied). */
  readonly failedReviewCost: number;
  /** Unix milliseconds, for token expiry; default Date.now. */
  readonly wallClock?: () => number;
  /** Called once per request with what happened (for logs and metrics); never with the token. */
  readonly onResult?: (outcome: CertificateOutcome) => void;
}

function refusal(code: RefusalCode, message: string, retryAfterMs?: number): Refusal {
  return retryAfterMs === undefined
    ? { ok: false, code, message }
    : { ok: false, code, message, retryAfterMs };
}

function retryAfter(ms: number | undefined): Record<string, string> {
  return ms === undefined ? {} : { 'retry-after': String(Math.max(1, Math.ceil(ms / 1000))) };
}

export function certificateHandler(options: CertificateEndpointOptions): RouteHandler {
  const wallClock = options.wallClock ?? Date.now;
  return (stream, headers) => {
    const source = sourceKey(stream.session?.socket.remoteAddress);
    const answer = (
      reason: CertificateReason,
      status: number,
      result: Refusal,
      extra: Record<string, string> = {},
    ): void => {
      options.onResult?.({ reason, result, source });
      respondJson(stream, status, { error: result.code, message: result.message }, extra);
    };
    if (headers[HTTP2_HEADER_METHOD] !== 'POST') {
      return answer('method', 405, refusal('InvalidArgument', 'method not allowed: use POST'), {
        allow: 'POST',
      });
    }
    const token = bearerToken(headers[HTTP2_HEADER_AUTHORIZATION]);
    // Without a token: a renewal, if the connection carries a verified workload certificate.
    const presented = token === undefined ? presentedCertificate(stream, options.ca.trustDomain) : undefined;
    if (token === undefined && presented === undefined) {
      return answer(
        'no_token',
        401,
        refusal(
          'Unauthenticated',
          'send the pod service-account token as Authorization: Bearer, or renew with the current workload certificate',
        ),
        { 'www-authenticate': 'Bearer' },
      );
    }
    const shape = token === undefined ? undefined : tokenShape(token, options.audience, wallClock());
    if (shape && 'problem' in shape) {
      return answer('malformed_token', 401, refusal('Unauthenticated', shape.problem), {
        'www-authenticate': 'Bearer',
      });
    }
    const waitMs = options.perSource.tryTake(source);
    if (waitMs > 0) {
      const result = refusal('ResourceExhausted', 'too many certificate requests: retry later', waitMs);
      return answer('source_rate_limited', 429, result, retryAfter(waitMs));
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      answer('bad_request', 408, refusal('InvalidArgument', 'request body not received in time'));
      stream.close(NGHTTP2_CANCEL);
    }, REQUEST_TIMEOUT_MS);
    timer.unref();
    stream.on('data', (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > MAX_REQUEST_BYTES) {
        done = true;
        clearTimeout(timer);
        answer(
          'bad_request',
          413,
          refusal('InvalidArgument', `request body larger than ${MAX_REQUEST_BYTES} bytes`),
        );
        stream.close(NGHTTP2_CANCEL);
        return;
      }
      chunks.push(chunk);
    });
    stream.once('close', () => clearTimeout(timer));
    stream.once('end', () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const parsed = parseCertificateRequest(Buffer.concat(chunks).toString('utf8'));
      if (typeof parsed === 'string') {
        return answer('bad_request', 400, refusal('InvalidArgument', parsed));
      }
      const issuing = presented
        ? options.ca.renew({ ...presented, csrPem: parsed.csrPem })
        : options.ca.issue({ token, csrPem: parsed.csrPem });
      void issuing.then((result) => {
        if (!result.ok && (result.code === 'Unauthenticated' || result.code === 'PermissionDenied')) {
          options.perSource.charge(source, options.failedReviewCost);
        }
        const { status, body } = certificateResponse(result);
        const extra =
          status === 503 ? { 'retry-after': '5' } : retryAfter(result.ok ? undefined : result.retryAfterMs);
        respondJson(stream, status, body, extra);
        options.onResult?.({ reason: reasonOf(result, presented !== undefined), result, source });
      });
    });
  };
}

/**
 * The SPIFFE ID and fingerprint of the workload certificate the client presented on this connection, if it
 * chains to the trust bundle (TLS verified it; the server asks for a certificate but admits clients without
 * one) and names a workload in `trustDomain`; undefined otherwise.
 */
function presentedCertificate(
  stream: http2.ServerHttp2Stream,
  trustDomain: string,
): { spiffeId: string; fingerprint: string } | undefined {
  const socket = stream.session?.socket as TLSSocket | undefined;
  if (!socket || typeof socket.getPeerCertificate !== 'function') return undefined;
  try {
    const peer = authenticatePeer(socket, trustDomain);
    return { spiffeId: peer.spiffeId, fingerprint: socket.getPeerCertificate().fingerprint256 };
  } catch {
    return undefined;
  }
}
