// POST /v1/certificate on the controller's config port: a workload sends its pod's projected
// service-account token (Authorization: Bearer) and a CSR ({"csr": PEM}), and gets back
// {"certChain": PEM, "trustBundle": PEM}. TLS here is server-authenticated only (the workload has no
// certificate yet); who the caller is comes from the token alone (WorkloadCa, TokenReview).
import http2 from 'node:http2';
import type { RouteHandler } from './config-server.ts';
import type { TokenBucket } from '../lib/token-bucket.ts';
import type { IssuedCertificate, IssueResult, RefusalCode, WorkloadCa } from './workload-ca.ts';

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
  stream.respond({
    [HTTP2_HEADER_STATUS]: status,
    'content-type': 'application/json',
    'cache-control': 'no-store',
    ...extra,
  });
  stream.end(`${JSON.stringify(body)}\n`);
}

export interface CertificateEndpointOptions {
  readonly ca: WorkloadCa;
  /** Called once per request with what happened (for logs and metrics); never with the token. */
  readonly onResult?: (
    result: IssueResult | { ok: false; code: 'InvalidArgument' | 'Unavailable'; message: string },
  ) => void;
  /** Requests over this rate get 429 with Retry-After before their token is reviewed (a mass restart of
   * pods must not turn into a storm of TokenReviews). */
  readonly limiter?: TokenBucket;
}

export function certificateHandler(options: CertificateEndpointOptions): RouteHandler {
  return (stream, headers) => {
    const refuse = (
      status: number,
      code: RefusalCode,
      message: string,
      extra?: Record<string, string>,
    ): void => {
      options.onResult?.({ ok: false, code: 'InvalidArgument', message });
      respondJson(stream, status, { error: code, message }, extra);
    };
    if (headers[HTTP2_HEADER_METHOD] !== 'POST') {
      return refuse(405, 'InvalidArgument', 'method not allowed: use POST', { allow: 'POST' });
    }
    const token = bearerToken(headers[HTTP2_HEADER_AUTHORIZATION]);
    if (token === undefined) {
      options.onResult?.({ ok: false, code: 'InvalidArgument', message: 'no bearer token' });
      return respondJson(
        stream,
        401,
        { error: 'Unauthenticated', message: 'send the pod service-account token as Authorization: Bearer' },
        { 'www-authenticate': 'Bearer' },
      );
    }
    const waitMs = options.limiter?.tryTake() ?? 0;
    if (waitMs > 0) {
      const message = 'too many certificate requests: retry later';
      options.onResult?.({ ok: false, code: 'Unavailable', message });
      return respondJson(
        stream,
        429,
        { error: 'Unavailable', message },
        { 'retry-after': String(Math.ceil(waitMs / 1000)) },
      );
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      refuse(408, 'InvalidArgument', 'request body not received in time');
      stream.close(NGHTTP2_CANCEL);
    }, REQUEST_TIMEOUT_MS);
    timer.unref();
    stream.on('data', (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > MAX_REQUEST_BYTES) {
        done = true;
        clearTimeout(timer);
        refuse(413, 'InvalidArgument', `request body larger than ${MAX_REQUEST_BYTES} bytes`);
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
      if (typeof parsed === 'string') return refuse(400, 'InvalidArgument', parsed);
      void options.ca.issue({ token, csrPem: parsed.csrPem }).then((result) => {
        options.onResult?.(result);
        const { status, body } = certificateResponse(result);
        respondJson(stream, status, body, status === 503 ? { 'retry-after': '5' } : {});
      });
    });
  };
}
