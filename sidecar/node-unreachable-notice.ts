import { nodeUnreachableServices, type Endpoint } from '../mesh-model/endpoints.ts';
import type { Logger } from '../lib/json-log.ts';

/**
 * Logs, once per change of config, which Service ports have no ready endpoint and send to pods whose kubelet
 * last found them ready (their node is NotReady: ADR 0021), and when none does any more.
 */
export class NodeUnreachableNotice {
  readonly #log: Logger;
  #last: readonly string[] = [];

  constructor(log: Logger) {
    this.#log = log;
  }

  update(endpoints: ReadonlyMap<string, readonly Endpoint[]>): void {
    const services = nodeUnreachableServices(endpoints);
    if (services.join(',') === this.#last.join(',')) return;
    if (services.length > 0)
      this.#log.warn('no ready endpoint: sending to pods their kubelet last found ready (node not ready)', {
        services,
      });
    else this.#log.info('no longer sending to pods their kubelet last found ready', { services: this.#last });
    this.#last = services;
  }
}
