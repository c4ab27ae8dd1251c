// What the demo waits for, read from objects as kubectl returns them (untrusted JSON, every field optional).
// Pure: the polling lives in demo/main.ts.
import { MESH_CONTROLLER_NAME } from '../mesh-model/controller-name.ts';
import { PROXY_CONTAINER } from '../mesh-model/endpoints.ts';

/** The Gateway controller's name (controllerName of GatewayClass sluice). */
export const GATEWAY_CONTROLLER_NAME = 'sluice.dev/gateway-controller';

type Json = Record<string, unknown>;

function record(value: unknown): Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Json) : {};
}

function list(value: unknown): Json[] {
  return Array.isArray(value) ? value.map(record) : [];
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function count(value: unknown): number {
  return typeof value === 'number' && Number.isInteger(value) ? value : 0;
}

const nameOf = (object: Json): string => text(record(object.metadata).name) ?? '?';

export interface Rollout {
  name: string;
  done: boolean;
  /** What is missing, for a timeout message ("1 of 2 ready"), or why it cannot progress. */
  detail: string;
}

/** What `kubectl rollout status` checks: the current generation's pods all updated and available. */
export function rolloutOf(deployment: unknown): Rollout {
  const d = record(deployment);
  const metadata = record(d.metadata);
  const spec = record(d.spec);
  const status = record(d.status);
  const name = nameOf(d);
  const wanted = typeof spec.replicas === 'number' ? spec.replicas : 1;
  if (count(status.observedGeneration) < count(metadata.generation)) {
    return { name, done: false, detail: 'the new generation is not observed yet' };
  }
  const updated = count(status.updatedReplicas);
  const available = count(status.availableReplicas);
  const done = updated >= wanted && count(status.replicas) <= updated && available >= updated;
  const failure = list(status.conditions).find(
    (c) =>
      (c.type === 'ReplicaFailure' && c.status === 'True') ||
      (c.type === 'Progressing' && c.status === 'False'),
  );
  const detail = failure
    ? `${text(failure.reason) ?? ''}: ${text(failure.message) ?? ''}`
    : `${available} of ${wanted} available, ${updated} updated`;
  return { name, done, detail };
}

export interface ContainerProblem {
  pod: string;
  container: string;
  image: string;
  reason: string;
  message: string;
}

const STUCK_REASONS = new Set([
  'ErrImagePull',
  'ImagePullBackOff',
  'ErrImageNeverPull',
  'InvalidImageName',
  'CrashLoopBackOff',
  'CreateContainerConfigError',
  'CreateContainerError',
  'RunContainerError',
]);

export const isImageProblem = (p: ContainerProblem): boolean =>
  /ImagePull|ImageNeverPull|InvalidImageName/.test(p.reason);

/** Containers (init containers included) waiting for a reason that does not pass by itself. */
export function containerProblems(pods: readonly unknown[]): ContainerProblem[] {
  return pods.flatMap((pod) => {
    const p = record(pod);
    const status = record(p.status);
    return [...list(status.initContainerStatuses), ...list(status.containerStatuses)].flatMap((c) => {
      const waiting = record(record(c.state).waiting);
      const reason = text(waiting.reason);
      if (reason === undefined || !STUCK_REASONS.has(reason)) return [];
      return [
        {
          pod: nameOf(p),
          container: text(c.name) ?? '?',
          image: text(c.image) ?? '?',
          reason,
          message: text(waiting.message) ?? '',
        },
      ];
    });
  });
}

/** Names of running pods (not being deleted) without the sluice-proxy container, native sidecar or not. */
export function podsWithoutSidecar(pods: readonly unknown[]): string[] {
  return pods
    .map(record)
    .filter((p) => record(p.metadata).deletionTimestamp === undefined)
    .filter((p) => {
      const spec = record(p.spec);
      return ![...list(spec.initContainers), ...list(spec.containers)].some(
        (c) => c.name === PROXY_CONTAINER,
      );
    })
    .map(nameOf);
}

/** Webhooks of a MutatingWebhookConfiguration whose clientConfig has no caBundle yet (all when it has none). */
export function webhooksWithoutCaBundle(configuration: unknown): string[] {
  const webhooks = list(record(configuration).webhooks);
  if (webhooks.length === 0) return ['(no webhooks)'];
  return webhooks
    .filter((w) => (text(record(w.clientConfig).caBundle) ?? '') === '')
    .map((w) => text(w.name) ?? '?');
}

export interface ParentStatus {
  /** Accepted and ResolvedRefs are True for the route's current generation. */
  accepted: boolean;
  /** Conditions as "Type=Status (Reason): message", or why there are none yet. */
  lines: string[];
}

/** The mesh controller's status entry for a Service parent of the route, judged for its current generation. */
export function meshParentStatus(route: unknown, service: string): ParentStatus {
  return parentStatus(route, MESH_CONTROLLER_NAME, 'Service', service);
}

/** The gateway controller's status entry for a Gateway parent of the route. */
export function gatewayParentStatus(route: unknown, gateway: string): ParentStatus {
  return parentStatus(route, GATEWAY_CONTROLLER_NAME, 'Gateway', gateway);
}

function parentStatus(route: unknown, controller: string, kind: string, name: string): ParentStatus {
  const r = record(route);
  const generation = count(record(r.metadata).generation);
  const entry = list(record(r.status).parents).find((p) => {
    const ref = record(p.parentRef);
    // A Gateway parentRef may leave kind out (it defaults to Gateway).
    return p.controllerName === controller && (ref.kind ?? 'Gateway') === kind && ref.name === name;
  });
  if (!entry) return { accepted: false, lines: [`no status from ${controller} yet`] };
  const conditions = list(entry.conditions);
  const lines = conditions.map(
    (c) =>
      `${text(c.type) ?? '?'}=${text(c.status) ?? '?'} (${text(c.reason) ?? ''})` +
      (text(c.message) ? `: ${text(c.message) ?? ''}` : '') +
      (count(c.observedGeneration) < generation ? ` [generation ${count(c.observedGeneration)}]` : ''),
  );
  const isTrue = (type: string): boolean =>
    conditions.some(
      (c) => c.type === type && c.status === 'True' && count(c.observedGeneration) >= generation,
    );
  return { accepted: isTrue('Accepted') && isTrue('ResolvedRefs'), lines };
}

export interface SidecarRoute {
  /** The sidecar routes the Service with the route, as of the route's current generation when it can tell. */
  current: boolean;
  /** The sidecar's config version (increases with every config it applies). */
  version: number | undefined;
  detail: string;
}

export interface SidecarRouteExpectation {
  /** "HTTPRoute namespace/name", as /config_dump names routes. */
  route: string;
  /** "namespace/name:port" of the parent Service. */
  service: string;
  /** The route's metadata.generation the sidecar must have. */
  generation: number;
  /** When the route just changed and /config_dump shows no generations: a config version older than the
   * change, which the sidecar must have moved past. */
  versionBefore?: number | undefined;
}

/**
 * Whether a sidecar's /config_dump has the route for the Service. Per-route generations, when the dump has
 * them (`config.routes: [{route, generation}]`), decide; otherwise a config version newer than the one seen
 * before the change does.
 */
export function sidecarRoute(dump: unknown, expected: SidecarRouteExpectation): SidecarRoute {
  const config = record(record(dump).config);
  const version = typeof config.version === 'number' ? config.version : undefined;
  if (version === undefined) return { current: false, version, detail: 'no config loaded yet' };
  const destination = list(config.destinations).find((d) => d.service === expected.service);
  if (!destination) return { current: false, version, detail: `no destination ${expected.service} yet` };
  const routes: unknown[] = Array.isArray(destination.routes) ? destination.routes : [];
  if (!routes.includes(expected.route)) {
    return { current: false, version, detail: `${expected.service} is not routed by ${expected.route} yet` };
  }
  if (Array.isArray(config.routes)) {
    const entry = list(config.routes).find((r) => r.route === expected.route);
    const generation = entry ? count(entry.generation) : 0;
    return generation >= expected.generation
      ? { current: true, version, detail: `${expected.route} generation ${generation}` }
      : {
          current: false,
          version,
          detail: `has generation ${generation} of ${expected.route}, not ${expected.generation} yet`,
        };
  }
  if (expected.versionBefore !== undefined && version <= expected.versionBefore) {
    return {
      current: false,
      version,
      detail: `config version ${version}: no change since the route changed`,
    };
  }
  return { current: true, version, detail: `config version ${version}` };
}

/** A Running pod with label app=`app`, not being deleted. */
export function runningPod(pods: readonly unknown[], app: string): string | undefined {
  const pod = pods.map(record).find((p) => {
    const metadata = record(p.metadata);
    return (
      record(metadata.labels).app === app &&
      metadata.deletionTimestamp === undefined &&
      record(p.status).phase === 'Running'
    );
  });
  return pod ? nameOf(pod) : undefined;
}

export interface GatewayState {
  /** Programmed is True for the current generation and there is an address. */
  ready: boolean;
  /** The first address in status.addresses, if any. */
  address: string | undefined;
  /** Conditions as "Type=Status (Reason): message", or why there are none yet. */
  lines: string[];
}

/** A Gateway's readiness and address, from its status. */
export function gatewayState(gateway: unknown): GatewayState {
  const g = record(gateway);
  const generation = count(record(g.metadata).generation);
  const status = record(g.status);
  const conditions = list(status.conditions);
  const address = list(status.addresses)
    .map((a) => text(a.value))
    .find((v) => v !== undefined && v !== '');
  const lines = conditions.map(
    (c) =>
      `${text(c.type) ?? '?'}=${text(c.status) ?? '?'} (${text(c.reason) ?? ''})` +
      (text(c.message) ? `: ${text(c.message) ?? ''}` : ''),
  );
  const programmed = conditions.some(
    (c) => c.type === 'Programmed' && c.status === 'True' && count(c.observedGeneration) >= generation,
  );
  if (lines.length === 0) lines.push('no status yet');
  if (address === undefined) lines.push('no address yet');
  return { ready: programmed && address !== undefined, address, lines };
}
