// Route status, recomputed from the informers' caches: after a debounced model rebuild, only routes whose
// merged status differs from what the cache holds are queued (a pure comparison, no API call); on becoming
// leader and on every status resync all routes are queued, and the StatusWriter turns the ones already
// right into no requests. Status changes come back through the route informer, which makes the comparison
// settle.
import type { Logger } from '../lib/json-log.ts';
import { isObject, type K8sObject } from '../mesh-model/k8s-objects.ts';
import type { MeshModel } from '../mesh-model/model.ts';
import { buildMeshModel } from '../mesh-model/translate.ts';
import type { RouteParentStatus as GatewayRouteParentStatus } from '../mesh-model/gateway-status.ts';
import { GATEWAY_CONTROLLER_NAME } from '../mesh-model/gateway-view.ts';
import {
  capText,
  conditionTime,
  desiredParentStatuses,
  mergeRouteStatus,
  readParentStatuses,
  type RouteObject,
  type RouteParentStatus,
} from './route-status.ts';
import type { RouteStatus, StatusWriter } from './status-writer.ts';
import { errorText } from '../lib/error-text.ts';

/**
 * The status to write for a route given the model (the mesh's `sluice.dev/mesh` entries) and the gateway
 * controller's entries for the route's Gateway parents (computeGatewayStatuses, without times), or
 * undefined when the route's status is already right. Both controllers' entries and everyone else's are
 * kept: each merge replaces only its own controller's entries.
 */
export function routeStatusUpdate(
  current: RouteObject,
  model: MeshModel,
  now: string,
  gatewayParents?: readonly GatewayRouteParentStatus[],
): RouteStatus | undefined {
  const desired = desiredParentStatuses(undefined, current, model, now);
  const before = readParentStatuses(current);
  const mesh = mergeRouteStatus(before, desired);
  let parents = mesh;
  if (gatewayParents !== undefined) {
    const g = current.metadata?.generation;
    const generation = Number.isSafeInteger(g) && g! >= 0 ? g : undefined;
    const timed: RouteParentStatus[] = gatewayParents.map((p) => ({
      parentRef: { ...p.parentRef },
      controllerName: p.controllerName,
      conditions: p.conditions.map((c) => ({
        ...c,
        message: capText(c.message),
        lastTransitionTime: now,
        ...(generation === undefined ? {} : { observedGeneration: generation }),
      })),
    }));
    parents = mergeRouteStatus(mesh ?? before, timed, GATEWAY_CONTROLLER_NAME) ?? mesh;
  }
  if (!parents) return undefined;
  const status = isObject(current.status) ? current.status : {};
  return { ...status, parents };
}

export interface RouteStatusLoopOptions {
  readonly writer: StatusWriter;
  readonly log: Logger;
  /** The model's inputs, from the informer caches. */
  readonly services: () => K8sObject[];
  readonly routes: () => K8sObject[];
  /** False until the informers synced, and once stopping: no rebuilds then. */
  readonly active: () => boolean;
  /** Quiet time before the model is rebuilt after a change (100 ms); at most 10 x that after the first. */
  readonly debounceMs?: number;
  /**
   * The gateway controller's entries per route (`Kind/namespace/name`), computed once per rebuild; routes
   * missing from the map get none (stale ones are removed). Absent: the gateway controller is off.
   */
  readonly gatewayParents?: () => ReadonlyMap<string, readonly GatewayRouteParentStatus[]>;
  /** Counts rebuilds and queued routes (for /metrics). */
  readonly counters: { modelRebuilds: number; statusEnqueued: number };
}

function routeName(route: K8sObject): string {
  return `${route.kind ?? ''} ${route.metadata?.namespace ?? ''}/${route.metadata?.name ?? ''}`;
}

export class RouteStatusLoop {
  readonly #o: RouteStatusLoopOptions;
  #model: MeshModel = buildMeshModel([]);
  #rebuildTimer: NodeJS.Timeout | undefined;
  #firstChangeAt: number | undefined;

  constructor(options: RouteStatusLoopOptions) {
    this.#o = options;
  }

  /** A model input changed: rebuild after the debounce. */
  schedule(): void {
    if (!this.#o.active()) return;
    const debounce = this.#o.debounceMs ?? 100;
    const now = performance.now();
    this.#firstChangeAt ??= now;
    clearTimeout(this.#rebuildTimer);
    const delay = Math.max(0, Math.min(debounce, this.#firstChangeAt + 10 * debounce - now));
    this.#rebuildTimer = setTimeout(() => this.rebuild(), delay);
  }

  /** Rebuilds the model; queues status for the routes that need it, or for all of them (`all` says why). */
  rebuild(all?: string): void {
    clearTimeout(this.#rebuildTimer);
    this.#rebuildTimer = undefined;
    this.#firstChangeAt = undefined;
    if (!this.#o.active()) return;
    const routes = this.#o.routes();
    try {
      this.#model = buildMeshModel([...this.#o.services(), ...routes]);
    } catch (error) {
      this.#o.log.error('mesh model rebuild failed', { error: errorText(error) });
      return;
    }
    this.#o.counters.modelRebuilds++;
    const writer = this.#o.writer;
    if (!writer.active) return;
    const now = conditionTime();
    let gateways: ReadonlyMap<string, readonly GatewayRouteParentStatus[]> | undefined;
    try {
      gateways = this.#o.gatewayParents?.();
    } catch (error) {
      this.#o.log.error('gateway route status computation failed', { error: errorText(error) });
      return;
    }
    const gatewayParentsOf = (route: K8sObject): readonly GatewayRouteParentStatus[] | undefined =>
      gateways &&
      (gateways.get(
        `${route.kind ?? ''}/${route.metadata?.namespace ?? 'default'}/${route.metadata?.name ?? ''}`,
      ) ??
        []);
    let queued = 0;
    for (const route of routes) {
      const gatewayParents = gatewayParentsOf(route);
      if (all === undefined) {
        let update: RouteStatus | undefined;
        try {
          update = routeStatusUpdate(route, this.#model, now, gatewayParents);
        } catch (error) {
          this.#o.log.error('route status computation failed', {
            route: routeName(route),
            error: errorText(error),
          });
          continue;
        }
        if (update === undefined) continue;
      }
      queued++;
      this.#o.counters.statusEnqueued++;
      void writer.write(route, (current) =>
        routeStatusUpdate(current, this.#model, conditionTime(), gatewayParents),
      );
    }
    if (all !== undefined)
      this.#o.log.info('route status check of all routes', { reason: all, routes: queued });
  }

  stop(): void {
    clearTimeout(this.#rebuildTimer);
  }
}
