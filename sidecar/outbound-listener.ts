import net from 'node:net';
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import type { ProxyView } from '../mesh-model/proxy-view.ts';
import { destinationKey, endpointsFor } from '../mesh-model/proxy-view.ts';
import type { Endpoint } from '../mesh-model/endpoints.ts';
import { originalDestination } from './original-dst.ts';
import { CONNECT_TIMEOUT } from './upstream-pools.ts';
import { sniff } from './protocol-sniff.ts';
import { inboundPortProtocol, servicePortProtocol } from '../mesh-model/port-protocol.ts';
import {
  connectionInfo,
  requestConnectionInfo,
  setConnectionInfo,
  type ConnectionInfo,
} from './connection-info.ts';
import type { PortRouting } from '../mesh-model/port-routing.ts';
import { createHttpServers, type HttpServers } from './http-servers.ts';
import type { HeaderLimits } from './header-limits.ts';
import {
  executeOutbound,
  forwardOutbound,
  planOutbound,
  type ForwardDeps,
  type OutboundPlan,
} from './http-forward.ts';
import { forwardUpgrade } from './upgrade-forward.ts';
import type { DownstreamRequest, DownstreamResponse } from './local-reply.ts';
import { pipeSockets } from './tcp-pipe.ts';
import { isSelfLoop } from './self-loop.ts';
import { relayUnlessHttp } from './opaque-relay.ts';
import { capConnections, DEFAULT_LIMITS, type ProxyLimits } from './limits.ts';

const NO_ENDPOINTS = { endpoints: new Map() } as const;

export interface OutboundOptions {
  deps: ForwardDeps;
  view: () => ProxyView | undefined;
  detectTimeoutMs: number;
  /** Local ports of the proxy itself: a connection addressed to them would loop. */
  ownPorts: ReadonlySet<number>;
  headerLimits?: HeaderLimits;
  limits?: ProxyLimits;
}

/**
 * The outbound listener: connections the pod's apps open, redirected here by iptables. Reads the original
 * destination, detects the protocol and either routes HTTP by destination Service or relays opaque bytes.
 */
export function createOutboundListener(o: OutboundOptions): { server: net.Server; http: HttpServers } {
  // Answered by the proxy itself, like a request no route matches: a CLIENT span and the metrics.
  const notReady: OutboundPlan = {
    kind: 'reply',
    code: 503,
    message: 'proxy not ready: no configuration yet',
    cause: 'not_ready',
    routeLabel: 'none',
  };
  // The routing of a connection's destination, looked up once per connection and view (a keep-alive
  // connection's requests all go to one destination; a new view is looked up again).
  const routings = new WeakMap<ConnectionInfo, { view: ProxyView; routing: PortRouting | undefined }>();
  const routingOf = (view: ProxyView, info: ConnectionInfo): PortRouting | undefined => {
    let r = routings.get(info);
    if (r?.view !== view) {
      r = { view, routing: view.byDestination.get(destinationKey(info.address, info.port)) };
      routings.set(info, r);
    }
    return r.routing;
  };
  const handle = (req: DownstreamRequest, res: DownstreamResponse): void => {
    const info = requestConnectionInfo(req);
    const view = o.view();
    if (!info || !view) {
      const started = performance.now();
      const authority = String(req.headers.host ?? req.headers[':authority'] ?? '');
      const span = o.deps.tracing?.startOutbound(req, undefined, authority);
      return executeOutbound(o.deps, 'outbound', NO_ENDPOINTS, notReady, req, res, started, span);
    }
    forwardOutbound(o.deps, view, routingOf(view, info), info, req, res);
  };
  const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    const info = connectionInfo(req.socket);
    const view = o.view();
    if (!info || !view) return void socket.destroy();
    const plan = planOutbound(
      o.deps,
      view,
      view.byDestination.get(destinationKey(info.address, info.port)),
      info,
      req,
    );
    if (plan.kind === 'reply') {
      const location = plan.location ? `location: ${plan.location}\r\n` : '';
      return void socket.end(
        `HTTP/1.1 ${plan.code} x\r\n${location}content-length: 0\r\nconnection: close\r\n\r\n`,
      );
    }
    forwardUpgrade(o.deps, plan.target.endpoints, plan.request, socket, head, (code) => {
      o.deps.metrics.requests.inc([
        'outbound',
        plan.target.routeLabel,
        plan.target.backendLabel,
        String(code),
      ]);
    });
  };
  const limits = o.limits ?? DEFAULT_LIMITS;
  const servers = createHttpServers(handle, onUpgrade, {
    limits,
    ...(o.headerLimits ? { headerLimits: o.headerLimits } : {}),
    onTimeout: (kind) => o.deps.metrics.timeouts.inc(['outbound', kind]),
  });

  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    socket.on('error', () => socket.destroy());
    const dst = originalDestination(socket);
    if (!dst || isSelfLoop(dst, socket.localAddress, { ownPorts: o.ownPorts })) {
      // Addressed to the proxy itself (dialled directly, or redirected from one of its own ports): forwarding
      // it would come straight back here.
      o.deps.metrics.errors.inc(['outbound', 'self_loop']);
      return void socket.destroy();
    }
    setConnectionInfo(socket, { address: dst.address, port: dst.port, peerIdentity: undefined });
    const view = o.view();
    const routing = view?.byDestination.get(destinationKey(dst.address, dst.port));
    const port = routing?.service.ports.find((p) => p.port === routing.port);
    // Ports declared opaque skip detection (server-first protocols would wait for it); ports declared HTTP
    // (a Service's, or a pod's own port dialled directly) are always parsed as HTTP, never relayed raw.
    const declared = port
      ? servicePortProtocol(port)
      : routing
        ? 'detect'
        : inboundPortProtocol(view, dst.address, dst.port);
    void (async () => {
      const { protocol, head } =
        declared === 'opaque'
          ? { protocol: 'tcp', head: Buffer.alloc(0) }
          : await sniff(socket, o.detectTimeoutMs, { httpPort: declared === 'http' });
      o.deps.metrics.connections.inc(['outbound', protocol]);
      const toHttp = (p: string): void => {
        if (p === 'h2c') return void servers.h2.emit('connection', socket);
        servers.http1.emit('connection', socket);
        socket.resume();
      };
      if (protocol === 'h2c' || protocol === 'http1' || declared === 'http') return toHttp(protocol);
      // Opaque TCP (including the app's own TLS): to a Service's endpoint (mTLS if meshed) or as addressed.
      const endpoints: readonly Endpoint[] =
        routing && view
          ? endpointsFor(view, routing.service.namespace, routing.service.name, routing.port)
          : [];
      const ep: Endpoint | undefined = routing
        ? o.deps.lb.pick(endpoints)
        : {
            address: dst.address,
            port: dst.port,
            ready: true,
            serving: true,
            terminating: false,
            identity: undefined,
            pod: undefined,
          };
      if (!ep) return void socket.destroy();
      if (!o.deps.pools.hasCapacity(ep, 'tcp')) {
        o.deps.metrics.overflows.inc(['outbound', 'upstream_connections']);
        return void socket.destroy();
      }
      const upstream = o.deps.pools.connectTcp(ep);
      const backend = routing
        ? `${routing.service.namespace}/${routing.service.name}:${routing.port}`
        : 'passthrough';
      // The endpoint's identity: the mTLS handshake checks the upstream's certificate against it.
      const relayed = (): void => o.deps.metrics.tcp.track('outbound', backend, socket, ep.identity);
      upstream.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === CONNECT_TIMEOUT) o.deps.metrics.errors.inc(['outbound', 'connect_timeout']);
      });
      // A client that was silent so far may still send an HTTP request before the server speaks: parsed.
      if (head.length === 0 && declared === 'detect')
        relayUnlessHttp(socket, upstream, toHttp, limits.tcpIdleTimeoutMs, relayed);
      else {
        relayed();
        pipeSockets(socket, upstream, undefined, limits.tcpIdleTimeoutMs);
      }
    })();
  });
  capConnections(server, limits.maxDownstreamConnections, () =>
    o.deps.metrics.overflows.inc(['outbound', 'downstream_connections']),
  );
  return { server, http: servers };
}
