// The watch wire format (one JSON event per line) and the decisions the supervisor takes on it. Pure.

import { isKubeObject, type KubeObject } from './object-cache.ts';

/** The metav1.Status the API server sends in ERROR events and non-2xx responses. */
export interface ApiStatus {
  readonly code?: number;
  readonly reason?: string;
  readonly message?: string;
}

export type WatchEvent =
  | { readonly type: 'ADDED' | 'MODIFIED' | 'DELETED'; readonly object: KubeObject }
  | { readonly type: 'BOOKMARK'; readonly resourceVersion: string }
  | { readonly type: 'ERROR'; readonly status: ApiStatus };

/** Splits a text stream into lines; refuses a line longer than `maxLineChars` (a broken stream). */
export class LineSplitter {
  readonly #maxLineChars: number;
  #partial = '';

  constructor(maxLineChars: number) {
    this.#maxLineChars = maxLineChars;
  }

  /** The complete lines in `chunk` (with what earlier chunks left over); empty lines are skipped. */
  push(chunk: string): string[] {
    const parts = (this.#partial + chunk).split('\n');
    this.#partial = parts.pop() ?? '';
    if (this.#partial.length > this.#maxLineChars) {
      throw new Error(`watch event longer than ${this.#maxLineChars} characters`);
    }
    return parts.filter((line) => line.trim() !== '');
  }
}

export function asStatus(value: unknown): ApiStatus {
  if (typeof value !== 'object' || value === null) return {};
  const { code, reason, message } = value as Record<string, unknown>;
  return {
    ...(typeof code === 'number' ? { code } : {}),
    ...(typeof reason === 'string' ? { reason } : {}),
    ...(typeof message === 'string' ? { message } : {}),
  };
}

/** One watch line; undefined for anything that is not a well-formed event (skipped, never fatal). */
export function parseWatchEvent(line: string): WatchEvent | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const { type, object } = parsed as { type?: unknown; object?: unknown };
  switch (type) {
    case 'ADDED':
    case 'MODIFIED':
    case 'DELETED':
      return isKubeObject(object) ? { type, object } : undefined;
    case 'BOOKMARK': {
      const rv = isObjectWithMetadata(object) ? object.metadata.resourceVersion : undefined;
      return typeof rv === 'string' && rv !== '' ? { type, resourceVersion: rv } : undefined;
    }
    case 'ERROR':
      return { type, status: asStatus(object) };
    default:
      return undefined;
  }
}

function isObjectWithMetadata(value: unknown): value is { metadata: { resourceVersion?: unknown } } {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { metadata?: unknown }).metadata === 'object' &&
    (value as { metadata?: unknown }).metadata !== null
  );
}

/** 410 Gone / Expired: the resource version is too old to resume from, so the informer must list again. */
export function isGone(status: ApiStatus): boolean {
  return status.code === 410 || status.reason === 'Expired' || status.reason === 'Gone';
}

/** One line for logs: "410 Expired: too old resource version: 5 (7)". */
export function describeStatus(status: ApiStatus, fallback: string): string {
  const head = [status.code, status.reason].filter((part) => part !== undefined).join(' ');
  const message = (status.message ?? '').replace(/\s+/g, ' ').trim();
  if (head === '' && message === '') return fallback;
  return message === '' ? head : head === '' ? message : `${head}: ${message}`;
}

/**
 * Whether a watch that just ended was healthy, which resets the restart backoff. It was if it stayed
 * connected for `healthyAfterMs`, or if the server closed it cleanly at (about) the timeout we asked
 * for — a server-side timeout shorter than `healthyAfterMs` must not make every restart slower.
 */
export function watchWasHealthy(params: {
  readonly connectedMs: number | undefined;
  readonly closedCleanly: boolean;
  readonly requestedTimeoutMs: number;
  readonly healthyAfterMs: number;
}): boolean {
  const { connectedMs, closedCleanly, requestedTimeoutMs, healthyAfterMs } = params;
  if (connectedMs === undefined) return false;
  if (connectedMs >= healthyAfterMs) return true;
  return closedCleanly && connectedMs >= 0.8 * requestedTimeoutMs;
}
