// Small helpers around @kubernetes/client-node 2.x calls: per-request deadline and cancellation, the
// Content-Type of a PATCH, and reading the HTTP status of a failure. The client has no request timeout of
// its own (a hung connection would stall a lease renewal forever), and its ApiException carries the
// response body as unparsed text in a multi-line message, which is no good for a one-line log.
import {
  ApiException,
  Observable,
  type ConfigurationOptions,
  type RequestContext,
} from '@kubernetes/client-node';

export interface CallOptions {
  /** Abort the request after this many milliseconds. */
  timeoutMs?: number;
  /** Abort the request when this fires (a stop, a lost leadership). */
  signal?: AbortSignal;
  /** Content-Type of the request body, e.g. PatchStrategy.MergePatch for a PATCH. */
  contentType?: string;
}

/** Per-call options for any API method of the client (they all take a ConfigurationOptions). */
export function callOptions(options: CallOptions): ConfigurationOptions {
  const signals: AbortSignal[] = [];
  if (options.timeoutMs !== undefined) signals.push(AbortSignal.timeout(options.timeoutMs));
  if (options.signal) signals.push(options.signal);
  const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
  const { contentType } = options;
  return {
    // Appended after the client's own middleware, so the header set here wins over the one the request
    // factory picked (for PATCH it prefers application/json-patch+json).
    middlewareMergeStrategy: 'append',
    middleware: [
      {
        pre: (context: RequestContext) => {
          if (signal) context.setSignal(signal);
          if (contentType !== undefined) context.setHeaderParam('Content-Type', contentType);
          return new Observable(Promise.resolve(context));
        },
        post: (response) => new Observable(Promise.resolve(response)),
      },
    ],
  };
}

/** The HTTP status of a failed API call; undefined when the request never got an answer. */
export function apiStatus(error: unknown): number | undefined {
  return error instanceof ApiException ? (error as ApiException<unknown>).code : undefined;
}

function statusMessage(body: unknown): string | undefined {
  let parsed = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      return body.trim() === '' ? undefined : body.trim().slice(0, 300);
    }
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const message = (parsed as { message?: unknown }).message;
  return typeof message === 'string' ? message : undefined;
}

/** One line saying why an API call failed (HTTP status and the API server's message, or the local cause). */
export function describeApiError(error: unknown): string {
  if (error instanceof ApiException) {
    const e = error as ApiException<unknown>;
    const message = statusMessage(e.body);
    return message ? `HTTP ${e.code}: ${message}` : `HTTP ${e.code}`;
  }
  if (error instanceof Error) {
    if (error.name === 'TimeoutError') return 'request timed out';
    if (error.name === 'AbortError') return 'request aborted';
    const cause = (error as { cause?: unknown }).cause;
    const text = cause instanceof Error ? `${error.message}: ${cause.message}` : error.message;
    return text.split('\n')[0] ?? text;
  }
  return String(error);
}
