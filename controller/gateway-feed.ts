// Config for gateway proxies, on the same stream and wire format as the sidecars' (ADR 0005): a proxy whose
// certificate names a Gateway's service account (gateway-provisioning.ts) gets the objects that Gateway's
// view is built from, and the TLS Secrets its listeners may use. Secrets go to that Gateway's proxies only,
// never to a sidecar or another Gateway. Changes are sent (debounced) as a delta against what its proxies
// have; a rotated Secret is just a changed object.
//
// The work per change is proportional to the change: the objects every Gateway gets alike (Namespaces,
// Services, EndpointSlices, Pods, the mesh config, GatewayClasses, ReferenceGrants) are kept in one shared
// map updated object by object, and a Gateway's own objects (itself, its routes, its Secrets and CA
// ConfigMaps) are recomputed only for the Gateways a change can reach. A change without a description
// (`changed()`) recomputes everything, as before.
import { randomBytes } from 'node:crypto';
import { isObject, type K8sObject } from '../mesh-model/k8s-objects.ts';
import { buildGatewayView } from '../mesh-model/gateway-view.ts';
import { normalizeTimestamp, resourceKey, stripObject } from '../protocol/config-scope.ts';
import type { ConfigSubscriber } from './config-hub.ts';
import type { GatewayRef } from './gateway-provisioning.ts';

/** The controller's informer caches, unstripped. */
export interface GatewayFeedInputs {
  readonly namespaces: () => K8sObject[];
  /** Services, EndpointSlices, Pods (stripped as for sidecars). */
  readonly mesh: () => K8sObject[];
  readonly gatewayClasses: () => K8sObject[];
  readonly gateways: () => K8sObject[];
  readonly routes: () => K8sObject[];
  readonly referenceGrants: () => K8sObject[];
  /** kubernetes.io/tls Secrets (the only ones the controller watches). */
  readonly secrets: () => K8sObject[];
  /** ConfigMaps: the CA bundles of client-certificate validation, and the mesh config. */
  readonly configMaps: () => K8sObject[];
}

const GATEWAY_GROUP = 'gateway.networking.k8s.io';

function meta(obj: K8sObject): Record<string, unknown> {
  return isObject(obj.metadata) ? obj.metadata : {};
}

function keep(obj: K8sObject, withSpec: boolean, extra: Record<string, unknown> = {}): K8sObject {
  const m = meta(obj);
  const metadata: Record<string, unknown> = { name: m.name };
  if (typeof m.namespace === 'string') metadata.namespace = m.namespace;
  for (const f of ['labels', 'annotations', 'generation']) if (m[f] !== undefined) metadata[f] = m[f];
  const created = normalizeTimestamp(m.creationTimestamp);
  if (created !== undefined) metadata.creationTimestamp = created;
  return {
    apiVersion: obj.apiVersion,
    kind: obj.kind,
    metadata,
    ...(withSpec && obj.spec !== undefined ? { spec: obj.spec } : {}),
    ...extra,
  };
}

function namespaceOf(obj: K8sObject): string {
  return obj.metadata?.namespace ?? 'default';
}

/** Whether a route names the Gateway among its parents (any section or port). */
function attachesTo(route: K8sObject, gateway: GatewayRef): boolean {
  const spec = isObject(route.spec) ? route.spec : {};
  const parents = Array.isArray(spec.parentRefs) ? spec.parentRefs : [];
  return parents.some(
    (ref) =>
      isObject(ref) &&
      (ref.kind ?? 'Gateway') === 'Gateway' &&
      (ref.group ?? GATEWAY_GROUP) === GATEWAY_GROUP &&
      ref.name === gateway.name &&
      (typeof ref.namespace === 'string' && ref.namespace !== '' ? ref.namespace : namespaceOf(route)) ===
        gateway.namespace,
  );
}

/** ConfigMaps named by the Gateway's spec.tls.frontend caCertificateRefs (before any ReferenceGrant check). */
function referencedConfigMaps(gateway: K8sObject): Set<string> {
  const out = new Set<string>();
  const spec = isObject(gateway.spec) ? gateway.spec : {};
  const tls = isObject(spec.tls) ? spec.tls : {};
  const frontend = isObject(tls.frontend) ? tls.frontend : {};
  const configs = [
    frontend.default,
    ...(Array.isArray(frontend.perPort)
      ? frontend.perPort.map((p) => (isObject(p) ? p.tls : undefined))
      : []),
  ];
  for (const config of configs) {
    const validation = isObject(config) && isObject(config.validation) ? config.validation : {};
    for (const ref of Array.isArray(validation.caCertificateRefs) ? validation.caCertificateRefs : []) {
      if (!isObject(ref) || typeof ref.name !== 'string') continue;
      const ns =
        typeof ref.namespace === 'string' && ref.namespace !== '' ? ref.namespace : namespaceOf(gateway);
      out.add(`${ns}/${ref.name}`);
    }
  }
  return out;
}

function stripConfigMap(cm: K8sObject): K8sObject {
  const raw = cm as unknown as Record<string, unknown>;
  const data =
    isObject(raw.data) && typeof raw.data['ca.crt'] === 'string' ? { 'ca.crt': raw.data['ca.crt'] } : {};
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: cm.metadata?.name, namespace: namespaceOf(cm) },
    data,
  } as K8sObject;
}

/** Secrets named by the Gateway's listeners' certificateRefs (before any ReferenceGrant check). */
function referencedSecrets(gateway: K8sObject): Set<string> {
  const out = new Set<string>();
  const spec = isObject(gateway.spec) ? gateway.spec : {};
  for (const l of Array.isArray(spec.listeners) ? spec.listeners : []) {
    const tls = isObject(l) && isObject(l.tls) ? l.tls : {};
    for (const ref of Array.isArray(tls.certificateRefs) ? tls.certificateRefs : []) {
      if (!isObject(ref) || (ref.kind ?? 'Secret') !== 'Secret' || (ref.group ?? '') !== '') continue;
      const ns =
        typeof ref.namespace === 'string' && ref.namespace !== '' ? ref.namespace : namespaceOf(gateway);
      if (typeof ref.name === 'string') out.add(`${ns}/${ref.name}`);
    }
  }
  return out;
}

function stripSecret(secret: K8sObject): K8sObject {
  const raw = secret as unknown as Record<string, unknown>;
  const data = isObject(raw.data) ? raw.data : {};
  const picked: Record<string, unknown> = {};
  for (const k of ['tls.crt', 'tls.key']) if (typeof data[k] === 'string') picked[k] = data[k];
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: secret.metadata?.name, namespace: namespaceOf(secret) },
    type: raw.type,
    data: picked,
  } as K8sObject;
}

/** Objects every Gateway gets alike, in the order gatewayObjects lists them. */
const SHARED_INPUTS = ['namespaces', 'mesh', 'configMaps', 'gatewayClasses', 'referenceGrants'] as const;

/** How an object of a shared input is sent (undefined: not sent, e.g. a ConfigMap other than the mesh config). */
function sharedForm(input: keyof GatewayFeedInputs, obj: K8sObject): K8sObject | undefined {
  switch (input) {
    case 'namespaces':
      return keep(obj, false);
    case 'mesh':
    case 'configMaps':
      // The mesh-wide settings (tracing), as every sidecar gets them; stripObject passes no other ConfigMap.
      return stripObject(obj);
    case 'gatewayClasses':
    case 'referenceGrants':
      return keep(obj, true);
    default:
      return undefined;
  }
}

function sharedObjects(inputs: GatewayFeedInputs): K8sObject[] {
  return SHARED_INPUTS.flatMap((input) => inputs[input]().flatMap((o) => sharedForm(input, o) ?? []));
}

function findGateway(inputs: GatewayFeedInputs, ref: GatewayRef): K8sObject | undefined {
  return inputs.gateways().find((g) => g.metadata?.name === ref.name && namespaceOf(g) === ref.namespace);
}

/**
 * What only `gateway`'s proxies get: the Gateway, its routes, and the certificate Secrets and CA ConfigMaps
 * its listeners may use (ReferenceGrants checked by the model: one it does not allow is not sent). Listener
 * certificates do not depend on Services or workloads, so the model is not given them here.
 */
function ownObjects(
  inputs: GatewayFeedInputs,
  gateway: K8sObject,
  ref: GatewayRef,
  trustDomain: string,
): K8sObject[] {
  const own = [
    keep(gateway, true),
    ...inputs
      .routes()
      .filter((r) => attachesTo(r, ref))
      .map((r) => keep(r, true)),
  ];
  const wanted = referencedSecrets(gateway);
  const wantedCas = referencedConfigMaps(gateway);
  const candidates = [
    ...(wanted.size === 0
      ? []
      : inputs
          .secrets()
          .filter((s) => wanted.has(`${namespaceOf(s)}/${s.metadata?.name ?? ''}`))
          .map(stripSecret)),
    ...(wantedCas.size === 0
      ? []
      : inputs
          .configMaps()
          .filter((c) => wantedCas.has(`${namespaceOf(c)}/${c.metadata?.name ?? ''}`))
          .map(stripConfigMap)),
  ];
  if (candidates.length === 0) return own;
  let allowed: Set<string>;
  try {
    const viewInputs = [
      ...inputs.namespaces().map((n) => keep(n, false)),
      ...inputs.gatewayClasses().map((c) => keep(c, true)),
      ...inputs.referenceGrants().map((g) => keep(g, true)),
      ...own,
      ...candidates,
    ];
    const view = buildGatewayView(viewInputs, ref.namespace, ref.name, trustDomain);
    allowed = new Set(
      [...(view?.ports.values() ?? [])].flatMap((p) =>
        p.listeners.flatMap((l) =>
          [...l.certificates.map((c) => `Secret/${c.namespace}/${c.name}`)].concat(
            (l.clientValidation?.caCertificates ?? []).map((c) => `ConfigMap/${c.namespace}/${c.name}`),
          ),
        ),
      ),
    );
  } catch {
    allowed = new Set(); // a model failure never leaks a Secret
  }
  return [
    ...own,
    ...candidates.filter((s) => allowed.has(`${s.kind ?? ''}/${namespaceOf(s)}/${s.metadata?.name ?? ''}`)),
  ];
}

/**
 * The objects gateway `ref`'s proxies get: the shared objects, then its own (which win on a key both hold).
 * Nothing when the Gateway does not exist.
 */
export function gatewayObjects(inputs: GatewayFeedInputs, ref: GatewayRef, trustDomain: string): K8sObject[] {
  const gateway = findGateway(inputs, ref);
  if (!gateway) return [];
  return [...sharedObjects(inputs), ...ownObjects(inputs, gateway, ref, trustDomain)];
}

/** One informer change, named by the input it belongs to. */
export interface GatewayFeedChange {
  readonly input: keyof GatewayFeedInputs;
  readonly type: 'add' | 'update' | 'delete';
  readonly object: K8sObject;
  /** The previous state, on an update. */
  readonly old?: K8sObject;
}

interface Feed {
  readonly ref: GatewayRef;
  readonly subscribers: Set<ConfigSubscriber>;
  /** What the subscribers have: object key → JSON. */
  sent: Map<string, string>;
  /** The Gateway as last read; undefined while it does not exist (its proxies then get nothing). */
  gateway: K8sObject | undefined;
  /** Its own objects as last computed: object key → JSON. */
  own: Map<string, string>;
  version: string;
}

export interface GatewayFeedOptions {
  readonly inputs: GatewayFeedInputs;
  readonly trustDomain: string;
  /** Quiet time after a change before the Gateways' sets are updated (100 ms); at most 10 x that in a burst. */
  readonly debounceMs?: number;
  readonly epoch?: string;
  readonly log?: (message: string, fields?: Record<string, unknown>) => void;
  /** Milliseconds, for the longest wait of a burst (performance.now). */
  readonly now?: () => number;
}

function toJsonMap(objects: readonly K8sObject[]): Map<string, string> {
  return new Map(objects.map((o) => [resourceKey(o), JSON.stringify(o)]));
}

export class GatewayFeed {
  readonly #o: GatewayFeedOptions;
  readonly #feeds = new Map<string, Feed>();
  readonly #epoch: string;
  #seq = 0;
  #timer: NodeJS.Timeout | undefined;
  #burstStart = 0;
  #closed = false;
  /** The shared objects (key → JSON) while anyone is subscribed. */
  #shared: Map<string, string> | undefined;
  /** Shared keys changed since the last flush. */
  #sharedChanged = new Set<string>();
  /** Feeds whose own objects a change since the last flush may have reached. */
  #dirty = new Set<Feed>();
  /** A change without a description came: recompute everything. */
  #everything = false;

  constructor(options: GatewayFeedOptions) {
    this.#o = options;
    this.#epoch = options.epoch ?? `g${randomBytes(4).toString('hex')}`;
  }

  get subscribers(): number {
    let n = 0;
    for (const f of this.#feeds.values()) n += f.subscribers.size;
    return n;
  }

  /** Adds a gateway proxy's stream and writes its snapshot; returns the function that removes it. */
  subscribe(sub: ConfigSubscriber, ref: GatewayRef): () => void {
    if (this.#closed) throw new Error('gateway feed is closed');
    const key = `${ref.namespace}/${ref.name}`;
    let feed = this.#feeds.get(key);
    if (!feed) {
      this.#shared ??= toJsonMap(sharedObjects(this.#o.inputs));
      feed = {
        ref,
        subscribers: new Set(),
        sent: new Map(),
        gateway: undefined,
        own: new Map(),
        version: '',
      };
      this.#recomputeOwn(feed);
      feed.sent = this.#whole(feed);
      feed.version = this.#nextVersion();
      this.#feeds.set(key, feed);
    }
    feed.subscribers.add(sub);
    sub.write(
      Buffer.from(
        `{"type":"snapshot","version":${JSON.stringify(feed.version)},"objects":[${[...feed.sent.values()].join(',')}]}\n`,
      ),
    );
    const owner = feed;
    return () => {
      owner.subscribers.delete(sub);
      if (owner.subscribers.size === 0 && this.#feeds.get(key) === owner) {
        this.#feeds.delete(key);
        this.#dirty.delete(owner);
        if (this.#feeds.size === 0) this.#forget();
      }
    };
  }

  /**
   * Something a gateway view may read changed: update the Gateways it can reach after the debounce. Without
   * `change`, every Gateway is recomputed from the inputs.
   */
  changed(change?: GatewayFeedChange): void {
    if (this.#closed || this.#feeds.size === 0) return;
    if (change === undefined) this.#everything = true;
    else if (!this.#everything) this.#note(change);
    const debounce = this.#o.debounceMs ?? 100;
    const now = this.#o.now ? this.#o.now() : performance.now();
    if (this.#timer === undefined) this.#burstStart = now;
    const wait = Math.min(debounce, this.#burstStart + 10 * debounce - now);
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.flushChanges(), Math.max(0, wait));
  }

  /** Recomputes every subscribed Gateway's set from the inputs now and sends the differences. */
  flush(): void {
    this.#everything = true;
    this.flushChanges();
  }

  /** What the debounce runs: the Gateways the changes noted since the last flush reach get their differences. */
  flushChanges(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const everything = this.#everything || this.#shared === undefined;
    if (everything) this.#shared = toJsonMap(sharedObjects(this.#o.inputs));
    const sharedChanged = this.#sharedChanged;
    const dirty = this.#dirty;
    this.#sharedChanged = new Set();
    this.#dirty = new Set();
    this.#everything = false;
    for (const feed of this.#feeds.values()) {
      const existed = feed.gateway !== undefined;
      let keys: Set<string> | undefined = sharedChanged; // undefined: compare everything
      if (everything || dirty.has(feed)) {
        const before = feed.own;
        this.#recomputeOwn(feed);
        keys =
          everything || existed !== (feed.gateway !== undefined)
            ? undefined
            : new Set([...sharedChanged, ...before.keys(), ...feed.own.keys()]);
      }
      if (keys?.size === 0) continue;
      this.#send(feed, keys);
    }
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#feeds.clear();
    this.#forget();
  }

  #forget(): void {
    this.#shared = undefined;
    this.#sharedChanged = new Set();
    this.#dirty = new Set();
    this.#everything = false;
  }

  /** Applies a shared object at once (so a new subscriber's snapshot has it) and marks the Gateways it reaches. */
  #note({ input, type, object, old }: GatewayFeedChange): void {
    const before = sharedForm(input, old ?? object);
    const after = type === 'delete' ? undefined : sharedForm(input, object);
    const beforeKey = before && resourceKey(before);
    const afterKey = after && resourceKey(after);
    if (this.#shared && beforeKey !== undefined && beforeKey !== afterKey) {
      this.#shared.delete(beforeKey);
      this.#sharedChanged.add(beforeKey);
    }
    if (this.#shared && after && afterKey !== undefined) {
      this.#shared.set(afterKey, JSON.stringify(after));
      this.#sharedChanged.add(afterKey);
    }
    const ns = namespaceOf(object);
    const name = object.metadata?.name ?? '';
    for (const feed of this.#feeds.values()) {
      if (this.#dirty.has(feed) || !this.#reaches(feed, input, object, old, ns, name)) continue;
      this.#dirty.add(feed);
    }
  }

  /** Whether a change of `object` (an `input`) can change `feed`'s own objects. */
  #reaches(
    feed: Feed,
    input: keyof GatewayFeedInputs,
    object: K8sObject,
    old: K8sObject | undefined,
    ns: string,
    name: string,
  ): boolean {
    switch (input) {
      case 'mesh':
        return false;
      case 'gateways':
        return feed.ref.namespace === ns && feed.ref.name === name;
      case 'routes':
        return (
          attachesTo(object, feed.ref) ||
          (old !== undefined && attachesTo(old, feed.ref)) ||
          feed.own.has(`${object.kind ?? ''}/${ns}/${name}`)
        );
      case 'secrets':
        return (
          feed.own.has(`Secret/${ns}/${name}`) ||
          (feed.gateway !== undefined && referencedSecrets(feed.gateway).has(`${ns}/${name}`))
        );
      case 'configMaps':
        return (
          feed.own.has(`ConfigMap/${ns}/${name}`) ||
          (feed.gateway !== undefined && referencedConfigMaps(feed.gateway).has(`${ns}/${name}`))
        );
      default:
        // Namespaces, GatewayClasses, ReferenceGrants: what the model allows may change.
        return true;
    }
  }

  #recomputeOwn(feed: Feed): void {
    const { inputs, trustDomain } = this.#o;
    feed.gateway = findGateway(inputs, feed.ref);
    feed.own = feed.gateway
      ? toJsonMap(ownObjects(inputs, feed.gateway, feed.ref, trustDomain))
      : new Map<string, string>();
  }

  /** Everything `feed`'s proxies should have. */
  #whole(feed: Feed): Map<string, string> {
    if (!feed.gateway || !this.#shared) return new Map();
    const all = new Map(this.#shared);
    for (const [k, json] of feed.own) all.set(k, json);
    return all;
  }

  /** Sends the differences at `keys` (all keys when undefined) between what `feed` has and should have. */
  #send(feed: Feed, keys: Set<string> | undefined): void {
    const upserts: string[] = [];
    const removals: string[] = [];
    if (keys === undefined) {
      const next = this.#whole(feed);
      for (const [k, json] of next) if (feed.sent.get(k) !== json) upserts.push(json);
      for (const k of feed.sent.keys()) if (!next.has(k)) removals.push(k);
      feed.sent = next;
    } else {
      for (const k of keys) {
        const json = feed.gateway ? (feed.own.get(k) ?? this.#shared?.get(k)) : undefined;
        if (feed.sent.get(k) === json) continue;
        if (json === undefined) {
          removals.push(k);
          feed.sent.delete(k);
        } else {
          upserts.push(json);
          feed.sent.set(k, json);
        }
      }
    }
    if (upserts.length === 0 && removals.length === 0) return;
    const version = this.#nextVersion();
    const frame = Buffer.from(
      `{"type":"delta","version":${JSON.stringify(version)},"base":${JSON.stringify(feed.version)},` +
        `"upserts":[${upserts.join(',')}],"removals":${JSON.stringify(removals)}}\n`,
    );
    feed.version = version;
    for (const sub of feed.subscribers) sub.write(frame);
    this.#o.log?.('gateway config pushed', {
      gateway: `${feed.ref.namespace}/${feed.ref.name}`,
      version,
      upserts: upserts.length,
      removals: removals.length,
      subscribers: feed.subscribers.size,
    });
  }

  #nextVersion(): string {
    return `${this.#epoch}:${++this.#seq}`;
  }
}
