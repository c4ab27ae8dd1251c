// Publishes the mesh trust bundle as the ConfigMap sluice-ca-root (key ca.crt) in every namespace, so a pod
// can mount it and verify the controller before it asks for its first certificate. Only the leader writes:
// start() when leading, stop() when not. Each namespace is read once per pass (GET by name, no ConfigMap
// watch: a cluster-wide ConfigMap cache would cost far more than one GET per namespace and resync) and
// written only when the ConfigMap is missing or its ca.crt differs.
import { MANAGED_BY_LABEL, PART_OF_LABEL } from '../protocol/labels.ts';
import { backoffDelay } from '../lib/backoff.ts';
import { realClock, type Clock } from '../lib/clock.ts';

export const TRUST_BUNDLE_CONFIGMAP = 'sluice-ca-root';
export const TRUST_BUNDLE_KEY = 'ca.crt';
/** Names the control-plane namespace of the controller that owns the ConfigMap. */
export const CONTROL_PLANE_ANNOTATION = 'sluice.dev/control-plane';
const CONCURRENCY = 4;
const MAX_ATTEMPTS = 5;

/** A ConfigMap as read from and sent to the API server (structurally a client-node V1ConfigMap). */
export interface BundleConfigMap {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  data?: Record<string, string>;
}

export interface ConfigMapStore {
  get(namespace: string, name: string): Promise<BundleConfigMap | undefined>;
  /** false when it exists already (409). */
  create(namespace: string, configMap: BundleConfigMap): Promise<boolean>;
  /** false on a conflict (the resourceVersion is stale) or when it is gone. */
  replace(namespace: string, name: string, configMap: BundleConfigMap): Promise<boolean>;
  /** One line for a failed call. */
  describe(error: unknown): string;
}

/**
 * What to send to make `existing` hold the bundle of the control plane in `controlPlane`: undefined when
 * it already does, 'foreign' when another control plane owns it (two meshes in one cluster must not
 * overwrite each other's bundle in turn).
 */
export function trustBundleWrite(
  namespace: string,
  bundlePem: string,
  existing: BundleConfigMap | undefined,
  controlPlane: string,
): { verb: 'create' | 'replace'; body: BundleConfigMap } | 'foreign' | undefined {
  const owner = existing?.metadata?.annotations?.[CONTROL_PLANE_ANNOTATION];
  if (owner !== undefined && owner !== controlPlane) return 'foreign';
  if (owner !== undefined && existing?.data?.[TRUST_BUNDLE_KEY] === bundlePem) return undefined;
  const labels = { [PART_OF_LABEL]: 'sluice', [MANAGED_BY_LABEL]: 'sluice-controller' };
  const annotations = { [CONTROL_PLANE_ANNOTATION]: controlPlane };
  if (!existing) {
    return {
      verb: 'create',
      body: {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: TRUST_BUNDLE_CONFIGMAP, namespace, labels, annotations },
        data: { [TRUST_BUNDLE_KEY]: bundlePem },
      },
    };
  }
  const metadata = existing.metadata ?? {};
  return {
    verb: 'replace',
    body: {
      ...existing,
      metadata: {
        ...metadata,
        labels: { ...metadata.labels, ...labels },
        annotations: { ...metadata.annotations, ...annotations },
      },
      data: { ...existing.data, [TRUST_BUNDLE_KEY]: bundlePem },
    },
  };
}

export interface TrustBundlePublisherOptions {
  readonly store: ConfigMapStore;
  /** The controller's control-plane namespace, recorded on the ConfigMaps it owns. */
  readonly controlPlane: string;
  /** The namespaces that exist now (the namespace informer's cache). */
  readonly namespaces: () => string[];
  /** Every namespace is checked again this often while active (5 min): repairs edits and deletions. */
  readonly resyncMs?: number;
  readonly log: (message: string, fields?: Record<string, unknown>) => void;
  /** Resync and retry timers; default the real clock. */
  readonly clock?: Clock;
  /** Retry jitter, uniform in [0, 1); default Math.random. */
  readonly random?: () => number;
}

export interface TrustBundleStats {
  created: number;
  updated: number;
  unchanged: number;
  foreign: number;
  failed: number;
}

export class TrustBundlePublisher {
  readonly #o: TrustBundlePublisherOptions;
  readonly #pending = new Map<string, number>(); // namespace -> failed attempts so far
  readonly stats: TrustBundleStats = { created: 0, updated: 0, unchanged: 0, foreign: 0, failed: 0 };
  #bundle: string | undefined;
  #signal: AbortSignal | undefined;
  #workers = 0;
  #cancelResync: (() => void) | undefined;
  readonly #clock: Clock;

  constructor(options: TrustBundlePublisherOptions) {
    this.#o = options;
    this.#clock = options.clock ?? realClock;
  }

  /** Nothing queued or being written (retries may still be scheduled). */
  get idle(): boolean {
    return this.#workers === 0 && this.#pending.size === 0;
  }

  /** Starts writing (on becoming leader); every namespace is checked. */
  start(signal: AbortSignal): void {
    this.#signal = signal;
    signal.addEventListener('abort', () => this.stop(), { once: true });
    this.#scheduleResync();
    this.#enqueueAll();
  }

  stop(): void {
    this.#signal = undefined;
    this.#cancelResync?.();
    this.#cancelResync = undefined;
    this.#pending.clear();
  }

  #scheduleResync(): void {
    this.#cancelResync?.();
    this.#cancelResync = this.#clock.setTimeout(() => {
      this.#scheduleResync();
      this.#enqueueAll();
    }, this.#o.resyncMs ?? 300_000);
  }

  /** The bundle to publish; a changed one is written to every namespace. */
  setBundle(bundlePem: string): void {
    if (bundlePem === this.#bundle) return;
    this.#bundle = bundlePem;
    this.#enqueueAll();
  }

  namespaceAdded(namespace: string): void {
    this.#enqueue(namespace, 0);
  }

  #enqueueAll(): void {
    for (const namespace of this.#o.namespaces()) this.#enqueue(namespace, 0);
  }

  #enqueue(namespace: string, attempts: number): void {
    if (!this.#signal || this.#bundle === undefined) return;
    if (!this.#pending.has(namespace)) this.#pending.set(namespace, attempts);
    while (this.#workers < CONCURRENCY && this.#pending.size > 0) {
      this.#workers++;
      void this.#work().finally(() => this.#workers--);
    }
  }

  async #work(): Promise<void> {
    for (;;) {
      const signal = this.#signal;
      const bundle = this.#bundle;
      const next = this.#pending.entries().next();
      if (!signal || bundle === undefined || next.done) return;
      const [namespace, attempts] = next.value;
      this.#pending.delete(namespace);
      try {
        await this.#publish(namespace, bundle);
      } catch (error) {
        if (signal.aborted) return;
        // A namespace deleted meanwhile (or being deleted) refuses the create: not worth retrying.
        if (!this.#o.namespaces().includes(namespace)) continue;
        this.stats.failed++;
        const reason = this.#o.store.describe(error);
        if (attempts + 1 >= MAX_ATTEMPTS) {
          this.#o.log('trust bundle not published; next try at the resync', { namespace, error: reason });
          continue;
        }
        const delay = backoffDelay(
          attempts,
          { initialMs: 1000, maxMs: Infinity, jitter: 0.5 },
          this.#o.random,
        );
        this.#clock.setTimeout(() => this.#enqueue(namespace, attempts + 1), delay);
      }
    }
  }

  async #publish(namespace: string, bundle: string): Promise<void> {
    const { store } = this.#o;
    const existing = await store.get(namespace, TRUST_BUNDLE_CONFIGMAP);
    const write = trustBundleWrite(namespace, bundle, existing, this.#o.controlPlane);
    if (!write) {
      this.stats.unchanged++;
      return;
    }
    if (write === 'foreign') {
      this.stats.foreign++;
      this.#o.log('trust bundle ConfigMap belongs to another control plane; left alone', {
        namespace,
        owner: existing?.metadata?.annotations?.[CONTROL_PLANE_ANNOTATION],
      });
      return;
    }
    const done =
      write.verb === 'create'
        ? await store.create(namespace, write.body)
        : await store.replace(namespace, TRUST_BUNDLE_CONFIGMAP, write.body);
    if (!done) {
      // Someone else wrote it between the read and the write: look again.
      this.#enqueue(namespace, 0);
      return;
    }
    if (write.verb === 'create') this.stats.created++;
    else this.stats.updated++;
    this.#o.log(write.verb === 'create' ? 'trust bundle published' : 'trust bundle updated', {
      namespace,
      configMap: TRUST_BUNDLE_CONFIGMAP,
    });
  }
}
