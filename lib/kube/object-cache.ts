// The informer's local copy of one resource type, and the change events that keep consumers in step with
// it. Pure: no I/O, so the relist reconcile is unit-tested directly.

/**
 * The part of a Kubernetes object the cache relies on. Objects are kept exactly as the API server sent
 * them (JSON: timestamps are strings), whether they came from a list or a watch event.
 */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
  };
}

/** `delete` carries the last state: the watch event's object, or the cached one when a relist found it gone. */
export type ChangeEvent<T> =
  | { readonly type: 'add'; readonly object: T }
  | { readonly type: 'update'; readonly old: T; readonly object: T }
  | { readonly type: 'delete'; readonly object: T };

/** "namespace/name", or "/name" for cluster-scoped objects; undefined for objects without a name. */
export function objectKey(obj: KubeObject): string | undefined {
  const name = obj.metadata?.name;
  if (typeof name !== 'string' || name === '') return undefined;
  const namespace = obj.metadata?.namespace;
  return `${typeof namespace === 'string' ? namespace : ''}/${name}`;
}

/** An object the cache can hold: a JSON object with a non-empty metadata.name. */
export function isKubeObject(value: unknown): value is KubeObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const metadata = (value as { metadata?: unknown }).metadata;
  if (typeof metadata !== 'object' || metadata === null) return false;
  const name = (metadata as { name?: unknown }).name;
  return typeof name === 'string' && name !== '';
}

function sameVersion(a: KubeObject, b: KubeObject): boolean {
  const rv = a.metadata?.resourceVersion;
  return rv !== undefined && rv === b.metadata?.resourceVersion;
}

/** A different uid under the same name: the object was deleted and created again. */
function replacedObject(a: KubeObject, b: KubeObject): boolean {
  const ua = a.metadata?.uid;
  const ub = b.metadata?.uid;
  return ua !== undefined && ub !== undefined && ua !== ub;
}

export class ObjectCache<T extends KubeObject> {
  readonly #objects = new Map<string, T>();

  get size(): number {
    return this.#objects.size;
  }

  /** Cluster-scoped objects: namespace undefined or ''. */
  get(namespace: string | undefined, name: string): T | undefined {
    return this.#objects.get(`${namespace ?? ''}/${name}`);
  }

  list(): T[] {
    return [...this.#objects.values()];
  }

  /**
   * Applies one watch event and returns what changed. An ADDED/MODIFIED with the resource version already
   * cached changes nothing (the API server may replay events after a reconnect); a new uid under a known
   * name is a delete then an add.
   */
  apply(type: 'ADDED' | 'MODIFIED' | 'DELETED', obj: T): ChangeEvent<T>[] {
    const key = objectKey(obj);
    if (key === undefined) return [];
    const cached = this.#objects.get(key);
    if (type === 'DELETED') {
      if (!cached) return [];
      this.#objects.delete(key);
      return [{ type: 'delete', object: obj }];
    }
    return this.#put(key, cached, obj);
  }

  /**
   * Makes the cache hold exactly `items` (a full list) and returns the changes that takes: first deletes
   * for cached objects the list no longer has (in cache order), then adds and updates in list order.
   * Items without a name are ignored.
   */
  replace(items: readonly T[]): ChangeEvent<T>[] {
    const fresh = new Map<string, T>();
    for (const item of items) {
      const key = objectKey(item);
      if (key !== undefined) fresh.set(key, item);
    }
    const changes: ChangeEvent<T>[] = [];
    for (const [key, cached] of this.#objects) {
      if (!fresh.has(key)) {
        this.#objects.delete(key);
        changes.push({ type: 'delete', object: cached });
      }
    }
    for (const [key, item] of fresh) changes.push(...this.#put(key, this.#objects.get(key), item));
    return changes;
  }

  #put(key: string, cached: T | undefined, obj: T): ChangeEvent<T>[] {
    if (!cached) {
      this.#objects.set(key, obj);
      return [{ type: 'add', object: obj }];
    }
    if (sameVersion(cached, obj)) return [];
    if (replacedObject(cached, obj)) {
      // Delete and re-add so the new object lands at the end, as a fresh add would.
      this.#objects.delete(key);
      this.#objects.set(key, obj);
      return [
        { type: 'delete', object: cached },
        { type: 'add', object: obj },
      ];
    }
    this.#objects.set(key, obj);
    return [{ type: 'update', old: cached, object: obj }];
  }
}
