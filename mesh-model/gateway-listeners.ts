// GatewayClasses and Gateways of our controller, with every listener validated as Gateway API v1.6.1
// requires: protocol, conflicts, allowedRoutes.kinds, certificateRefs and frontend client-certificate
// validation (spec.tls.frontend), each ReferenceGrant-checked. Pure; gateway-view.ts and gateway-status.ts
// read the result.
import { GATEWAY_GROUP, isGatewayApiObject, isObject, objectKey, type K8sObject } from './k8s-objects.ts';
import { readReferenceGrants, type ReferenceGrants } from './reference-grants.ts';
import type { Condition, RouteGroupKind } from './gateway-status.ts';
import { GATEWAY_CONTROLLER_NAME } from './controller-name.ts';
/** Gateway API CRD bundle versions this translation follows (major.minor of the bundle-version annotation). */
export const SUPPORTED_BUNDLE_VERSION = 'v1.6';

export interface SecretRef {
  namespace: string;
  name: string;
}

export type ServedProtocol = 'HTTP' | 'HTTPS';

export interface ClientValidation {
  caCertificates: readonly SecretRef[];
  mode: string;
}

export interface ListenerInfo {
  name: string;
  port: number;
  /** As written; only HTTP and HTTPS are served. */
  protocol: string;
  hostname: string | undefined;
  supportedKinds: RouteGroupKind[];
  /** allowedRoutes.namespaces. */
  from: 'Same' | 'All' | 'Selector';
  selector: unknown;
  certificates: SecretRef[];
  clientValidation: ClientValidation | undefined;
  /** Accepted, Conflicted, ResolvedRefs (Programmed is the controller's). */
  conditions: Condition[];
  /** Accepted, not conflicted and able to serve (an HTTPS listener has a usable certificate). */
  served: boolean;
}

export interface GatewayInfo {
  namespace: string;
  name: string;
  className: string;
  listeners: ListenerInfo[];
  conditions: Condition[];
  object: K8sObject;
}

export interface GatewayWorld {
  /** Our GatewayClasses by name, with their conditions. */
  classes: Map<string, Condition[]>;
  /** Gateways of our classes, keyed `namespace/name`. */
  gateways: Map<string, GatewayInfo>;
  grants: ReferenceGrants;
  /** Namespace labels by name (for allowedRoutes Selector). */
  namespaceLabels: Map<string, Record<string, string>>;
}

const ROUTE_KINDS = ['HTTPRoute', 'GRPCRoute'];
const SERVED: readonly string[] = ['HTTP', 'HTTPS'];

function cond(type: string, ok: boolean, reason: string, message: string): Condition {
  return { type, status: ok ? 'True' : 'False', reason, message };
}

const isGatewayApi = isGatewayApiObject;

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function majorMinor(version: string): string | undefined {
  return /^(v\d+\.\d+)(\.\d+)?(-.*)?$/.exec(version)?.[1];
}

/** SupportedVersion from the bundle-version annotation of every Gateway API CRD among the objects. */
function supportedVersion(objects: readonly K8sObject[]): Condition {
  const versions = new Set<string>();
  let crds = 0;
  for (const obj of objects) {
    if (obj.kind !== 'CustomResourceDefinition' || !str(obj.metadata?.name)?.endsWith(`.${GATEWAY_GROUP}`))
      continue;
    crds++;
    versions.add(str(obj.metadata?.annotations?.['gateway.networking.k8s.io/bundle-version']) ?? '(none)');
  }
  const found = [...versions].sort().join(', ');
  if (crds === 0)
    return cond(
      'SupportedVersion',
      false,
      'UnsupportedVersion',
      `no Gateway API CRDs seen; supported: ${SUPPORTED_BUNDLE_VERSION}.x`,
    );
  const bad = [...versions].filter((v) => majorMinor(v) !== SUPPORTED_BUNDLE_VERSION);
  if (bad.length > 0)
    return cond(
      'SupportedVersion',
      false,
      'UnsupportedVersion',
      `Gateway API CRD bundle version ${found} found, ${SUPPORTED_BUNDLE_VERSION}.x supported; reconciled with best effort`,
    );
  return cond(
    'SupportedVersion',
    true,
    'SupportedVersion',
    `Gateway API CRD bundle version ${found} is supported`,
  );
}

function readClasses(objects: readonly K8sObject[]): Map<string, Condition[]> {
  const version = supportedVersion(objects);
  const classes = new Map<string, Condition[]>();
  for (const obj of objects) {
    if (obj.kind !== 'GatewayClass' || !isGatewayApi(obj)) continue;
    const name = str(obj.metadata?.name);
    const spec = isObject(obj.spec) ? obj.spec : {};
    if (!name || spec.controllerName !== GATEWAY_CONTROLLER_NAME) continue;
    // An unsupported bundle version is served with best effort (the spec allows Accepted=True then).
    classes.set(name, [
      cond('Accepted', true, 'Accepted', `accepted by ${GATEWAY_CONTROLLER_NAME}`),
      version,
    ]);
  }
  return classes;
}

interface Problem {
  reason: string;
  message: string;
}

/** Finds a core object (Secret, ConfigMap) by namespace/name. */
type Lookup = (kind: string, namespace: string, name: string) => K8sObject | undefined;

function decodes(value: unknown, marker: string): boolean {
  if (typeof value !== 'string') return false;
  return Buffer.from(value, 'base64').toString('latin1').includes(marker);
}

interface RefCheck {
  /** "certificateRef" or "caCertificateRef", for messages. */
  what: string;
  kind: 'Secret' | 'ConfigMap';
  invalidRef: string;
  invalidKind: string;
  /** Why the object's content is unusable; only checked when the object carries data. */
  content: (obj: K8sObject) => string | undefined;
}

const CERTIFICATE: RefCheck = {
  what: 'certificateRef',
  kind: 'Secret',
  invalidRef: 'InvalidCertificateRef',
  invalidKind: 'InvalidCertificateRef',
  content(obj) {
    const type = (obj as { type?: unknown }).type;
    if (type !== undefined && type !== 'kubernetes.io/tls')
      return `is of type ${JSON.stringify(type)}, not kubernetes.io/tls`;
    const data = (obj as { data?: unknown }).data;
    if (data === undefined) return undefined;
    if (!isObject(data)) return 'has no data';
    if (!decodes(data['tls.crt'], '-----BEGIN CERTIFICATE-----')) return 'has no PEM certificate in tls.crt';
    if (!decodes(data['tls.key'], 'PRIVATE KEY-----')) return 'has no PEM private key in tls.key';
    return undefined;
  },
};

const CA_CERTIFICATE: RefCheck = {
  what: 'caCertificateRef',
  kind: 'ConfigMap',
  invalidRef: 'InvalidCACertificateRef',
  invalidKind: 'InvalidCACertificateKind',
  content(obj) {
    const data = (obj as { data?: unknown }).data;
    if (data === undefined) return undefined;
    if (
      !isObject(data) ||
      typeof data['ca.crt'] !== 'string' ||
      !data['ca.crt'].includes('-----BEGIN CERTIFICATE-----')
    )
      return 'has no PEM certificate in ca.crt';
    return undefined;
  },
};

/** Resolves certificate-like references of a Gateway; valid ones are returned, the rest become problems. */
function resolveRefs(
  refs: unknown,
  check: RefCheck,
  gatewayNamespace: string,
  grants: ReferenceGrants,
  lookup: Lookup,
  problems: Problem[],
): SecretRef[] {
  const valid: SecretRef[] = [];
  for (const ref of Array.isArray(refs) ? refs : []) {
    if (!isObject(ref)) continue;
    const group = ref.group === 'core' ? '' : (str(ref.group) ?? '');
    const kind = str(ref.kind) ?? (check.kind === 'Secret' ? 'Secret' : '');
    const name = str(ref.name) ?? '';
    const namespace = str(ref.namespace) ?? gatewayNamespace;
    const label = `${check.what} ${group === '' ? '' : `${group}/`}${kind} ${objectKey(namespace, name)}`;
    if (group !== '' || kind !== check.kind) {
      problems.push({
        reason: check.invalidKind,
        message: `${label}: only core ${check.kind}s are supported`,
      });
      continue;
    }
    const from = { group: GATEWAY_GROUP, kind: 'Gateway', namespace: gatewayNamespace };
    if (!grants.permits(from, { group: '', kind, namespace, name })) {
      problems.push({
        reason: 'RefNotPermitted',
        message: `${label} is not allowed by a ReferenceGrant in namespace ${namespace}`,
      });
      continue;
    }
    const obj = lookup(kind, namespace, name);
    if (!obj) {
      problems.push({ reason: check.invalidRef, message: `${label} not found` });
      continue;
    }
    const bad = check.content(obj);
    if (bad) {
      problems.push({ reason: check.invalidRef, message: `${label} ${bad}` });
      continue;
    }
    valid.push({ namespace, name });
  }
  return valid;
}

/** spec.tls.frontend: the validation of a port (perPort wins over default), or undefined. */
function frontendValidation(
  spec: Record<string, unknown>,
  port: number,
): Record<string, unknown> | undefined {
  const tls = isObject(spec.tls) ? spec.tls : {};
  const frontend = isObject(tls.frontend) ? tls.frontend : {};
  const perPort = Array.isArray(frontend.perPort) ? frontend.perPort.filter(isObject) : [];
  const own = perPort.find((p) => p.port === port);
  const config = own ? own.tls : frontend.default;
  return isObject(config) && isObject(config.validation) ? config.validation : undefined;
}

function readKinds(allowed: Record<string, unknown>, problems: Problem[]): RouteGroupKind[] {
  if (!Array.isArray(allowed.kinds) || allowed.kinds.length === 0)
    return ROUTE_KINDS.map((kind) => ({ group: GATEWAY_GROUP, kind }));
  const kinds: RouteGroupKind[] = [];
  for (const k of allowed.kinds) {
    if (!isObject(k)) continue;
    const group = typeof k.group === 'string' ? k.group : GATEWAY_GROUP;
    const kind = str(k.kind) ?? '';
    if (group === GATEWAY_GROUP && ROUTE_KINDS.includes(kind)) {
      if (!kinds.some((x) => x.kind === kind)) kinds.push({ group, kind });
    } else {
      problems.push({
        reason: 'InvalidRouteKinds',
        message: `route kind ${group}/${kind} is not supported on this listener`,
      });
    }
  }
  return kinds;
}

function readListener(
  raw: Record<string, unknown>,
  spec: Record<string, unknown>,
  namespace: string,
  grants: ReferenceGrants,
  lookup: Lookup,
): ListenerInfo {
  const protocol = str(raw.protocol) ?? '';
  const port = Number.isInteger(raw.port) ? (raw.port as number) : 0;
  const allowed = isObject(raw.allowedRoutes) ? raw.allowedRoutes : {};
  const namespaces = isObject(allowed.namespaces) ? allowed.namespaces : {};
  const from = namespaces.from === 'All' || namespaces.from === 'Selector' ? namespaces.from : 'Same';
  const listener: ListenerInfo = {
    name: str(raw.name) ?? '',
    port,
    protocol,
    hostname: str(raw.hostname)?.toLowerCase(),
    supportedKinds: [],
    from,
    selector: namespaces.selector,
    certificates: [],
    clientValidation: undefined,
    conditions: [],
    served: false,
  };
  if (!SERVED.includes(protocol)) {
    listener.conditions = [
      cond(
        'Accepted',
        false,
        'UnsupportedProtocol',
        `protocol ${protocol} is not supported (HTTP and HTTPS are)`,
      ),
      cond('Conflicted', false, 'NoConflicts', 'no conflicts'),
      cond('ResolvedRefs', true, 'ResolvedRefs', 'all references resolved'),
    ];
    return listener;
  }
  const problems: Problem[] = [];
  listener.supportedKinds = readKinds(allowed, problems);
  let accepted = cond('Accepted', true, 'Accepted', 'listener accepted');
  if (protocol === 'HTTPS') {
    const tls = isObject(raw.tls) ? raw.tls : {};
    if (tls.mode !== undefined && tls.mode !== 'Terminate') {
      accepted = cond(
        'Accepted',
        false,
        'UnsupportedProtocol',
        `HTTPS with TLS mode ${JSON.stringify(tls.mode)} is not supported`,
      );
    }
    listener.certificates = resolveRefs(
      tls.certificateRefs,
      CERTIFICATE,
      namespace,
      grants,
      lookup,
      problems,
    );
    if (!Array.isArray(tls.certificateRefs) || tls.certificateRefs.length === 0)
      problems.push({ reason: 'InvalidCertificateRef', message: 'an HTTPS listener needs certificateRefs' });
    const validation = frontendValidation(spec, port);
    if (validation) {
      const caProblems: Problem[] = [];
      const cas = resolveRefs(
        validation.caCertificateRefs,
        CA_CERTIFICATE,
        namespace,
        grants,
        lookup,
        caProblems,
      );
      problems.push(...caProblems);
      const mode = validation.mode === 'AllowInsecureFallback' ? 'AllowInsecureFallback' : 'AllowValidOnly';
      listener.clientValidation = { caCertificates: cas, mode };
      if (cas.length === 0 && accepted.status === 'True') {
        accepted = cond(
          'Accepted',
          false,
          'NoValidCACertificate',
          `no valid caCertificateRef for client certificate validation on port ${port}`,
        );
      }
    }
  }
  listener.conditions = [
    accepted,
    cond('Conflicted', false, 'NoConflicts', 'no conflicts'),
    problems.length === 0
      ? cond('ResolvedRefs', true, 'ResolvedRefs', 'all references resolved')
      : cond('ResolvedRefs', false, problems[0]!.reason, problems.map((p) => p.message).join('; ')),
  ];
  listener.served =
    accepted.status === 'True' &&
    listener.supportedKinds.length > 0 &&
    (protocol === 'HTTP' || listener.certificates.length > 0);
  return listener;
}

/**
 * Marks indistinct listeners (spec "Distinct Listeners"): on one port, HTTP next to HTTPS is a
 * ProtocolConflict; the same protocol and hostname twice is a HostnameConflict. Unsupported protocols
 * take no part. Conflicted listeners are neither accepted nor served; none of them wins.
 */
function markConflicts(listeners: ListenerInfo[]): void {
  const byPort = new Map<number, ListenerInfo[]>();
  for (const l of listeners) {
    if (!SERVED.includes(l.protocol)) continue;
    byPort.set(l.port, [...(byPort.get(l.port) ?? []), l]);
  }
  for (const group of byPort.values()) {
    const protocols = new Set(group.map((l) => l.protocol));
    for (const l of group) {
      let reason: string | undefined;
      let message = '';
      if (protocols.size > 1) {
        reason = 'ProtocolConflict';
        message = `port ${l.port} is used with protocols ${[...protocols].sort().join(' and ')}`;
      } else {
        const same = group.filter((o) => o !== l && o.hostname === l.hostname);
        if (same.length > 0) {
          reason = 'HostnameConflict';
          message = `listener ${same.map((o) => o.name).join(', ')} has the same port, protocol and hostname ${l.hostname ?? '(none)'}`;
        }
      }
      if (!reason) continue;
      l.conditions[0] = cond('Accepted', false, reason, message);
      l.conditions[1] = cond('Conflicted', true, reason, message);
      l.served = false;
    }
  }
}

/** Whether spec.tls.frontend lets clients without a valid certificate through on some port. */
function insecureFrontendValidation(spec: Record<string, unknown>): boolean {
  const tls = isObject(spec.tls) ? spec.tls : {};
  const frontend = isObject(tls.frontend) ? tls.frontend : {};
  const perPort = Array.isArray(frontend.perPort) ? frontend.perPort.filter(isObject) : [];
  return [frontend.default, ...perPort.map((p) => p.tls)].some(
    (config) =>
      isObject(config) && isObject(config.validation) && config.validation.mode === 'AllowInsecureFallback',
  );
}

/** Accepted first (the view reads it there), then InsecureFrontendValidationMode while it applies. */
function gatewayConditions(spec: Record<string, unknown>, listeners: ListenerInfo[]): Condition[] {
  const accepted = acceptedCondition(spec, listeners);
  if (!insecureFrontendValidation(spec)) return [accepted];
  return [
    accepted,
    cond(
      'InsecureFrontendValidationMode',
      true,
      'ConfigurationChanged',
      'spec.tls.frontend validation mode AllowInsecureFallback: clients without a valid certificate are let through',
    ),
  ];
}

function acceptedCondition(spec: Record<string, unknown>, listeners: ListenerInfo[]): Condition {
  const addresses = Array.isArray(spec.addresses) ? spec.addresses.filter(isObject) : [];
  if (addresses.some((a) => str(a.value) !== undefined)) {
    return cond(
      'Accepted',
      false,
      'UnsupportedAddress',
      'spec.addresses with a value are not supported: the gateway Service gets its address from the cluster',
    );
  }
  // Settings come from annotations (ADR 0010): no parameters kind is supported, so any reference is one the
  // spec calls invalid (an unsupported kind, or an object that does not exist).
  const infrastructure = isObject(spec.infrastructure) ? spec.infrastructure : {};
  if (isObject(infrastructure.parametersRef)) {
    const ref = infrastructure.parametersRef;
    const what = `${str(ref.group) || 'core'}/${str(ref.kind) ?? ''} ${str(ref.name) ?? ''}`;
    return cond(
      'Accepted',
      false,
      'InvalidParameters',
      `spec.infrastructure.parametersRef ${what} is not supported: Sluice reads its gateway settings from annotations (sluice.dev/service-type, sluice.dev/proxy-cpu-request)`,
    );
  }
  // A listener with any condition in its bad state counts as not valid; the gateway stays Accepted while
  // at least one listener can be served (the spec's partial listener set).
  const bad = (c: Condition): boolean =>
    c.type === 'Conflicted' ? c.status === 'True' : c.status === 'False';
  const invalid = listeners.filter((l) => !l.served || l.conditions.some(bad));
  if (invalid.length === 0 && listeners.length > 0)
    return cond('Accepted', true, 'Accepted', 'gateway accepted');
  const served = listeners.filter((l) => l.served).map((l) => l.name);
  const message = `listeners not valid: ${invalid.map((l) => l.name).join(', ') || '(no listeners)'}; served: ${served.join(', ') || 'none'}`;
  return cond('Accepted', served.length > 0, 'ListenersNotValid', message);
}

function makeLookup(objects: readonly K8sObject[]): Lookup {
  const index = new Map<string, K8sObject>();
  for (const obj of objects) {
    if ((obj.kind !== 'Secret' && obj.kind !== 'ConfigMap') || (obj.apiVersion ?? 'v1') !== 'v1') continue;
    const name = str(obj.metadata?.name);
    if (name) index.set(`${obj.kind}/${str(obj.metadata?.namespace) ?? 'default'}/${name}`, obj);
  }
  return (kind, namespace, name) => index.get(`${kind}/${namespace}/${name}`);
}

/**
 * Reads our GatewayClasses and their Gateways (with validated listeners) from the objects. Entries that are
 * not objects at all (a stray `-` in a file) are skipped; callers pass the same filtered list on.
 */
export function readGatewayWorld(objects: readonly K8sObject[]): GatewayWorld {
  const classes = readClasses(objects);
  const grants = readReferenceGrants(objects);
  const lookup = makeLookup(objects);
  const namespaceLabels = new Map<string, Record<string, string>>();
  for (const obj of objects) {
    if (obj.kind === 'Namespace' && str(obj.metadata?.name))
      namespaceLabels.set(obj.metadata!.name!, obj.metadata?.labels ?? {});
  }
  const gateways = new Map<string, GatewayInfo>();
  for (const obj of objects) {
    if (obj.kind !== 'Gateway' || !isGatewayApi(obj)) continue;
    const name = str(obj.metadata?.name);
    const spec = isObject(obj.spec) ? obj.spec : {};
    const className = str(spec.gatewayClassName);
    if (!name || !className || !classes.has(className)) continue;
    const namespace = str(obj.metadata?.namespace) ?? 'default';
    const listeners = (Array.isArray(spec.listeners) ? spec.listeners : [])
      .filter(isObject)
      .map((raw) => readListener(raw, spec, namespace, grants, lookup));
    markConflicts(listeners);
    gateways.set(objectKey(namespace, name), {
      namespace,
      name,
      className,
      listeners,
      conditions: gatewayConditions(spec, listeners),
      object: obj,
    });
  }
  return { classes, gateways, grants, namespaceLabels };
}
