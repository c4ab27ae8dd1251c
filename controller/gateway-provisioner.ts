// Applies the data plane of every Gateway of our class (gateway-provisioning.ts) with server-side apply
// under the field manager `sluice-gateway-controller`: fields we stop setting are removed by the API server,
// fields others set (an HPA's replicas, a LoadBalancer's status) are left alone. Only the leader applies.
// Removal is the garbage collector's: every object is owned by its Gateway.
import type { KubeApi } from '../lib/kube/kube-api.ts';
import { describeApiError } from '../lib/kube/kube-api.ts';
import { isObject, type K8sObject } from '../mesh-model/k8s-objects.ts';
import { GATEWAY_CONTROLLER_NAME } from '../mesh-model/gateway-view.ts';
import { gatewayInfrastructure, type ProvisioningSettings } from './gateway-provisioning.ts';

export const GATEWAY_FIELD_MANAGER = 'sluice-gateway-controller';
export const APPLY_PATCH = 'application/apply-patch+yaml';

const PATHS: Record<string, (ns: string, name: string) => string> = {
  ServiceAccount: (ns, name) => `/api/v1/namespaces/${ns}/serviceaccounts/${name}`,
  Deployment: (ns, name) => `/apis/apps/v1/namespaces/${ns}/deployments/${name}`,
  Service: (ns, name) => `/api/v1/namespaces/${ns}/services/${name}`,
};

export function applyPath(obj: K8sObject): string {
  const path = PATHS[obj.kind ?? ''];
  if (!path) throw new Error(`cannot apply a ${obj.kind ?? 'kindless object'}`);
  return path(
    encodeURIComponent(obj.metadata?.namespace ?? 'default'),
    encodeURIComponent(obj.metadata?.name ?? ''),
  );
}

/** Gateways whose class names our controller. */
export function ourGateways(gateways: readonly K8sObject[], classes: readonly K8sObject[]): K8sObject[] {
  const ours = new Set(
    classes
      .filter((c) => isObject(c.spec) && c.spec.controllerName === GATEWAY_CONTROLLER_NAME)
      .map((c) => c.metadata?.name),
  );
  return gateways.filter((g) => isObject(g.spec) && ours.has(g.spec.gatewayClassName as string));
}

export interface GatewayProvisionerOptions {
  readonly api: KubeApi;
  readonly settings: ProvisioningSettings;
  readonly gateways: () => K8sObject[];
  readonly classes: () => K8sObject[];
  readonly log: (message: string, fields?: Record<string, unknown>) => void;
  /** Quiet time after a change before applying (200 ms). */
  readonly debounceMs?: number;
}

/** Read through a call, since TypeScript narrows `signal.aborted` as if it could not change. */
function aborted(signal: AbortSignal): boolean {
  return signal.aborted;
}

export class GatewayProvisioner {
  readonly #o: GatewayProvisionerOptions;
  /** What was last applied successfully, by path: an unchanged object is not sent again. */
  readonly #applied = new Map<string, string>();
  /** Why a Gateway could not be provisioned, by `namespace/name` (for its status). */
  readonly problems = new Map<string, string>();
  #timer: NodeJS.Timeout | undefined;
  #signal: AbortSignal | undefined;
  #running: Promise<void> | undefined;
  #again = false;

  constructor(options: GatewayProvisionerOptions) {
    this.#o = options;
  }

  /** Becomes active (leader): applies everything once, then on every schedule(). */
  start(signal: AbortSignal): void {
    this.#signal = signal;
    this.#applied.clear();
    this.schedule();
  }

  stop(): void {
    this.#signal = undefined;
    clearTimeout(this.#timer);
  }

  schedule(): void {
    if (!this.#signal || this.#signal.aborted) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.run(), this.#o.debounceMs ?? 200);
  }

  /** One pass over all Gateways; a pass asked for while one runs follows it. */
  run(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      for (let again = true; again; again = this.#takeAgain()) await this.#pass();
    })().finally(() => (this.#running = undefined));
    return this.#running;
  }

  #takeAgain(): boolean {
    const again = this.#again;
    this.#again = false;
    return again;
  }

  async #pass(): Promise<void> {
    const signal = this.#signal;
    if (!signal || aborted(signal)) return;
    const seen = new Set<string>();
    for (const gateway of ourGateways(this.#o.gateways(), this.#o.classes())) {
      const key = `${gateway.metadata?.namespace ?? 'default'}/${gateway.metadata?.name ?? ''}`;
      seen.add(key);
      const objects = gatewayInfrastructure(gateway, this.#o.settings);
      if (!Array.isArray(objects)) {
        this.problems.set(key, objects.error);
        continue;
      }
      this.problems.delete(key);
      for (const obj of objects) {
        if (aborted(signal)) return;
        const path = applyPath(obj);
        const body = JSON.stringify(obj);
        if (this.#applied.get(path) === body) continue;
        try {
          await this.#o.api.request('PATCH', path, {
            body: obj,
            contentType: APPLY_PATCH,
            query: { fieldManager: GATEWAY_FIELD_MANAGER, force: true },
            signal,
            timeoutMs: 10_000,
          });
          this.#applied.set(path, body);
          this.#o.log('gateway object applied', { gateway: key, kind: obj.kind, name: obj.metadata?.name });
        } catch (error) {
          if (aborted(signal)) return;
          this.problems.set(key, `${obj.kind ?? ''} ${obj.metadata?.name ?? ''}: ${describeApiError(error)}`);
          this.#o.log('gateway object not applied', {
            gateway: key,
            kind: obj.kind,
            error: describeApiError(error),
          });
        }
      }
    }
    for (const key of this.problems.keys()) if (!seen.has(key)) this.problems.delete(key);
  }
}
