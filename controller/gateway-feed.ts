// Config for gateway proxies, on the same stream and wire format as the sidecars' (ADR 0005): a proxy whose
// certificate names a Gateway's service account (gateway-provisioning.ts) gets the objects that Gateway's
// view is built from, and the TLS Secrets its listeners may use. Secrets go to that Gateway's proxies only,
// never to a sidecar or another Gateway. The set is recomputed per Gateway after a change (debounced) and
// sent as a delta against what its proxies have; a rotated Secret is just a changed object.
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

/**
 * The objects gateway `ref`'s proxies get: what buildGatewayView reads, and the certificate Secrets the
 * view's listeners may use (ReferenceGrants checked by the model: a Secret it does not allow is not sent).
 */
export function gatewayObjects(inputs: GatewayFeedInputs, ref: GatewayRef, trustDomain: string): K8sObject[] {
  const gateway = inputs
    .gateways()
    .find((g) => g.metadata?.name === ref.name && namespaceOf(g) === ref.namespace);
  if (!gateway) return [];
  const base: K8sObject[] = [
    ...inputs.namespaces().map((n) => keep(n, false)),
    ...inputs.mesh().flatMap((o) => stripObject(o) ?? []),
    // The mesh-wide settings (tracing), as every sidecar gets them; stripObject passes no other ConfigMap.
    ...inputs.configMaps().flatMap((o) => stripObject(o) ?? []),
    ...inputs.gatewayClasses().map((c) => keep(c, true)),
    keep(gateway, true),
    ...inputs.referenceGrants().map((g) => keep(g, true)),
    ...inputs
      .routes()
      .filter((r) => attachesTo(r, ref))
      .map((r) => keep(r, true)),
  ];
  const wanted = referencedSecrets(gateway);
  const wantedCas = referencedConfigMaps(gateway);
  const candidates = [
    ...inputs
      .secrets()
      .filter((s) => wanted.has(`${namespaceOf(s)}/${s.metadata?.name ?? ''}`))
      .map(stripSecret),
    ...inputs
      .configMaps()
      .filter((c) => wantedCas.has(`${namespaceOf(c)}/${c.metadata?.name ?? ''}`))
      .map(stripConfigMap),
  ];
  if (candidates.length === 0) return base;
  let allowed: Set<string>;
  try {
    const view = buildGatewayView([...base, ...candidates], ref.namespace, ref.name, trustDomain);
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
    ...base,
    ...candidates.filter((s) => allowed.has(`${s.kind ?? ''}/${namespaceOf(s)}/${s.metadata?.name ?? ''}`)),
  ];
}

interface Feed {
  readonly ref: GatewayRef;
  readonly subscribers: Set<ConfigSubscriber>;
  /** What the subscribers have: object key → JSON. */
  sent: Map<string, string>;
  version: string;
}

export interface GatewayFeedOptions {
  readonly inputs: GatewayFeedInputs;
  readonly trustDomain: string;
  /** Quiet time after a change before the Gateways' sets are recomputed (100 ms). */
  readonly debounceMs?: number;
  readonly epoch?: string;
  readonly log?: (message: string, fields?: Record<string, unknown>) => void;
}

export class GatewayFeed {
  readonly #o: GatewayFeedOptions;
  readonly #feeds = new Map<string, Feed>();
  readonly #epoch: string;
  #seq = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

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
      const objects = this.#compute(ref);
      feed = { ref, subscribers: new Set(), sent: objects, version: this.#nextVersion() };
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
      if (owner.subscribers.size === 0 && this.#feeds.get(key) === owner) this.#feeds.delete(key);
    };
  }

  /** Something a gateway view may read changed: recompute after the debounce. */
  changed(): void {
    if (this.#closed || this.#feeds.size === 0) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.flush(), this.#o.debounceMs ?? 100);
  }

  /** Recomputes every subscribed Gateway's set and sends the differences. */
  flush(): void {
    clearTimeout(this.#timer);
    for (const feed of this.#feeds.values()) {
      const next = this.#compute(feed.ref);
      const upserts: string[] = [];
      const removals: string[] = [];
      for (const [k, json] of next) if (feed.sent.get(k) !== json) upserts.push(json);
      for (const k of feed.sent.keys()) if (!next.has(k)) removals.push(k);
      if (upserts.length === 0 && removals.length === 0) continue;
      const version = this.#nextVersion();
      const frame = Buffer.from(
        `{"type":"delta","version":${JSON.stringify(version)},"base":${JSON.stringify(feed.version)},` +
          `"upserts":[${upserts.join(',')}],"removals":${JSON.stringify(removals)}}\n`,
      );
      feed.sent = next;
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
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#feeds.clear();
  }

  #nextVersion(): string {
    return `${this.#epoch}:${++this.#seq}`;
  }

  #compute(ref: GatewayRef): Map<string, string> {
    const objects = gatewayObjects(this.#o.inputs, ref, this.#o.trustDomain);
    return new Map(objects.map((o) => [resourceKey(o), JSON.stringify(o)]));
  }
}
