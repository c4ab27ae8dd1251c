// Status of GatewayClasses and Gateways of our controller: what computeGatewayStatuses() says (pure,
// mesh-model/gateway-status.ts) plus what only the controller knows: Programmed (the Gateway's pods are
// ready, it has an address and the address accepts connections), status.addresses (from its Service) and
// the supported features of the class. Written by the leader through the StatusWriter, with
// lastTransitionTime kept while a condition's status holds and observedGeneration set to the object's
// generation.
import type { Logger } from '../lib/json-log.ts';
import { isObject, type K8sObject } from '../mesh-model/k8s-objects.ts';
import {
  computeGatewayStatuses,
  GATEWAY_SUPPORTED_FEATURES,
  type Condition as PureCondition,
  type GatewayStatuses,
  type ListenerStatus,
} from '../mesh-model/gateway-status.ts';
import { errorText } from '../lib/error-text.ts';
import { capText, conditionTime, sameJson, type Condition } from './route-status.ts';
import type { StatusWriter } from './status-writer.ts';
import { GATEWAY_NAME_LABEL, infrastructureName } from './gateway-provisioning.ts';
import type { AddressCheck, GatewayAddressProbes } from './gateway-address-probe.ts';
import { readService } from '../mesh-model/services.ts';

export interface GatewayAddress {
  type: 'IPAddress' | 'Hostname';
  value: string;
}

/** What the controller observed about a Gateway's data plane. */
export interface DataPlaneState {
  /** Pods of the Gateway that are Ready. */
  readyPods: number;
  addresses: GatewayAddress[];
  /** The ports of its Service (its listener ports). */
  ports: number[];
  /** Why it could not be provisioned, if so. */
  problem: string | undefined;
  /** Whether the first address accepts connections on every port; undefined when not checked. */
  address?: AddressCheck;
}

function generationOf(obj: K8sObject): number | undefined {
  const g = obj.metadata?.generation;
  return Number.isSafeInteger(g) && g! >= 0 ? g : undefined;
}

/** Conditions with times: kept from `previous` when type and status are unchanged. */
function timed(
  conditions: readonly PureCondition[],
  previous: unknown,
  now: string,
  generation: number | undefined,
): Condition[] {
  const old = Array.isArray(previous) ? (previous as unknown[]) : [];
  return conditions.map((c) => {
    const before = old.find((o) => isObject(o) && o.type === c.type);
    const kept =
      isObject(before) && before.status === c.status && typeof before.lastTransitionTime === 'string'
        ? before.lastTransitionTime
        : now;
    return {
      type: c.type,
      status: c.status,
      reason: c.reason,
      message: capText(c.message),
      lastTransitionTime: kept,
      ...(generation === undefined ? {} : { observedGeneration: generation }),
    };
  });
}

function isTrue(conditions: readonly PureCondition[], type: string): boolean {
  return conditions.some((c) => c.type === type && c.status === 'True');
}

/** The Gateway's Programmed condition from what was computed and observed. */
export function gatewayProgrammed(accepted: boolean, state: DataPlaneState): PureCondition {
  if (!accepted)
    return { type: 'Programmed', status: 'False', reason: 'Invalid', message: 'the Gateway is not accepted' };
  if (state.problem)
    return {
      type: 'Programmed',
      status: 'False',
      reason: 'Invalid',
      message: `not provisioned: ${state.problem}`,
    };
  if (state.readyPods === 0)
    return {
      type: 'Programmed',
      status: 'False',
      reason: 'Pending',
      message: 'waiting for a ready gateway pod',
    };
  if (state.addresses.length === 0)
    return {
      type: 'Programmed',
      status: 'False',
      reason: 'AddressNotAssigned',
      message: 'the gateway Service has no address yet',
    };
  if (state.address?.state === 'waiting')
    return {
      type: 'Programmed',
      status: 'False',
      reason: 'Pending',
      message: `waiting for the address to accept connections (${state.address.detail})`,
    };
  const pods = `${state.readyPods} ready gateway pod${state.readyPods === 1 ? '' : 's'}`;
  return {
    type: 'Programmed',
    status: 'True',
    reason: 'Programmed',
    message:
      state.address?.state === 'unverified'
        ? `${pods}; the address was not verified from the controller (${state.address.detail})`
        : pods,
  };
}

function listenerProgrammed(listener: ListenerStatus, gatewayProgrammed: boolean): PureCondition {
  const c = listener.conditions;
  const valid = isTrue(c, 'Accepted') && isTrue(c, 'ResolvedRefs') && !isTrue(c, 'Conflicted');
  if (!valid)
    return { type: 'Programmed', status: 'False', reason: 'Invalid', message: 'the listener is not valid' };
  if (!gatewayProgrammed)
    return {
      type: 'Programmed',
      status: 'False',
      reason: 'Pending',
      message: 'the gateway is not programmed yet',
    };
  return { type: 'Programmed', status: 'True', reason: 'Programmed', message: 'serving' };
}

/** The whole status to write on a Gateway, or undefined when its current status is already that. */
export function gatewayStatusUpdate(
  current: K8sObject,
  computed: { conditions: PureCondition[]; listeners: ListenerStatus[] },
  state: DataPlaneState,
  now: string,
): Record<string, unknown> | undefined {
  const status = isObject(current.status) ? current.status : {};
  const generation = generationOf(current);
  const programmed = gatewayProgrammed(isTrue(computed.conditions, 'Accepted'), state);
  const conditions = timed(
    [...computed.conditions.filter((c) => c.type !== 'Programmed'), programmed],
    status.conditions,
    now,
    generation,
  );
  const oldListeners = Array.isArray(status.listeners) ? (status.listeners as unknown[]) : [];
  const listeners = computed.listeners.map((l) => {
    const before = oldListeners.find((o) => isObject(o) && o.name === l.name);
    return {
      name: l.name,
      supportedKinds: l.supportedKinds,
      attachedRoutes: l.attachedRoutes,
      conditions: timed(
        [
          ...l.conditions.filter((c) => c.type !== 'Programmed'),
          listenerProgrammed(l, programmed.status === 'True'),
        ],
        isObject(before) ? before.conditions : undefined,
        now,
        generation,
      ),
    };
  });
  const next: Record<string, unknown> = { ...status, conditions, listeners };
  if (state.addresses.length > 0) next.addresses = state.addresses;
  else delete next.addresses;
  return sameJson(next, status) ? undefined : next;
}

/** The whole status to write on a GatewayClass of ours, or undefined when it is already that. */
export function gatewayClassStatusUpdate(
  current: K8sObject,
  conditions: readonly PureCondition[],
  now: string,
): Record<string, unknown> | undefined {
  const status = isObject(current.status) ? current.status : {};
  const next: Record<string, unknown> = {
    ...status,
    conditions: timed(conditions, status.conditions, now, generationOf(current)),
    supportedFeatures: GATEWAY_SUPPORTED_FEATURES.map((name) => ({ name })),
  };
  return sameJson(next, status) ? undefined : next;
}

function podReady(pod: K8sObject): boolean {
  const status = isObject(pod.status) ? pod.status : {};
  const conditions = Array.isArray(status.conditions) ? status.conditions : [];
  const deleting = isObject(pod.metadata) && pod.metadata.deletionTimestamp;
  return !deleting && conditions.some((c) => isObject(c) && c.type === 'Ready' && c.status === 'True');
}

/** Addresses of the Gateway's Service: the load balancer's when assigned, else its cluster IPs (ADR 0010). */
export function serviceAddresses(service: K8sObject | undefined): GatewayAddress[] {
  if (!service) return [];
  const status = isObject(service.status) ? service.status : {};
  const lb =
    isObject(status.loadBalancer) && Array.isArray(status.loadBalancer.ingress)
      ? status.loadBalancer.ingress
      : [];
  const fromLb = lb.flatMap((i): GatewayAddress[] => {
    if (!isObject(i)) return [];
    if (typeof i.ip === 'string' && i.ip !== '') return [{ type: 'IPAddress', value: i.ip }];
    if (typeof i.hostname === 'string' && i.hostname !== '') return [{ type: 'Hostname', value: i.hostname }];
    return [];
  });
  if (fromLb.length > 0) return fromLb;
  const spec = isObject(service.spec) ? service.spec : {};
  const ips = Array.isArray(spec.clusterIPs) ? spec.clusterIPs : [spec.clusterIP];
  return ips
    .filter((ip): ip is string => typeof ip === 'string' && ip !== '' && ip !== 'None')
    .map((value) => ({ type: 'IPAddress', value }));
}

/** What the controller observed for Gateway namespace/name, from the pod and Service caches. */
export function dataPlaneState(
  namespace: string,
  name: string,
  pods: readonly K8sObject[],
  services: readonly K8sObject[],
  problem: string | undefined,
): DataPlaneState {
  const labelled = pods.filter((p) => {
    const labels = isObject(p.metadata) && isObject(p.metadata.labels) ? p.metadata.labels : {};
    return (p.metadata?.namespace ?? 'default') === namespace && labels[GATEWAY_NAME_LABEL] === name;
  });
  const svcName = infrastructureName(name);
  const service = services.find(
    (s) => s.metadata?.name === svcName && (s.metadata.namespace ?? 'default') === namespace,
  );
  return {
    readyPods: labelled.filter(podReady).length,
    addresses: serviceAddresses(service),
    ports: (service ? readService(service, [])?.ports : undefined)?.map((p) => p.port) ?? [],
    problem,
  };
}

/**
 * computeGatewayStatuses() of the current objects, computed once until invalidate(): after a change both the
 * route status loop (gateway parents) and the gateway status loop read it, and neither recomputes it.
 */
export class GatewayStatusCache {
  readonly #objects: () => K8sObject[];
  #value: GatewayStatuses | undefined;

  constructor(objects: () => K8sObject[]) {
    this.#objects = objects;
  }

  get(): GatewayStatuses {
    this.#value ??= computeGatewayStatuses(this.#objects());
    return this.#value;
  }

  /** An input changed. */
  invalidate(): void {
    this.#value = undefined;
  }
}

export interface GatewayStatusLoopOptions {
  readonly writer: StatusWriter;
  readonly log: Logger;
  /** computeGatewayStatuses() of the current objects (the controller computes it once per change). */
  readonly statuses: () => GatewayStatuses;
  readonly gatewayClasses: () => K8sObject[];
  readonly gateways: () => K8sObject[];
  readonly pods: () => K8sObject[];
  readonly services: () => K8sObject[];
  /** Provisioning problems by `namespace/name`. */
  readonly problems: () => ReadonlyMap<string, string>;
  readonly active: () => boolean;
  readonly debounceMs?: number;
  /** Checks each Gateway's address before it is Programmed; absent: a ready pod and an address suffice. */
  readonly probes?: Pick<GatewayAddressProbes, 'check' | 'forget' | 'retain' | 'stop'>;
}

export class GatewayStatusLoop {
  readonly #o: GatewayStatusLoopOptions;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: GatewayStatusLoopOptions) {
    this.#o = options;
  }

  schedule(): void {
    if (!this.#o.active()) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.rebuild(), this.#o.debounceMs ?? 200);
  }

  /** Computes every status of ours and queues the writes that change something. */
  rebuild(): void {
    clearTimeout(this.#timer);
    if (!this.#o.active() || !this.#o.writer.active) return;
    let statuses: GatewayStatuses;
    try {
      statuses = this.#o.statuses();
    } catch (error) {
      this.#o.log.error('gateway status computation failed', { error: errorText(error) });
      return;
    }
    const writer = this.#o.writer;
    for (const gc of this.#o.gatewayClasses()) {
      const conditions = statuses.gatewayClasses.get(gc.metadata?.name ?? '');
      if (!conditions) continue;
      if (gatewayClassStatusUpdate(gc, conditions, conditionTime()) === undefined) continue;
      void writer.write(gc, (current) => gatewayClassStatusUpdate(current, conditions, conditionTime()));
    }
    const pods = this.#o.pods();
    const services = this.#o.services();
    const problems = this.#o.problems();
    const seen = new Set<string>();
    for (const gw of this.#o.gateways()) {
      const namespace = gw.metadata?.namespace ?? 'default';
      const name = gw.metadata?.name ?? '';
      const key = `${namespace}/${name}`;
      const computed = statuses.gateways.get(key);
      if (!computed) continue;
      seen.add(key);
      const state = this.#withAddressCheck(
        key,
        dataPlaneState(namespace, name, pods, services, problems.get(key)),
      );
      if (gatewayStatusUpdate(gw, computed, state, conditionTime()) === undefined) continue;
      void writer.write(gw, (current) => gatewayStatusUpdate(current, computed, state, conditionTime()));
    }
    this.#o.probes?.retain(seen);
  }

  /** Checks the address once the rest of Programmed holds, and forgets the check when it no longer does. */
  #withAddressCheck(key: string, state: DataPlaneState): DataPlaneState {
    const probes = this.#o.probes;
    if (!probes) return state;
    const first = state.addresses[0];
    if (state.problem || state.readyPods === 0 || !first) {
      probes.forget(key);
      return state;
    }
    return { ...state, address: probes.check(key, first.value, state.ports) };
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#o.probes?.stop();
  }
}
