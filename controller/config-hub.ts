// The controller's side of config distribution (ADR 0005): the current set of stripped objects, fed by the
// informers, and the per-namespace streams to sidecars. Changes are coalesced (debounce), turned into one
// delta per namespace scope, serialized once per scope (once per base version when scopes agree) and the
// same Buffer is handed to every subscriber of that scope. Nothing here does I/O; config-server.ts adapts
// HTTP/2 streams to ConfigSubscriber.
import { randomBytes } from 'node:crypto';
import {
  objectScope,
  resourceKey,
  scopeIncludes,
  stripObject,
  type ObjectScope,
} from '../protocol/config-scope.ts';
import { realClock, type Clock } from '../lib/clock.ts';

/** One sidecar stream, as the hub sees it. */
export interface ConfigSubscriber {
  /** The namespace from the client certificate: the only input to what the subscriber receives. */
  readonly namespace: string;
  /** Queues bytes for the peer; must not throw. */
  write(frame: Buffer): void;
  /** Bytes written but not yet taken by the peer (HTTP/2 flow control, socket). */
  bufferedBytes(): number;
  /** Ends the stream at once (discarding what is queued); the sidecar reconnects and gets a snapshot. */
  drop(reason: string): void;
}

export interface PushInfo {
  version: string;
  /** From the first change of the batch to the last frame handed to a subscriber. */
  latencyMs: number;
  /** Objects whose content changed in the batch. */
  changes: number;
  /** Distinct frames serialized (namespaces with different deltas or base versions). */
  frames: number;
  /** Subscribers written to. */
  subscribers: number;
  /** Bytes handed to subscribers in total (shared Buffers counted per subscriber). */
  bytes: number;
}

/** Hooks for the controller's metrics; all optional, called synchronously. */
export interface ConfigHubMetrics {
  onPush?(push: PushInfo): void;
  onSnapshot?(namespace: string, bytes: number): void;
  /** A subscriber was dropped for not keeping up. */
  onDrop?(namespace: string, queuedBytes: number): void;
  onSubscribers?(count: number): void;
}

export interface ConfigHubOptions {
  /** Quiet time after a change before the batch goes out. Default 50 ms. */
  debounceMs?: number;
  /** A batch goes out at most this long after its first change. Default 250 ms. */
  maxDelayMs?: number;
  /**
   * A subscriber with more than this many bytes still queued from earlier frames (beyond its snapshot)
   * when the next frame is ready is dropped. Default 16 MiB.
   */
  maxQueuedBytes?: number;
  /** Version prefix; default random, so that a restarted controller never continues an old sequence. */
  epoch?: string;
  metrics?: ConfigHubMetrics;
  /** Debounce timers and push latency; default the real clock. */
  clock?: Clock;
}

export interface ConfigHubStats {
  version: string;
  synced: boolean;
  objects: number;
  pendingChanges: number;
  namespaces: number;
  subscribers: number;
  /** Largest and total bytes queued towards subscribers (the backpressure gauges). */
  maxQueuedBytes: number;
  totalQueuedBytes: number;
  dropped: number;
}

interface Entry {
  readonly key: string;
  readonly json: string;
  readonly scope: ObjectScope;
}

interface Scope {
  readonly namespace: string;
  /** Version of the last frame this scope's subscribers got (deltas chain on it). */
  version: string;
  /** Subscriber → bytes of its snapshot, which it may still have queued without being slow. */
  readonly subscribers: Map<ConfigSubscriber, number>;
}

type Action = 'upsert' | 'remove' | 'none';

function action(had: boolean, want: boolean): Action {
  if (want) return 'upsert'; // content changed (unchanged entries never reach here) or newly in scope
  return had ? 'remove' : 'none';
}

function scopeNamespace(entry: Entry | undefined): string | undefined {
  return entry?.scope.type === 'namespace' ? entry.scope.namespace : undefined;
}

function deltaFrame(
  version: string,
  base: string,
  upserts: readonly string[],
  removals: readonly string[],
): Buffer {
  return Buffer.from(
    `{"type":"delta","version":${JSON.stringify(version)},"base":${JSON.stringify(base)},` +
      `"upserts":[${upserts.join(',')}],"removals":${JSON.stringify(removals)}}\n`,
  );
}

export class ConfigHub {
  readonly #debounceMs: number;
  readonly #maxDelayMs: number;
  readonly #maxQueued: number;
  readonly #epoch: string;
  readonly #metrics: ConfigHubMetrics;
  /** What every scope's subscribers have been sent (as of #version). */
  readonly #flushed = new Map<string, Entry>();
  /** Flushed entries that belong to one namespace's scope only (consumer routes), by namespace. */
  readonly #namespaceOnly = new Map<string, Map<string, Entry>>();
  /** Changes since the last flush: the new entry, or undefined for a removal. */
  readonly #pending = new Map<string, Entry | undefined>();
  readonly #scopes = new Map<string, Scope>();
  /** The objects every scope holds, serialized once for all snapshots until the next change. */
  #sharedSnapshotPart: Buffer | undefined;
  #seq = 0;
  #version: string;
  #firstChangeAt: number | undefined;
  #cancelTimer: (() => void) | undefined;
  readonly #clock: Clock;
  #subscriberCount = 0;
  #dropped = 0;
  #synced = false;
  #closed = false;

  constructor(options: ConfigHubOptions = {}) {
    this.#debounceMs = options.debounceMs ?? 50;
    this.#maxDelayMs = Math.max(options.maxDelayMs ?? 250, this.#debounceMs);
    this.#maxQueued = options.maxQueuedBytes ?? 16 * 1024 * 1024;
    this.#epoch = options.epoch ?? randomBytes(4).toString('hex');
    this.#metrics = options.metrics ?? {};
    this.#clock = options.clock ?? realClock;
    this.#version = `${this.#epoch}:0`;
  }

  /** Version of the state last sent out. */
  get version(): string {
    return this.#version;
  }

  /** False until markSynced(): a controller serves no snapshot before its informers have listed. */
  get synced(): boolean {
    return this.#synced;
  }

  /** Called once the informers' initial lists are in; pending changes go out at once. */
  markSynced(): void {
    this.#synced = true;
    this.flush();
  }

  /** An object was added or changed. Objects of other kinds (or without a name) are ignored. */
  upsert(obj: unknown): void {
    const stripped = stripObject(obj);
    if (!stripped || this.#closed) return;
    const key = resourceKey(stripped);
    const json = JSON.stringify(stripped);
    const current = this.#pending.has(key) ? this.#pending.get(key) : this.#flushed.get(key);
    // Status updates, resyncs and fields the model does not read leave the stripped object unchanged.
    if (current?.json === json) return;
    this.#change(key, { key, json, scope: objectScope(stripped) });
  }

  /** An object was deleted (the informer's last state of it, or anything with its kind and name). */
  remove(obj: unknown): void {
    const stripped = stripObject(obj);
    if (stripped) this.removeKey(resourceKey(stripped));
  }

  removeKey(key: string): void {
    if (this.#closed) return;
    const current = this.#pending.has(key) ? this.#pending.get(key) : this.#flushed.get(key);
    if (current) this.#change(key, undefined);
  }

  #change(key: string, entry: Entry | undefined): void {
    this.#pending.set(key, entry);
    const now = this.#clock.now();
    this.#firstChangeAt ??= now;
    if (!this.#synced) return; // the first flush happens in markSynced()
    this.#cancelTimer?.();
    const delay = Math.min(this.#debounceMs, this.#firstChangeAt + this.#maxDelayMs - now);
    this.#cancelTimer = this.#clock.setTimeout(() => this.flush(), Math.max(0, delay));
  }

  /**
   * Sends the pending changes now: one delta per scope that changed. Called by the debounce timer; tests
   * and markSynced() call it directly.
   */
  flush(): void {
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    if (this.#pending.size === 0 || this.#closed) return;
    const startedAt = this.#firstChangeAt ?? this.#clock.now();
    this.#firstChangeAt = undefined;

    // What a scope without namespace-only entries involved does; the namespaces whose consumer routes
    // changed get their own action per key.
    const uniformUpserts: Entry[] = [];
    const uniformRemovals: string[] = [];
    const overrides = new Map<string, Map<string, { action: Action; entry: Entry | undefined }>>();
    let changes = 0;
    for (const [key, next] of this.#pending) {
      const prev = this.#flushed.get(key);
      if (prev?.json === next?.json) continue; // changed and changed back within the batch
      changes++;
      const uniform = action(prev?.scope.type === 'all', next?.scope.type === 'all');
      if (uniform === 'upsert') uniformUpserts.push(next!);
      else if (uniform === 'remove') uniformRemovals.push(key);
      for (const ns of new Set([scopeNamespace(prev), scopeNamespace(next)])) {
        if (ns === undefined) continue;
        const own = action(
          prev !== undefined && scopeIncludes(prev.scope, ns),
          next !== undefined && scopeIncludes(next.scope, ns),
        );
        if (own === uniform) continue;
        let map = overrides.get(ns);
        if (!map) overrides.set(ns, (map = new Map<string, { action: Action; entry: Entry | undefined }>()));
        map.set(key, { action: own, entry: next });
      }
      this.#commit(key, prev, next);
    }
    this.#pending.clear();
    if (changes === 0) return;
    this.#seq++;
    const version = `${this.#epoch}:${this.#seq}`;
    this.#version = version;
    this.#sharedSnapshotPart = undefined;

    const uniformJson = uniformUpserts.map((e) => e.json);
    const byBase = new Map<string, Buffer>();
    let frames = 0;
    let written = 0;
    let bytes = 0;
    for (const scope of this.#scopes.values()) {
      const own = overrides.get(scope.namespace);
      let frame: Buffer | undefined;
      if (!own) {
        if (uniformJson.length === 0 && uniformRemovals.length === 0) continue;
        frame = byBase.get(scope.version);
        if (!frame) {
          frame = deltaFrame(version, scope.version, uniformJson, uniformRemovals);
          byBase.set(scope.version, frame);
          frames++;
        }
      } else {
        const upserts = uniformUpserts.filter((e) => !own.has(e.key)).map((e) => e.json);
        const removals = uniformRemovals.filter((k) => !own.has(k));
        for (const [key, o] of own) {
          if (o.action === 'upsert') upserts.push(o.entry!.json);
          else if (o.action === 'remove') removals.push(key);
        }
        if (upserts.length === 0 && removals.length === 0) continue;
        frame = deltaFrame(version, scope.version, upserts, removals);
        frames++;
      }
      scope.version = version;
      for (const [sub, allowance] of scope.subscribers) {
        if (this.#send(scope, sub, allowance, frame)) {
          written++;
          bytes += frame.length;
        }
      }
    }
    this.#metrics.onPush?.({
      version,
      latencyMs: this.#clock.now() - startedAt,
      changes,
      frames,
      subscribers: written,
      bytes,
    });
  }

  #commit(key: string, prev: Entry | undefined, next: Entry | undefined): void {
    const prevNs = scopeNamespace(prev);
    if (prevNs !== undefined) {
      const map = this.#namespaceOnly.get(prevNs);
      map?.delete(key);
      if (map?.size === 0) this.#namespaceOnly.delete(prevNs);
    }
    if (next) {
      this.#flushed.set(key, next);
      const ns = scopeNamespace(next);
      if (ns !== undefined) {
        let map = this.#namespaceOnly.get(ns);
        if (!map) this.#namespaceOnly.set(ns, (map = new Map<string, Entry>()));
        map.set(key, next);
      }
    } else {
      this.#flushed.delete(key);
    }
  }

  /** Writes a frame unless the subscriber is too far behind, in which case it is dropped. */
  #send(scope: Scope, sub: ConfigSubscriber, allowance: number, frame: Buffer): boolean {
    const queued = sub.bufferedBytes();
    if (queued > allowance + this.#maxQueued) {
      this.#remove(scope, sub);
      this.#dropped++;
      this.#metrics.onDrop?.(scope.namespace, queued);
      sub.drop(`more than ${queued} bytes of config queued`);
      return false;
    }
    sub.write(frame);
    return true;
  }

  /**
   * Adds a subscriber and writes its snapshot. Returns the function that removes it (call it when the
   * stream closes). Throws if the hub has not synced or is closed: the server answers 503 before that.
   */
  subscribe(sub: ConfigSubscriber): () => void {
    if (this.#closed) throw new Error('config hub is closed');
    if (!this.#synced) throw new Error('config hub has not synced yet');
    let scope = this.#scopes.get(sub.namespace);
    if (!scope) {
      scope = { namespace: sub.namespace, version: this.#version, subscribers: new Map() };
      this.#scopes.set(sub.namespace, scope);
    }
    const snapshot = this.#snapshot(scope);
    const size = snapshot.reduce((n, b) => n + b.length, 0);
    scope.subscribers.set(sub, size);
    this.#subscriberCount++;
    this.#metrics.onSubscribers?.(this.#subscriberCount);
    for (const part of snapshot) sub.write(part);
    this.#metrics.onSnapshot?.(sub.namespace, size);
    const owner = scope;
    return () => this.#remove(owner, sub);
  }

  #remove(scope: Scope, sub: ConfigSubscriber): void {
    if (!scope.subscribers.delete(sub)) return;
    this.#subscriberCount--;
    this.#metrics.onSubscribers?.(this.#subscriberCount);
    // A scope holds no state besides its version, so an empty one is forgotten; a new subscriber gets a
    // snapshot of the current state anyway.
    if (scope.subscribers.size === 0 && this.#scopes.get(scope.namespace) === scope) {
      this.#scopes.delete(scope.namespace);
    }
  }

  /**
   * The snapshot of a scope as buffers written in order: a header, the objects every scope holds (one
   * Buffer shared by all subscribers until the next change), the scope's own objects and the end.
   */
  #snapshot(scope: Scope): Buffer[] {
    if (!this.#sharedSnapshotPart) {
      const parts: string[] = [];
      for (const e of this.#flushed.values()) if (e.scope.type === 'all') parts.push(e.json);
      this.#sharedSnapshotPart = Buffer.from(parts.join(','));
    }
    const shared = this.#sharedSnapshotPart;
    const own = [...(this.#namespaceOnly.get(scope.namespace)?.values() ?? [])].map((e) => e.json);
    const head = `{"type":"snapshot","version":${JSON.stringify(scope.version)},"objects":[`;
    const tail = `${own.length > 0 && shared.length > 0 ? ',' : ''}${own.join(',')}]}\n`;
    return shared.length > 0 ? [Buffer.from(head), shared, Buffer.from(tail)] : [Buffer.from(head + tail)];
  }

  stats(): ConfigHubStats {
    let max = 0;
    let total = 0;
    for (const scope of this.#scopes.values()) {
      for (const sub of scope.subscribers.keys()) {
        const queued = sub.bufferedBytes();
        max = Math.max(max, queued);
        total += queued;
      }
    }
    return {
      version: this.#version,
      synced: this.#synced,
      objects: this.#flushed.size,
      pendingChanges: this.#pending.size,
      namespaces: this.#scopes.size,
      subscribers: this.#subscriberCount,
      maxQueuedBytes: max,
      totalQueuedBytes: total,
      dropped: this.#dropped,
    };
  }

  /** Stops pushing and forgets subscribers (their streams belong to the server, which ends them). */
  close(): void {
    this.#closed = true;
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    this.#scopes.clear();
    this.#subscriberCount = 0;
  }
}
