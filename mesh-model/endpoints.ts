import { isObject, objectKey, type K8sObject } from './k8s-objects.ts';
import type { MeshService } from './model.ts';
import { servicePortKey } from './model.ts';

/**
 * One address a Service port can send to, with the identity its sidecar must present (if meshed), and its
 * EndpointSlice conditions: `ready` (takes new requests; never true while terminating), `serving` (would
 * answer, whether terminating or not) and `terminating` (its pod is shutting down).
 */
export interface Endpoint {
  address: string;
  port: number;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  /**
   * Its pod's kubelet last found it ready: ContainersReady and every readiness gate True. When `ready` is
   * false all the same (and it is not terminating), only the node lifecycle controller made it so: the
   * node's kubelet went silent (ADR 0021). Unset: not known to be (not a pod's endpoint).
   */
  kubeletReady?: boolean;
  /** SPIFFE ID of the workload when its pod runs a Sluice sidecar; undefined → plaintext. */
  identity: string | undefined;
  pod: string | undefined;
}

/** The container name the injector adds (a native sidecar in initContainers, or a classic one in
 * containers on clusters without native sidecars). */
export const PROXY_CONTAINER = 'sluice-proxy';
/** The proxy container of a Gateway's data-plane Deployment (the controller provisions it). */
export const GATEWAY_CONTAINER = 'sluice-gateway';
/**
 * The V8 settings of both proxies' containers (NODE_OPTIONS): a 4 MiB semi-space instead of V8's default,
 * peak RSS under load 0.65-0.70× with no measured CPU cost per request (ADR 0016, fifth session). The old
 * generation is left to V8, which sizes it from the container's memory limit (ninth session).
 */
export const PROXY_NODE_OPTIONS = '--max-semi-space-size=4';
/** The capture init container the injector adds. */
export const INIT_CONTAINER = 'sluice-init';
/** The annotation the injector sets on every pod it injects, with the value INJECTED. */
export const STATUS_ANNOTATION = 'sluice.dev/status';
export const INJECTED = 'injected';

/**
 * Meshed = injected: the injector's marker and both of its containers. A container name alone is what any
 * pod spec can carry; the injector refuses the names and the marker in the namespaces it serves unless
 * they are exactly its own (docs/security.md, "What the model trusts about pods").
 */
export function isInjectedPod(pod: K8sObject): boolean {
  const annotations = isObject(pod.metadata?.annotations) ? pod.metadata.annotations : {};
  if (annotations[STATUS_ANNOTATION] !== INJECTED) return false;
  const spec = isObject(pod.spec) ? pod.spec : {};
  const names = (list: unknown): string[] =>
    Array.isArray(list)
      ? list.flatMap((c) => (isObject(c) && typeof c.name === 'string' ? [c.name] : []))
      : [];
  const init = names(spec.initContainers);
  return init.includes(INIT_CONTAINER) && [...init, ...names(spec.containers)].includes(PROXY_CONTAINER);
}

export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

interface PodInfo {
  identity: string | undefined;
  kubeletReady: boolean;
}

/** The status of each of the pod's conditions, by type. */
function conditionStatus(pod: K8sObject): Map<string, unknown> {
  const status = isObject(pod.status) ? pod.status : {};
  const conditions = Array.isArray(status.conditions) ? status.conditions.filter(isObject) : [];
  return new Map(conditions.map((c) => [String(c.type), c.status]));
}

/** The condition types of the pod's readiness gates (spec.readinessGates). */
export function readinessGateTypes(spec: Record<string, unknown>): string[] {
  const gates = Array.isArray(spec.readinessGates) ? spec.readinessGates.filter(isObject) : [];
  return gates.flatMap((g) => (typeof g.conditionType === 'string' ? [g.conditionType] : []));
}

/**
 * The kubelet's verdict on a pod, which the node lifecycle controller's MarkPodsNotReady leaves alone when it
 * sets only `Ready` to False: its containers ready, and every readiness gate met.
 */
function isKubeletReady(pod: K8sObject, spec: Record<string, unknown>): boolean {
  const status = conditionStatus(pod);
  return (
    status.get('ContainersReady') === 'True' &&
    readinessGateTypes(spec).every((type) => status.get(type) === 'True')
  );
}

function readPods(objects: readonly K8sObject[], trustDomain: string): Map<string, PodInfo> {
  const pods = new Map<string, PodInfo>();
  for (const obj of objects) {
    if (obj.kind !== 'Pod' || typeof obj.metadata?.name !== 'string') continue;
    const namespace = obj.metadata.namespace ?? 'default';
    const spec = isObject(obj.spec) ? obj.spec : {};
    const meshed = isInjectedPod(obj);
    const sa =
      typeof spec.serviceAccountName === 'string' && spec.serviceAccountName !== ''
        ? spec.serviceAccountName
        : 'default';
    pods.set(objectKey(namespace, obj.metadata.name), {
      identity: meshed ? spiffeId(trustDomain, namespace, sa) : undefined,
      kubeletReady: isKubeletReady(obj, spec),
    });
  }
  return pods;
}

/**
 * EndpointSlices (+ Pods for identities) → endpoints per Service port, keyed like the routing tables
 * (`namespace/name:port`). Slice ports are matched to Service ports by name, as kube-proxy does.
 */
export function buildEndpoints(
  objects: readonly K8sObject[],
  services: ReadonlyMap<string, MeshService>,
  trustDomain: string,
): Map<string, Endpoint[]> {
  const pods = readPods(objects, trustDomain);
  const out = new Map<string, Endpoint[]>();
  for (const obj of objects) {
    if (obj.kind !== 'EndpointSlice') continue;
    const raw = obj as unknown as Record<string, unknown>;
    const namespace = obj.metadata?.namespace ?? 'default';
    const svcName = obj.metadata?.labels?.['kubernetes.io/service-name'];
    const svc = typeof svcName === 'string' ? services.get(objectKey(namespace, svcName)) : undefined;
    if (!svc) continue;
    const slicePorts = Array.isArray(raw.ports) ? raw.ports.filter(isObject) : [];
    for (const sp of svc.ports) {
      const match = slicePorts.find((p) => (p.name ?? '') === (sp.name ?? ''));
      const port =
        match && Number.isInteger(match.port)
          ? (match.port as number)
          : typeof sp.targetPort === 'number'
            ? sp.targetPort
            : undefined;
      if (port === undefined) continue;
      const key = servicePortKey(namespace, svc.name, sp.port);
      const list = out.get(key) ?? [];
      for (const ep of Array.isArray(raw.endpoints) ? raw.endpoints.filter(isObject) : []) {
        const conditions = isObject(ep.conditions) ? ep.conditions : {};
        const ref = isObject(ep.targetRef) ? ep.targetRef : undefined;
        const podKey =
          ref?.kind === 'Pod' && typeof ref.name === 'string'
            ? objectKey(typeof ref.namespace === 'string' ? ref.namespace : namespace, ref.name)
            : undefined;
        const pod = podKey ? pods.get(podKey) : undefined;
        for (const address of Array.isArray(ep.addresses) ? ep.addresses : []) {
          if (typeof address !== 'string') continue;
          const terminating = conditions.terminating === true;
          // Unset ready means ready ("unknown state should be interpreted as ready"); unset serving means
          // what the ready condition says (the API: serving is ready without the terminating check).
          const readyCondition = conditions.ready !== false;
          list.push({
            address,
            port,
            ready: readyCondition && !terminating,
            serving: typeof conditions.serving === 'boolean' ? conditions.serving : readyCondition,
            terminating,
            kubeletReady: pod?.kubeletReady ?? false,
            identity: pod?.identity,
            pod: podKey,
          });
        }
      }
      out.set(key, list);
    }
  }
  return out;
}

/**
 * The endpoints that may take a new request: the ready ones; when none is ready, those that are terminating
 * but still serving (as kube-proxy does: a Service whose every pod is shutting down keeps answering until the
 * pods stop), and those not terminating whose kubelet last found them ready (its node went NotReady because
 * the kubelet went silent, e.g. through a control-plane outage: ADR 0021). An endpoint outside this set still
 * finishes the requests it has.
 */
export function isEligible(ep: Endpoint, anyReady: boolean): boolean {
  if (anyReady) return ep.ready;
  return ep.terminating ? ep.serving : ep.kubeletReady === true;
}

/** Which tier of isEligible an endpoint is in (for `route explain` and the proxies' logs). */
export type EndpointTier = 'ready' | 'terminating' | 'node-unreachable' | 'unused';

export function endpointTier(ep: Endpoint, anyReady: boolean): EndpointTier {
  if (!isEligible(ep, anyReady)) return 'unused';
  return ep.ready ? 'ready' : ep.terminating ? 'terminating' : 'node-unreachable';
}

/**
 * The Service ports (`namespace/name:port`) whose requests go to endpoints of the node-unreachable tier: none
 * of their endpoints is ready, and some pod's kubelet last found it ready.
 */
export function nodeUnreachableServices(endpoints: ReadonlyMap<string, readonly Endpoint[]>): string[] {
  const out: string[] = [];
  for (const [key, list] of endpoints)
    if (!list.some((ep) => ep.ready) && list.some((ep) => endpointTier(ep, false) === 'node-unreachable'))
      out.push(key);
  return out;
}
