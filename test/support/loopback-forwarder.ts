// The sidecar's outbound HTTP path on loopback, without capture: the sidecar's HTTP servers on 127.0.0.1,
// each request handed to forwardOutbound with the destination the test names (what the original
// destination would be under iptables).
import type { AddressInfo } from 'node:net';
import type { LogFields, Logger } from '../../lib/json-log.ts';
import type { ProxyView } from '../../mesh-model/proxy-view.ts';
import { buildProxyView, destinationKey } from '../../mesh-model/proxy-view.ts';
import { forwardOutbound, type ForwardDeps } from '../../sidecar/http-forward.ts';
import { createHttpServers, type HttpServers } from '../../sidecar/http-servers.ts';
import type { DownstreamRequest } from '../../sidecar/local-reply.ts';
import { serviceWithEndpoints, type PodRef } from './mesh-manifests.ts';

/** An un-meshed pod on 127.0.0.1: endpoints for upstreams that listen on loopback. */
export function loopbackPod(name: string, namespace: string): PodRef {
  return { name, namespace, ip: '127.0.0.1', serviceAccount: 'default', meshed: false };
}

export interface Destination {
  readonly address: string;
  readonly port: number;
}

/** The address of the Service loopbackServiceView makes. */
export const LOOPBACK_SERVICE: Destination = { address: '10.96.0.1', port: 80 };

/** The view of one Service, app/svc at LOOPBACK_SERVICE, whose one endpoint is 127.0.0.1:`appPort`. */
export function loopbackServiceView(appPort: number): ProxyView {
  return buildProxyView(
    serviceWithEndpoints(
      'app',
      'svc',
      LOOPBACK_SERVICE.address,
      [[LOOPBACK_SERVICE.port, appPort]],
      [loopbackPod('a', 'app')],
    ),
    'app',
    'cluster.local',
  );
}

/** A logger that keeps its warnings, for tests that check what the sidecar logged. */
export function warningLog(): { log: Logger; warnings: { msg: string; fields: LogFields | undefined }[] } {
  const warnings: { msg: string; fields: LogFields | undefined }[] = [];
  const log: Logger = {
    info: () => undefined,
    warn: (msg, fields) => warnings.push({ msg, fields }),
    error: () => undefined,
  };
  return { log, warnings };
}

export interface LoopbackForwarder {
  readonly servers: HttpServers;
  /** The HTTP/1.1 server's port. */
  readonly port: number;
  /** The h2c server's port, when asked for. */
  readonly h2Port: number | undefined;
  /** Destroys the upstream pools and closes the servers (and their connections). */
  close(): void;
}

/**
 * Starts the servers. `destination`: one for every request, or one per request (e.g. the Service its Host
 * names). `h2`: listen with the h2c server too.
 */
export async function startLoopbackForwarder(
  deps: ForwardDeps,
  view: ProxyView,
  destination: Destination | ((req: DownstreamRequest) => Destination),
  options: { h2?: boolean } = {},
): Promise<LoopbackForwarder> {
  const servers = createHttpServers((req, res) => {
    const to = typeof destination === 'function' ? destination(req) : destination;
    forwardOutbound(deps, view, view.byDestination.get(destinationKey(to.address, to.port)), to, req, res);
  });
  await new Promise<void>((r) => servers.http1.listen(0, '127.0.0.1', r));
  if (options.h2) await new Promise<void>((r) => servers.h2.listen(0, '127.0.0.1', r));
  return {
    servers,
    port: (servers.http1.address() as AddressInfo).port,
    h2Port: options.h2 ? (servers.h2.address() as AddressInfo).port : undefined,
    close: () => {
      deps.pools.destroy();
      servers.http1.closeAllConnections();
      servers.http1.close();
      if (options.h2) {
        servers.drain();
        servers.h2.close();
      }
    },
  };
}
