// Writes the `status` of HTTPRoutes and GRPCRoutes (gateway.networking.k8s.io/v1, /status subresource)
// without clobbering what other controllers write there, and without storming the API server.
//
// Decisions:
// - Optimistic concurrency, always: status.parents is a list shared with other controllers (Gateway
//   implementations), and whatever we send replaces the whole list. So each write carries the
//   resourceVersion of the object its status was computed from; a 409 means someone wrote in between, and
//   we re-read, recompute and retry (bounded).
// - The write is a JSON merge patch (RFC 7386) of the status subresource holding metadata.resourceVersion
//   (the API server treats it as a precondition) and the difference between the current and the new
//   status. Unlike a PUT it does not resend spec and annotations (kubectl's last-applied copy doubles
//   them), and it cannot disturb fields outside status. Lists in it replace the whole list, which is
//   exactly right for a list computed from the same resourceVersion.
// - computeStatus gets the current object and returns the whole new `status`, or undefined for "nothing
//   to do". A new status equal to the current one makes no request either.
// - One queue entry per route (kind/namespace/name): a newer request replaces a pending one (latest wins;
//   the replaced one resolves 'superseded'), and a route is never written by two workers at once (a
//   request arriving while one runs waits for it). At most `concurrency` routes are in flight, and every
//   request (GET or PATCH) takes a token from a rate limiter (qps, burst).
// - A 404 means the route is gone: dropped. Other failures are retried a few times with backoff (while no
//   newer request for the route is waiting), then given up: the controller rewrites all statuses when it
//   resyncs, so nothing is retried forever here.
// - Writes happen only between start() and stop() (only the leader writes status). Requests made while
//   stopped resolve 'stopped' at once; stop() drops what is queued and aborts what is in flight.
import { setTimeout as sleep } from 'node:timers/promises';
import { isObject } from '../mesh-model/k8s-objects.ts';
import {
  apiStatus,
  describeApiError,
  MERGE_PATCH,
  type KubeApi,
  type RequestOptions,
} from '../lib/kube/kube-api.ts';
import { sameJson, type RouteObject } from './route-status.ts';
import { TokenBucket } from '../lib/token-bucket.ts';
import { backoffDelay } from '../lib/backoff.ts';

export const ROUTE_GROUP = 'gateway.networking.k8s.io';
export const ROUTE_VERSION = 'v1';
const PLURALS = {
  HTTPRoute: 'httproutes',
  GRPCRoute: 'grpcroutes',
  // The gateway controller's objects go through the same writer (one rate limit, one queue per object).
  Gateway: 'gateways',
  GatewayClass: 'gatewayclasses',
} as const;
const CLUSTER_SCOPED: ReadonlySet<string> = new Set(['GatewayClass']);
export type StatusRouteKind = keyof typeof PLURALS;

export interface RouteRef {
  kind: StatusRouteKind;
  namespace: string;
  name: string;
}

/** The `status` stanza of a route. */
export type RouteStatus = Record<string, unknown>;
export type ComputeStatus = (current: RouteObject) => RouteStatus | undefined;

export type WriteOutcome =
  /** The status was written. */
  | 'written'
  /** Nothing to write: computeStatus returned undefined or the status it returned is already there. */
  | 'unchanged'
  /** The route does not exist (any more). */
  | 'deleted'
  /** A newer request for the same route replaced this one. */
  | 'superseded'
  /** The writer is not started (not the leader), or was stopped before the write. */
  | 'stopped'
  /** Gave up: see the log. */
  | 'failed';

export interface WriteResult {
  outcome: WriteOutcome;
  /** The route as the API server returned it after our write (outcome 'written'), or as last read. */
  object?: RouteObject;
}

export interface StatusWriterMetrics {
  /** API requests sent, by verb. */
  requests: { get: number; patch: number };
  writes: number;
  unchanged: number;
  conflicts: number;
  deleted: number;
  superseded: number;
  dropped: number;
  errors: number;
  queueDepth: number;
  inFlight: number;
}

export interface StatusWriterOptions {
  api: KubeApi;
  log: (message: string) => void;
  /** Routes written at the same time (10). */
  concurrency?: number;
  /** Sustained API requests per second (50) and burst (100):
   * 1,000 new routes get their status in about 20 s. API Priority and Fairness guards the server. */
  qps?: number;
  burst?: number;
  /** Re-reads after a 409 before giving up (5). */
  maxConflicts?: number;
  /** Attempts on other failures (timeouts, 5xx, 429) before giving up (3). */
  maxAttempts?: number;
  /** First backoff after a failure, doubled each time (500 ms). */
  backoffMs?: number;
  requestTimeoutMs?: number;
  /** The field manager recorded in managedFields. */
  fieldManager?: string;
}

// ---- pure parts ----

function routeRef(route: RouteRef | RouteObject): RouteRef | undefined {
  const meta = isObject((route as RouteObject).metadata) ? (route as RouteObject).metadata : undefined;
  const kind = route.kind;
  const namespace = meta ? meta.namespace : (route as RouteRef).namespace;
  const name = meta ? meta.name : (route as RouteRef).name;
  if (typeof kind !== 'string' || !Object.hasOwn(PLURALS, kind)) return undefined;
  const clusterScoped = CLUSTER_SCOPED.has(kind);
  if (!clusterScoped && (typeof namespace !== 'string' || namespace === '')) return undefined;
  if (typeof name !== 'string' || name === '') return undefined;
  return { kind: kind as StatusRouteKind, namespace: clusterScoped ? '' : (namespace as string), name };
}

/** Read through a call, since TypeScript narrows `signal.aborted` as if it could not change. */
function aborted(signal: AbortSignal): boolean {
  return signal.aborted;
}

function resourceVersionOf(object: RouteObject): string | undefined {
  const meta: unknown = object.metadata;
  const rv = isObject(meta) ? meta.resourceVersion : undefined;
  return typeof rv === 'string' && rv !== '' ? rv : undefined;
}

export function routeKey(ref: RouteRef): string {
  return `${ref.kind}/${ref.namespace}/${ref.name}`;
}

/**
 * The RFC 7386 merge patch that turns `from` into `to`: changed members, null for removed ones, nested
 * objects patched member by member, anything else (lists included) sent whole. Empty when equal.
 */
export function createMergePatch(from: unknown, to: Record<string, unknown>): Record<string, unknown> {
  const base = isObject(from) ? from : {};
  const patch: Record<string, unknown> = {};
  for (const key of Object.keys(base)) {
    if (base[key] !== undefined && to[key] === undefined) patch[key] = null;
  }
  for (const [key, value] of Object.entries(to)) {
    if (value === undefined) continue;
    const old = base[key];
    if (isObject(value) && isObject(old)) {
      const nested = createMergePatch(old, value);
      if (Object.keys(nested).length > 0) patch[key] = nested;
    } else if (!sameJson(old, value)) {
      patch[key] = value;
    }
  }
  return patch;
}

/**
 * A keyed work queue: one pending item per key (a newer add replaces it and gets the old one back), keys
 * handed out in the order they were first queued, at most `concurrency` at once, and never the same key
 * twice at once (an add for a running key waits until done()).
 */
export class CoalescingQueue<T> {
  readonly #concurrency: number;
  readonly #process: (key: string, item: T) => Promise<void>;
  readonly #pending = new Map<string, T>();
  readonly #running = new Set<string>();
  readonly #idle = new Set<() => void>();

  constructor(concurrency: number, process: (key: string, item: T) => Promise<void>) {
    if (!(concurrency >= 1)) throw new RangeError('queue concurrency must be at least 1');
    this.#concurrency = concurrency;
    this.#process = process;
  }

  /** Queues `item` for `key`; returns the pending item it replaced, if any. */
  add(key: string, item: T): T | undefined {
    const replaced = this.#pending.get(key);
    // Map.set on a present key keeps its place in line: coalescing never sends a busy route to the back.
    this.#pending.set(key, item);
    this.#pump();
    return replaced;
  }

  /** Whether a newer item waits for this key. */
  hasPending(key: string): boolean {
    return this.#pending.has(key);
  }

  /** Removes and returns everything pending. */
  drain(): T[] {
    const items = [...this.#pending.values()];
    this.#pending.clear();
    return items;
  }

  get pending(): number {
    return this.#pending.size;
  }

  get running(): number {
    return this.#running.size;
  }

  /** Resolves when nothing is running or pending. */
  whenIdle(): Promise<void> {
    if (this.#running.size === 0 && this.#pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.add(resolve));
  }

  #pump(): void {
    if (this.#running.size >= this.#concurrency) return;
    for (const [key, item] of this.#pending) {
      if (this.#running.has(key)) continue;
      this.#pending.delete(key);
      this.#running.add(key);
      void this.#run(key, item);
      if (this.#running.size >= this.#concurrency) return;
    }
  }

  async #run(key: string, item: T): Promise<void> {
    try {
      await this.#process(key, item);
    } catch {
      // process() handles its own failures; a throw must not stall the queue.
    } finally {
      this.#running.delete(key);
      this.#pump();
      // Nothing running after a pump means nothing is pending either.
      if (this.#running.size === 0) {
        for (const resolve of this.#idle) resolve();
        this.#idle.clear();
      }
    }
  }
}

// ---- the writer ----

interface WriteRequest {
  ref: RouteRef;
  object: RouteObject | undefined;
  compute: ComputeStatus;
  resolve: (result: WriteResult) => void;
}

export class StatusWriter {
  readonly #o: StatusWriterOptions;
  readonly #queue: CoalescingQueue<WriteRequest>;
  /** Per route: the resourceVersion our last write started from, and the object it returned. */
  readonly #written = new Map<string, { from: string; object: RouteObject }>();
  readonly #bucket: TokenBucket;
  readonly #counts = {
    get: 0,
    patch: 0,
    writes: 0,
    unchanged: 0,
    conflicts: 0,
    deleted: 0,
    superseded: 0,
    dropped: 0,
    errors: 0,
  };
  /** Set while started; aborted by stop(). */
  #active: AbortController | undefined;

  constructor(options: StatusWriterOptions) {
    this.#o = options;
    this.#queue = new CoalescingQueue(options.concurrency ?? 10, (key, request) =>
      this.#process(key, request),
    );
    this.#bucket = new TokenBucket(options.qps ?? 50, options.burst ?? 100);
  }

  get active(): boolean {
    return this.#active !== undefined;
  }

  /** Starts writing; `signal` (e.g. the leader's term) stops the writer when it aborts. */
  start(signal?: AbortSignal): void {
    if (this.#active || signal?.aborted) return;
    const active = new AbortController();
    this.#active = active;
    signal?.addEventListener('abort', () => void this.#stopIfCurrent(active), { once: true });
  }

  /** Drops queued requests ('stopped'), aborts the in-flight ones and waits for them. Never rejects. */
  async stop(): Promise<void> {
    await this.#stopIfCurrent(this.#active);
  }

  async #stopIfCurrent(active: AbortController | undefined): Promise<void> {
    if (active && this.#active === active) {
      this.#active = undefined;
      active.abort();
      for (const request of this.#queue.drain()) this.#finish(request, { outcome: 'stopped' });
    }
    await this.#queue.whenIdle();
  }

  /**
   * Queues a status write for a route. `route` is the object the caller has (its resourceVersion is used
   * for the first attempt, saving a GET) or just its kind, namespace and name. Never rejects.
   */
  write(route: RouteRef | RouteObject, compute: ComputeStatus): Promise<WriteResult> {
    return new Promise((resolve) => {
      const ref = routeRef(route);
      if (!ref) {
        this.#o.log(`route status: not a route this writer handles: ${JSON.stringify(route).slice(0, 200)}`);
        this.#counts.errors++;
        resolve({ outcome: 'failed' });
        return;
      }
      if (!this.#active) {
        this.#counts.dropped++;
        resolve({ outcome: 'stopped' });
        return;
      }
      const object = isObject((route as RouteObject).metadata) ? (route as RouteObject) : undefined;
      const replaced = this.#queue.add(routeKey(ref), { ref, object, compute, resolve });
      if (replaced) this.#finish(replaced, { outcome: 'superseded' });
    });
  }

  metrics(): StatusWriterMetrics {
    const c = this.#counts;
    return {
      requests: { get: c.get, patch: c.patch },
      writes: c.writes,
      unchanged: c.unchanged,
      conflicts: c.conflicts,
      deleted: c.deleted,
      superseded: c.superseded,
      dropped: c.dropped,
      errors: c.errors,
      queueDepth: this.#queue.pending,
      inFlight: this.#queue.running,
    };
  }

  #finish(request: WriteRequest, result: WriteResult): void {
    const counter = {
      written: 'writes',
      unchanged: 'unchanged',
      deleted: 'deleted',
      superseded: 'superseded',
      stopped: 'dropped',
      failed: 'errors',
    } as const;
    this.#counts[counter[result.outcome]]++;
    request.resolve(result);
  }

  async #process(key: string, request: WriteRequest): Promise<void> {
    const active = this.#active;
    if (!active) {
      this.#finish(request, { outcome: 'stopped' });
      return;
    }
    let result: WriteResult;
    try {
      result = await this.#attempts(key, request, active.signal);
    } catch (error) {
      // #attempts handles API failures; this is a bug, but it must not leave the caller waiting.
      this.#o.log(`route status: ${key}: ${describeApiError(error)}`);
      result = { outcome: 'failed' };
    }
    this.#finish(request, result);
  }

  async #attempts(key: string, request: WriteRequest, signal: AbortSignal): Promise<WriteResult> {
    const { ref, compute } = request;
    const where = `${ref.kind} ${ref.namespace}/${ref.name}`;
    const maxConflicts = this.#o.maxConflicts ?? 5;
    const maxAttempts = this.#o.maxAttempts ?? 3;
    let current = this.#latest(key, request.object);
    let conflicts = 0;
    let failures = 0;
    for (;;) {
      if (signal.aborted) return { outcome: 'stopped' };
      try {
        current ??= await this.#get(ref, signal);
        const rv = resourceVersionOf(current);
        let status: RouteStatus | undefined;
        try {
          status = compute(current);
        } catch (error) {
          this.#o.log(`route status: computing the status of ${where} failed: ${describeApiError(error)}`);
          return { outcome: 'failed' };
        }
        if (status === undefined) return { outcome: 'unchanged', object: current };
        const statusPatch = createMergePatch(current.status, status);
        if (Object.keys(statusPatch).length === 0) return { outcome: 'unchanged', object: current };
        if (!rv) throw new Error('the route has no resourceVersion');
        const written = await this.#patch(ref, rv, statusPatch, signal);
        this.#written.set(key, { from: rv, object: written });
        return { outcome: 'written', object: written };
      } catch (error) {
        if (aborted(signal)) return { outcome: 'stopped' };
        const code = apiStatus(error);
        if (code === 404) return { outcome: 'deleted' };
        if (code === 409) {
          this.#counts.conflicts++;
          current = undefined;
          if (++conflicts > maxConflicts) {
            this.#o.log(
              `route status: ${where}: still conflicting after ${maxConflicts} re-reads, giving up`,
            );
            return { outcome: 'failed' };
          }
          // The next request for this route recomputes from a fresh read anyway.
          if (this.#queue.hasPending(key)) return { outcome: 'superseded' };
          continue;
        }
        const transient = code === undefined || code === 429 || code >= 500;
        if (!transient || ++failures >= maxAttempts) {
          this.#o.log(`route status: writing ${where} failed: ${describeApiError(error)}`);
          return { outcome: 'failed' };
        }
        current = undefined;
        if (this.#queue.hasPending(key)) return { outcome: 'superseded' };
        const backoff = backoffDelay(failures - 1, {
          initialMs: this.#o.backoffMs ?? 500,
          maxMs: Infinity,
          jitter: 0,
        });
        await sleep(backoff, undefined, { signal }).catch(() => undefined);
      }
    }
  }

  /**
   * The object to compute from. Callers pass objects from an informer cache, which lags our own writes: an
   * object still at the version our last write started from would only earn a 409 and a re-read, so the
   * object that write returned is used instead (until the caller's copy moves on).
   */
  #latest(key: string, given: RouteObject | undefined): RouteObject | undefined {
    const rv = given ? resourceVersionOf(given) : undefined;
    if (!given || !rv) return undefined;
    const written = this.#written.get(key);
    if (written?.from === rv) return written.object;
    this.#written.delete(key);
    return given;
  }

  async #takeToken(signal: AbortSignal): Promise<void> {
    const wait = this.#bucket.reserve();
    if (wait > 0) await sleep(wait, undefined, { signal });
  }

  #options(signal: AbortSignal): RequestOptions {
    return { signal, timeoutMs: this.#o.requestTimeoutMs ?? 10_000 };
  }

  #path(ref: RouteRef): string {
    const scope = CLUSTER_SCOPED.has(ref.kind) ? '' : `/namespaces/${ref.namespace}`;
    return `/apis/${ROUTE_GROUP}/${ROUTE_VERSION}${scope}/${PLURALS[ref.kind]}/${ref.name}`;
  }

  async #get(ref: RouteRef, signal: AbortSignal): Promise<RouteObject> {
    await this.#takeToken(signal);
    this.#counts.get++;
    const object = await this.#o.api.request('GET', this.#path(ref), this.#options(signal));
    if (!isObject(object)) throw new Error('the API server returned no object');
    return object;
  }

  async #patch(
    ref: RouteRef,
    resourceVersion: string,
    status: Record<string, unknown>,
    signal: AbortSignal,
  ): Promise<RouteObject> {
    await this.#takeToken(signal);
    this.#counts.patch++;
    const object = await this.#o.api.request('PATCH', `${this.#path(ref)}/status`, {
      ...this.#options(signal),
      query: { fieldManager: this.#o.fieldManager ?? 'sluice-controller' },
      body: { metadata: { resourceVersion }, status },
      contentType: MERGE_PATCH,
    });
    if (!isObject(object)) throw new Error('the API server returned no object');
    return object;
  }
}
