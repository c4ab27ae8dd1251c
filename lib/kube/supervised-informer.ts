// A list+watch cache of one resource type that keeps itself alive: every way a watch can end (error,
// reset, server timeout, 410 Gone, a stream gone silent) leads back to watching, and a periodic relist
// repairs whatever the watch may have missed.
//
// Decision: list+watch is implemented here, over kube-api.ts, not with @kubernetes/client-node's
// makeInformer/ListWatch or its Watch class (client-node is not used at all any more: ADR 0007). ListWatch
// (2.0.1, dist/cache.js) could not be supervised cleanly:
//  - Any error but 410 or its own client-side timeout ends it for good: doneHandler calls the `error`
//    callbacks and returns without reconnecting; a failed list does the same.
//  - stop() aborts the request and the resulting AbortError goes to the same `error` callbacks,
//    indistinguishable from a real failure.
//  - Its watchHandler is async and Watch drops the promise it returns, so a handler that throws becomes
//    an unhandled rejection, which terminates Node by default.
//  - It asks for neither bookmarks nor a server-side timeout, and its list usually goes through the typed
//    API (Date objects) while watch events stay JSON (strings), so objects change shape on first update.
// Watch (dist/watch.js) alone does not fit either: a private, fixed 30 s inactivity timeout that quiet
// watches always hit (the API server sends no bookmarks on a quiet type; see watchdogMs), no way to
// abort before the response headers arrive, and callback exceptions swallowed. Here every request is
// ours to abort, objects stay exactly as the API server sends them (lists and watches alike), and the
// credentials are asked for again on every request, so rotated tokens are picked up.

import { setTimeout as sleep } from 'node:timers/promises';
import { errorLine, KubeApiError, responseError, type KubeApi } from './kube-api.ts';
import { Backoff, DEFAULT_BACKOFF, stretch, type BackoffOptions } from '../backoff.ts';
import { isKubeObject, ObjectCache, type ChangeEvent, type KubeObject } from './object-cache.ts';
import { apiVersionOf, collectionPath, describeResource, type ResourceType } from './resources.ts';
import {
  describeStatus,
  isGone,
  LineSplitter,
  parseWatchEvent,
  watchWasHealthy,
  type ApiStatus,
} from './watch-protocol.ts';
import { isRecord } from '../is-record.ts';

export interface SupervisedInformerOptions {
  readonly api: KubeApi;
  readonly resource: ResourceType;
  /** Only this namespace (namespaced types only); all namespaces when unset. */
  readonly namespace?: string;
  readonly labelSelector?: string;
  readonly fieldSelector?: string;
  /** Server-side watch timeout, stretched by up to 20 % per watch (default 300 s). */
  readonly watchTimeoutSeconds?: number;
  /**
   * A watch that delivers nothing at all, not even a bookmark, for this long is restarted. Default: the
   * watch's own server-side timeout plus 30 s. Not "two bookmark periods": the API server's cacher sends
   * its once-a-minute bookmark only when the type's resource version has moved past what the watcher
   * has already seen (apiserver cache_watcher.go, process()), so a quiet type gets no bookmarks at all
   * and a 2-minute watchdog would restart every quiet watch every 2 minutes. A stream still silent after
   * the server should have closed it is certainly dead (half-open TCP, a proxy that lost it).
   */
  readonly watchdogMs?: number;
  /** Full relist that reconciles the cache, stretched by up to 10 % (default 10 min; 0 turns it off). */
  readonly resyncIntervalMs?: number;
  /** A watch connected this long counts as healthy and resets the restart backoff (default 30 s). */
  readonly healthyAfterMs?: number;
  /** Restart delays (default 200 ms doubling to 30 s, jittered). */
  readonly backoff?: BackoffOptions;
  /** Limit for each list page, and for a watch to send its response headers (default 60 s). */
  readonly requestTimeoutMs?: number;
  /** Objects per list page (default 500). */
  readonly pageSize?: number;
  /** One line per problem (and per recovery); default: stderr. */
  readonly log?: (line: string) => void;
  /** For tests: the random source of every jitter. */
  readonly random?: () => number;
}

export interface InformerStats {
  /** Watch restarts after the watch ended for any reason but a planned resync or stop(). */
  readonly restarts: number;
  /** The restarts the watchdog caused. */
  readonly watchdogRestarts: number;
  /** Completed lists after the first: resyncs, 410 Gone, and lists retried after a failure. */
  readonly relists: number;
  /** Watch events received, bookmarks included. */
  readonly events: number;
  /** When the last watch event (bookmarks included) arrived, epoch ms. */
  readonly lastEventAt: number | undefined;
  /** Change events delivered to listeners (from watches and relists). */
  readonly changes: number;
  /** Watch lines that were not well-formed events (skipped). */
  readonly malformedEvents: number;
  /** Exceptions thrown (or promises rejected) by listeners. */
  readonly listenerErrors: number;
  readonly lastError: string | undefined;
  /** A watch response is open right now. */
  readonly watching: boolean;
  readonly resourceVersion: string;
}

export type ChangeListener<T> = (event: ChangeEvent<T>) => void;

type Interrupt = 'stopped' | 'resync' | 'watchdog' | 'no-headers';

type WatchEnd =
  | { readonly reason: 'stopped' | 'resync' | 'closed' }
  | { readonly reason: 'watchdog'; readonly silentMs: number }
  | { readonly reason: 'gone' | 'error'; readonly message: string };

const WATCHDOG_GRACE_MS = 30_000;
const MAX_WATCH_LINE_CHARS = 64 * 1024 * 1024;
const MAX_LIST_PAGE_BYTES = 512 * 1024 * 1024;

export class SupervisedInformer<T extends KubeObject = KubeObject> {
  /** Resolves once the first list is in the cache (and its add events delivered); rejects if stopped first. */
  readonly synced: Promise<void>;
  /** "services in ns-1 (app=x)", for logs. */
  readonly name: string;

  readonly #api: KubeApi;
  readonly #resource: ResourceType;
  readonly #path: string;
  readonly #selectors: { labelSelector?: string; fieldSelector?: string };
  readonly #watchTimeoutSeconds: number;
  readonly #watchdogMs: number | undefined;
  readonly #resyncIntervalMs: number;
  readonly #healthyAfterMs: number;
  readonly #requestTimeoutMs: number;
  readonly #pageSize: number;
  readonly #log: (line: string) => void;
  readonly #random: () => number;
  readonly #backoff: Backoff;
  readonly #syncedControl: { resolve: () => void; reject: (error: Error) => void };

  readonly #cache = new ObjectCache<T>();
  readonly #listeners = new Set<ChangeListener<T>>();
  readonly #stopController = new AbortController();
  #started = false;
  #stopped = false;
  #loop: Promise<void> | undefined;
  #interrupt: ((reason: Interrupt) => void) | undefined;
  #resyncDue = false;
  #resyncTimer: NodeJS.Timeout | undefined;
  #listed = false;
  #loggedError: string | undefined;
  #stats = {
    restarts: 0,
    watchdogRestarts: 0,
    relists: 0,
    events: 0,
    lastEventAt: undefined as number | undefined,
    changes: 0,
    malformedEvents: 0,
    listenerErrors: 0,
    lastError: undefined as string | undefined,
    watching: false,
    resourceVersion: '',
  };

  constructor(options: SupervisedInformerOptions) {
    this.#api = options.api;
    this.#resource = options.resource;
    this.#path = collectionPath(options.resource, options.namespace);
    this.#selectors = {
      ...(options.labelSelector ? { labelSelector: options.labelSelector } : {}),
      ...(options.fieldSelector ? { fieldSelector: options.fieldSelector } : {}),
    };
    this.#watchTimeoutSeconds = Math.max(1, Math.floor(options.watchTimeoutSeconds ?? 300));
    this.#watchdogMs = options.watchdogMs === undefined ? undefined : Math.max(1, options.watchdogMs);
    this.#resyncIntervalMs = Math.max(0, options.resyncIntervalMs ?? 600_000);
    this.#healthyAfterMs = options.healthyAfterMs ?? 30_000;
    this.#requestTimeoutMs = Math.max(1, options.requestTimeoutMs ?? 60_000);
    this.#pageSize = Math.max(1, Math.floor(options.pageSize ?? 500));
    this.#log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.#random = options.random ?? Math.random;
    this.#backoff = new Backoff(options.backoff ?? DEFAULT_BACKOFF, this.#random);
    const selector = [options.labelSelector, options.fieldSelector].filter(Boolean).join(', ');
    this.name = describeResource(options.resource, options.namespace) + (selector ? ` (${selector})` : '');
    let control: { resolve: () => void; reject: (error: Error) => void } | undefined;
    this.synced = new Promise<void>((resolve, reject) => (control = { resolve, reject }));
    this.#syncedControl = control!;
    // Nobody has to await `synced`: a stop() before the first list must not become an unhandled rejection.
    this.synced.catch(() => undefined);
  }

  /** Starts listing and watching (once). */
  start(): this {
    if (this.#stopped) throw new Error(`informer ${this.name}: a stopped informer cannot be started again`);
    if (!this.#started) {
      this.#started = true;
      this.#loop = this.#run();
    }
    return this;
  }

  /** Ends the watch and every timer; resolves when nothing of the informer is left running. */
  async stop(): Promise<void> {
    if (!this.#stopped) {
      this.#stopped = true;
      this.#stopController.abort();
      this.#interrupt?.('stopped');
      clearTimeout(this.#resyncTimer);
      this.#resyncTimer = undefined;
      this.#syncedControl.reject(new Error(`informer ${this.name}: stopped before the first list`));
    }
    await this.#loop;
  }

  /** Relists now (ending the current watch) and reconciles the cache; the periodic resync does the same. */
  resync(): void {
    if (!this.#started || this.#stopped) return;
    this.#resyncDue = true;
    this.#interrupt?.('resync');
  }

  /**
   * Calls `listener` for every change, in order, synchronously after the cache holds it. A listener that
   * throws is counted and logged; it never disturbs the informer. Returns the unsubscribe function.
   */
  on(listener: ChangeListener<T>): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  list(): T[] {
    return this.#cache.list();
  }

  /** Cluster-scoped objects: namespace undefined (or ''). */
  get(namespace: string | undefined, name: string): T | undefined {
    return this.#cache.get(namespace, name);
  }

  get stats(): InformerStats {
    return { ...this.#stats };
  }

  async #run(): Promise<void> {
    let needList = true;
    while (!this.#stopped) {
      try {
        if (needList || this.#resyncDue) {
          this.#resyncDue = false;
          try {
            await this.#listAndReconcile();
            needList = false;
          } catch (error) {
            if (this.#isStopped()) break;
            needList = true;
            this.#reportError(`list failed: ${errorLine(error)}`);
            await this.#pause(this.#backoff.next());
            continue;
          }
        }
        const end = await this.#watchOnce();
        if (this.#isStopped() || end.reason === 'stopped') break;
        if (end.reason === 'resync') continue;
        this.#stats.restarts++;
        if (end.reason === 'gone') {
          needList = true;
          this.#log(`informer ${this.name}: ${end.message}; listing again`);
        } else if (end.reason === 'watchdog') {
          this.#stats.watchdogRestarts++;
          this.#reportError(`watch delivered nothing for ${end.silentMs} ms; restarting it`);
        } else if (end.reason === 'error') {
          this.#reportError(`watch failed: ${end.message}`);
        }
        await this.#pause(this.#backoff.next());
      } catch (error) {
        // Only a bug gets here; the supervisor must outlive it.
        if (this.#isStopped()) break;
        this.#reportError(`internal error: ${errorLine(error)}`);
        needList = true;
        await this.#pause(this.#backoff.next());
      }
    }
    this.#stats.watching = false;
  }

  /** A method, not the field: TypeScript would narrow the field across awaits that change it. */
  #isStopped(): boolean {
    return this.#stopped;
  }

  async #pause(ms: number): Promise<void> {
    try {
      await sleep(ms, undefined, { signal: this.#stopController.signal });
    } catch {
      // stop() cut the pause short.
    }
  }

  #reportError(message: string): void {
    this.#stats.lastError = message;
    // A failure that repeats every backoff step is logged once, until the informer recovers.
    if (message !== this.#loggedError) this.#log(`informer ${this.name}: ${message}`);
    this.#loggedError = message;
  }

  #noteHealthy(): void {
    if (this.#loggedError !== undefined) this.#log(`informer ${this.name}: recovered`);
    this.#loggedError = undefined;
  }

  async #listAndReconcile(): Promise<void> {
    const items: T[] = [];
    let resourceVersion: string;
    let continueToken: string | undefined;
    do {
      const page = await this.#getPage({
        ...this.#selectors,
        limit: this.#pageSize,
        ...(continueToken ? { continue: continueToken } : {}),
      });
      if (!isRecord(page) || !Array.isArray(page.items) || !isRecord(page.metadata)) {
        throw new KubeApiError(`GET ${this.#path}: the response is not a list`);
      }
      for (const item of page.items) {
        if (isKubeObject(item)) items.push(this.#typed(item));
      }
      const { resourceVersion: rv, continue: next } = page.metadata;
      resourceVersion = typeof rv === 'string' ? rv : '';
      continueToken = typeof next === 'string' && next !== '' ? next : undefined;
    } while (continueToken !== undefined);
    if (this.#isStopped()) return;
    if (resourceVersion === '') throw new KubeApiError(`GET ${this.#path}: the list has no resourceVersion`);

    const changes = this.#cache.replace(items);
    this.#stats.resourceVersion = resourceVersion;
    if (this.#listed) this.#stats.relists++;
    this.#listed = true;
    this.#noteHealthy();
    this.#emit(changes);
    this.#scheduleResync();
    this.#syncedControl.resolve();
  }

  async #getPage(query: Record<string, string | number>): Promise<unknown> {
    const controller = new AbortController();
    const timeout = new Error('timeout');
    const timer = setTimeout(() => controller.abort(timeout), this.#requestTimeoutMs);
    const onStop = (): void => controller.abort();
    if (this.#stopController.signal.aborted) onStop();
    this.#stopController.signal.addEventListener('abort', onStop, { once: true });
    try {
      return await this.#api.request('GET', this.#path, {
        query,
        signal: controller.signal,
        maxBytes: MAX_LIST_PAGE_BYTES,
      });
    } catch (error) {
      if (controller.signal.reason === timeout) {
        throw new KubeApiError(`GET ${this.#path}: no complete response in ${this.#requestTimeoutMs} ms`);
      }
      throw error;
    } finally {
      clearTimeout(timer);
      this.#stopController.signal.removeEventListener('abort', onStop);
    }
  }

  /** List items come without apiVersion and kind; watch events have them. Give both the same shape. */
  #typed(item: KubeObject): T {
    dropBookkeeping(item);
    if (item.apiVersion !== undefined && item.kind !== undefined) return item as T;
    return { apiVersion: apiVersionOf(this.#resource), kind: this.#resource.kind, ...item } as T;
  }

  #scheduleResync(): void {
    clearTimeout(this.#resyncTimer);
    this.#resyncTimer = undefined;
    if (this.#resyncIntervalMs === 0 || this.#stopped) return;
    this.#resyncTimer = setTimeout(
      () => {
        this.#resyncTimer = undefined;
        this.resync();
      },
      stretch(this.#resyncIntervalMs, 0.1, this.#random),
    );
  }

  async #watchOnce(): Promise<WatchEnd> {
    const timeoutSeconds = Math.floor(stretch(this.#watchTimeoutSeconds, 0.2, this.#random));
    const query = {
      ...this.#selectors,
      watch: 1,
      allowWatchBookmarks: true,
      resourceVersion: this.#stats.resourceVersion,
      timeoutSeconds,
    };
    const controller = new AbortController();
    let interrupted: Interrupt | undefined;
    const interrupt = (reason: Interrupt): void => {
      interrupted ??= reason;
      controller.abort();
    };
    this.#interrupt = interrupt;
    if (this.#stopped) interrupt('stopped');
    else if (this.#resyncDue) interrupt('resync');

    const watchdogMs = this.#watchdogMs ?? timeoutSeconds * 1000 + WATCHDOG_GRACE_MS;
    let timer = setTimeout(() => interrupt('no-headers'), this.#requestTimeoutMs);
    let connectedAt: number | undefined;
    let end: WatchEnd | undefined;
    try {
      const res = await this.#api.open('GET', this.#path, { query, signal: controller.signal });
      if (res.statusCode !== 200) throw await responseError(res, `watch ${this.#path}`);
      connectedAt = Date.now();
      this.#stats.watching = true;
      clearTimeout(timer);
      timer = setTimeout(() => interrupt('watchdog'), watchdogMs);
      res.setEncoding('utf8');
      const lines = new LineSplitter(MAX_WATCH_LINE_CHARS);
      stream: for await (const chunk of res as AsyncIterable<string>) {
        timer.refresh();
        for (const line of lines.push(chunk)) {
          end = this.#onWatchLine(line);
          if (end !== undefined || interrupted !== undefined) break stream;
        }
      }
      end ??= { reason: 'closed' };
    } catch (error) {
      const status: ApiStatus = error instanceof KubeApiError ? error.status : {};
      end = isGone(status)
        ? { reason: 'gone', message: errorLine(error) }
        : { reason: 'error', message: errorLine(error) };
    } finally {
      clearTimeout(timer);
      this.#interrupt = undefined;
      this.#stats.watching = false;
      controller.abort();
    }
    if (interrupted === 'no-headers') {
      end = { reason: 'error', message: `watch ${this.#path}: no response in ${this.#requestTimeoutMs} ms` };
    } else if (interrupted === 'watchdog') {
      end = { reason: 'watchdog', silentMs: watchdogMs };
    } else if (interrupted !== undefined) {
      end = { reason: interrupted };
    }

    const connectedMs = connectedAt === undefined ? undefined : Date.now() - connectedAt;
    const healthy = watchWasHealthy({
      connectedMs,
      closedCleanly: end.reason === 'closed',
      requestedTimeoutMs: timeoutSeconds * 1000,
      healthyAfterMs: this.#healthyAfterMs,
    });
    if (healthy) {
      this.#backoff.reset();
      this.#noteHealthy();
    }
    return end;
  }

  /** Applies one watch line; returns how the watch ends when the line ends it. */
  #onWatchLine(line: string): WatchEnd | undefined {
    this.#stats.events++;
    this.#stats.lastEventAt = Date.now();
    const event = parseWatchEvent(line);
    if (event === undefined) {
      this.#stats.malformedEvents++;
      return undefined;
    }
    switch (event.type) {
      case 'BOOKMARK':
        this.#stats.resourceVersion = event.resourceVersion;
        return undefined;
      case 'ERROR': {
        const message = `watch ${this.#path}: ${describeStatus(event.status, 'ERROR event')}`;
        return isGone(event.status) ? { reason: 'gone', message } : { reason: 'error', message };
      }
      default: {
        const object = this.#typed(event.object);
        const rv = object.metadata?.resourceVersion;
        if (typeof rv === 'string' && rv !== '') this.#stats.resourceVersion = rv;
        this.#emit(this.#cache.apply(event.type, object));
        return undefined;
      }
    }
  }

  #emit(changes: readonly ChangeEvent<T>[]): void {
    for (const change of changes) {
      this.#stats.changes++;
      for (const listener of [...this.#listeners]) {
        try {
          const result: unknown = listener(change);
          if (result instanceof Promise)
            result.catch((error: unknown) => this.#listenerFailed(change, error));
        } catch (error) {
          this.#listenerFailed(change, error);
        }
      }
    }
  }

  #listenerFailed(change: ChangeEvent<T>, error: unknown): void {
    this.#stats.listenerErrors++;
    const meta = change.object.metadata;
    const key = meta?.namespace ? `${meta.namespace}/${meta.name ?? ''}` : (meta?.name ?? '');
    this.#log(`informer ${this.name}: listener failed on ${change.type} ${key}: ${errorLine(error)}`);
  }
}

const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

/**
 * Drops what no consumer of the cache reads but can be most of an object's size: managedFields (server-side
 * apply and every status write grow it) and kubectl's last-applied copy of the whole object.
 */
function dropBookkeeping(item: KubeObject): void {
  const metadata = item.metadata as
    { managedFields?: unknown; annotations?: Record<string, string> } | undefined;
  if (!metadata) return;
  delete metadata.managedFields;
  if (metadata.annotations && LAST_APPLIED in metadata.annotations) delete metadata.annotations[LAST_APPLIED];
}
