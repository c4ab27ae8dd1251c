// Which failed upstream attempts are tried again (ADR 0015). Pure: the forwarding code says how far an
// attempt got, this decides.

/**
 * How an attempt failed before any response byte arrived:
 * - connect: the connection (TCP or the mTLS handshake) failed; nothing was sent.
 * - refused: the peer guarantees it did not process the request: an HTTP/2 REFUSED_STREAM or a GOAWAY
 *   before the stream, or a peer sidecar's answer that its app never got it (NOT_PROCESSED_HEADER).
 * - stale_connection: a pooled keep-alive connection that had served requests was closed or reset by the
 *   server right after this request was written to it, before any of its body was read: the server's close
 *   raced the request (it closed an idle connection), so the app did not get it.
 * - reset: the connection was reset or closed after the request (or part of it) may have reached the app.
 * - other: anything else (a timeout, a malformed response): never retried here.
 */
export type FailureKind = 'connect' | 'refused' | 'stale_connection' | 'reset' | 'other';

/** The kinds where no byte of the request reached the app: retried whatever the method. */
const UNSENT: ReadonlySet<FailureKind> = new Set(['connect', 'refused', 'stale_connection']);

/** RFC 9110 §9.2.2 idempotent methods this mesh retries on its own (PUT and DELETE only with a policy). */
const RETRIED_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Extra attempts after a transport failure, unless the proxy is told otherwise. */
export const DEFAULT_TRANSPORT_RETRIES = 1;

/** How long after the request was written a close of a reused connection still counts as the race. */
export const STALE_RACE_MS = 1000;

export interface RetryQuestion {
  readonly kind: FailureKind;
  readonly method: string;
  /** The route rule has a retry policy (it declares its requests safe to repeat). */
  readonly hasRetryPolicy: boolean;
  /** The request can be sent again as it was: no body, or a body nobody has read yet. */
  readonly replayable: boolean;
  /** Transport retries left for this request. */
  readonly retriesLeft: number;
}

/** Whether a request that failed this way is sent again (to another endpoint when there is one). */
export function shouldRetry(q: RetryQuestion): boolean {
  if (q.retriesLeft <= 0 || !q.replayable) return false;
  if (UNSENT.has(q.kind)) return true;
  if (q.kind !== 'reset') return false;
  return q.hasRetryPolicy || RETRIED_METHODS.has(q.method.toUpperCase());
}

/**
 * Why a request that failed this way is not sent again, in words for the caller's 502 body (undefined
 * when it is). A non-idempotent method comes first: it is the reason whatever else holds.
 */
export function whyNotRetried(q: RetryQuestion & { readonly grpc?: boolean }): string | undefined {
  if (shouldRetry(q)) return undefined;
  const method = q.method.toUpperCase();
  if (q.kind === 'reset' && !q.hasRetryPolicy && !RETRIED_METHODS.has(method))
    return `${q.grpc ? `a gRPC call (${method})` : method} is not idempotent`;
  if (q.kind === 'other') return 'the failure is not one a request is sent again after';
  if (q.retriesLeft <= 0) return 'its retry was already used';
  return 'its body was streamed and cannot be sent again';
}

const RESET_CODES: ReadonlySet<string> = new Set(['ECONNRESET', 'EPIPE']);

/**
 * An HTTP/1.1 attempt's failure (no response byte arrived): a failed connect; a reused connection the
 * server closed within STALE_RACE_MS of the request being written, its body unread; a reset; or other.
 */
export function classifyHttp1(failure: {
  readonly code: string;
  readonly connectFailed: boolean;
  /** Whether the connection had carried a request before this one (undefined: not written at all). */
  readonly reused: boolean | undefined;
  /** ms from the request's headers being written to the failure (undefined: not written). */
  readonly sinceWrittenMs: number | undefined;
  readonly bodyRead: boolean;
}): FailureKind {
  if (failure.connectFailed) return 'connect';
  if (!RESET_CODES.has(failure.code)) return 'other';
  if (
    failure.reused === true &&
    !failure.bodyRead &&
    failure.sinceWrittenMs !== undefined &&
    failure.sinceWrittenMs <= STALE_RACE_MS
  )
    return 'stale_connection';
  return 'reset';
}

/** NGHTTP2_REFUSED_STREAM: the peer did not process the stream and says so. */
const REFUSED_STREAM = 7;

/** An HTTP/2 attempt's failure: `started` once the session was up and the stream's headers went out. */
export function classifyHttp2(failure: {
  readonly code: string;
  readonly rstCode: number | undefined;
  readonly started: boolean;
}): FailureKind {
  if (!failure.started) return 'connect';
  if (failure.rstCode === REFUSED_STREAM || failure.code === 'ERR_HTTP2_GOAWAY_SESSION') return 'refused';
  return 'reset';
}
