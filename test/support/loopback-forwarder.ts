// The sidecar's outbound HTTP path on loopback, without capture: the sidecar's HTTP servers on 127.0.0.1,
// each request handed to forwardOutbound with the destination the test names (what the original
// destination would be under iptables).
import type { AddressInfo } from 'node:net';
import type { ProxyView } from '../../mesh-model/proxy-view.ts';
import { destinationKey } from '../../mesh-model/proxy-view.ts';
import { forwardOutbound, type ForwardDeps } from '../../sidecar/http-forward.ts';
import { createHttpServers, type HttpServers } from '../../sidecar/http-servers.ts';
import type { DownstreamRequest } from '../../sidecar/local-reply.ts';
import type { PodRef } from './mesh-manifests.ts';

/** An un-meshed pod on 127.0.0.1: endpoints for upstreams that listen on loopback. */
export function loopbackPod(name: string, namespace: string): PodRef {
  return { name, namespace, ip: '127.0.0.1', serviceAccount: 'default', meshed: false };
}

export interface Destination {
  readonly address: string;
  readonly port: number;
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
