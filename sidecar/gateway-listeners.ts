// A gateway proxy's listeners: one per port of its GatewayView. HTTP ports take HTTP/1.1 and h2c
// (prior knowledge); HTTPS ports terminate TLS with the certificate SNI selects (gateway-tls.ts) and take
// HTTP/1.1 or h2 by ALPN. Requests go through planGatewayRequest (the mesh's request plan) and the
// sidecar's executor (http-forward.ts), with the sidecar's parsers, limits and timeouts (http-servers.ts).
import type * as http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import {
  planGatewayRequest,
  selectListener,
  type GatewayListenerView,
  type GatewayView,
} from '../mesh-model/gateway-view.ts';
import { objectKey } from '../mesh-model/k8s-objects.ts';
import { parseRequestTarget } from '../mesh-model/request-target.ts';
import type { GatewayConfig } from './gateway-config.ts';
import type { GatewayCertificates } from './gateway-tls.ts';
import { createHttpServers, type HttpServers } from './http-servers.ts';
import type { HeaderLimits } from './header-limits.ts';
import { executeOutbound, outboundPlanOf, type ForwardDeps, type OutboundPlan } from './http-forward.ts';
import { forwardHeaders } from './http-headers.ts';
import { publicMessage, rawReply, type DownstreamRequest, type DownstreamResponse } from './local-reply.ts';
import { sniff } from './protocol-sniff.ts';
import { forwardUpgrade } from './upgrade-forward.ts';
import { capConnections, DEFAULT_LIMITS, type ProxyLimits } from './limits.ts';

export interface GatewayListenerOptions {
  readonly deps: ForwardDeps;
  readonly port: number;
  readonly protocol: 'HTTP' | 'HTTPS';
  readonly config: () => GatewayConfig | undefined;
  readonly certificates: GatewayCertificates;
  readonly detectTimeoutMs: number;
  readonly headerLimits?: HeaderLimits;
  readonly limits?: ProxyLimits;
}

export interface GatewayListener {
  readonly server: net.Server;
  readonly http: HttpServers;
  /** Takes new certificates: the context for clients that send no SNI follows them. */
  refresh(): void;
}

const CHOICE = Symbol('sluice.gateway-listener');
const NO_ENDPOINTS = { endpoints: new Map() } as const;

/** Plans one request arriving on a gateway port: the authority picks the listener and the route. */
export function planGatewayForward(
  deps: Pick<ForwardDeps, 'random' | 'normalize'>,
  config: GatewayConfig,
  port: number,
  scheme: 'http' | 'https',
  req: DownstreamRequest,
): OutboundPlan {
  const view = config.view!;
  const url = req.url || '/';
  const h2 = req.httpVersionMajor === 2;
  const received = parseRequestTarget(url);
  if (!received.ok) {
    return {
      kind: 'reply',
      code: 400,
      message: `bad request: ${received.reason}`,
      cause: 'bad_path',
      routeLabel: 'none',
    };
  }
  const authority = received.authority ?? String((h2 ? req.headers[':authority'] : req.headers.host) ?? '');
  // Client headers never carry an identity past the gateway: forwardHeaders drops x-sluice-peer-identity.
  // An HTTP/1.1 Upgrade (WebSocket) keeps its upgrade headers.
  const headers = forwardHeaders(req.headers, !h2 && req.headers.upgrade !== undefined);
  const p = planGatewayRequest(
    view,
    port,
    {
      method: req.method ?? 'GET',
      path: received.path,
      query: received.query,
      ...(received.authority === undefined ? { target: url } : {}),
      scheme,
      authority,
      headers:
        received.authority === undefined || h2 ? req.headers : { ...req.headers, host: received.authority },
      normalize: deps.normalize,
    },
    deps.random ?? Math.random,
  );
  return outboundPlanOf(view, p, headers, p.kind === 'forward' ? upstreamH2(view, p.backend, req) : h2);
}

const H2_APP_PROTOCOLS = new Set(['kubernetes.io/h2c', 'h2c', 'grpc', 'http2']);

/**
 * Whether the backend gets HTTP/2: unlike a sidecar (whose app speaks what its client speaks), a gateway's
 * clients and backends choose their protocols independently. A Service port declared h2c or gRPC (by
 * appProtocol, or a port name h2c-*, grpc-*) gets h2c; one declared http gets HTTP/1.1; an undeclared one
 * gets HTTP/2 for gRPC requests (which need it) and HTTP/1.1 otherwise.
 */
export function upstreamH2(
  view: GatewayView,
  backend: { namespace: string; name: string; port: number },
  req: DownstreamRequest,
): boolean {
  const port = view.model.services
    .get(objectKey(backend.namespace, backend.name))
    ?.ports.find((p) => p.port === backend.port);
  const declared = port?.appProtocol?.toLowerCase();
  if (declared !== undefined) {
    if (H2_APP_PROTOCOLS.has(declared)) return true;
    if (declared === 'http' || declared === 'kubernetes.io/http' || declared === 'http/1.1') return false;
  }
  const prefix = (port?.name ?? '').toLowerCase().split('-', 1)[0];
  if (prefix === 'h2c' || prefix === 'grpc') return true;
  if (prefix === 'http') return false;
  return req.headers['content-type']?.startsWith('application/grpc') === true;
}

/** The host part of an authority, lower-cased, without port or IPv6 brackets. */
function hostOf(authority: string): string {
  const a = authority.toLowerCase();
  if (a.startsWith('[')) return a.slice(1, a.indexOf(']'));
  const colon = a.lastIndexOf(':');
  return colon === -1 ? a : a.slice(0, colon);
}

export function createGatewayListener(o: GatewayListenerOptions): GatewayListener {
  const limits = o.limits ?? DEFAULT_LIMITS;
  const scheme = o.protocol === 'HTTPS' ? 'https' : 'http';
  /**
   * A request must stay on the listener its TLS handshake chose (RFC 9110 §7.4 misdirected request):
   * otherwise SNI for one host could carry requests for another, bypassing its certificate and client
   * validation.
   */
  const misdirected = (req: DownstreamRequest, view: GatewayView): boolean => {
    if (scheme !== 'https') return false;
    const chosen = (req.socket as unknown as Record<symbol, GatewayListenerView | undefined>)[CHOICE];
    const authority = String(
      (req.httpVersionMajor === 2 ? req.headers[':authority'] : req.headers.host) ?? '',
    );
    const byHost = selectListener(view, o.port, hostOf(authority));
    return chosen !== undefined && byHost !== undefined && chosen.name !== byHost.name;
  };
  const MISDIRECTED = 'misdirected request: the host does not match the TLS server name';
  const NOT_READY = 'gateway not ready: no configuration yet';
  // Answered by the gateway itself, like a request no route matches: a SERVER span and the metrics.
  const notReady: OutboundPlan = {
    kind: 'reply',
    code: 503,
    message: NOT_READY,
    cause: 'not_ready',
    routeLabel: 'none',
  };
  const misdirectedReply: OutboundPlan = {
    kind: 'reply',
    code: 421,
    message: MISDIRECTED,
    cause: 'misdirected',
    routeLabel: 'none',
  };
  const traceInfo = { port: o.port, scheme } as const;
  const handle = (req: DownstreamRequest, res: DownstreamResponse): void => {
    const started = performance.now();
    const config = o.config();
    const view = config?.view;
    const plan =
      !config || !view
        ? notReady
        : misdirected(req, view)
          ? misdirectedReply
          : planGatewayForward(o.deps, config, o.port, scheme, req);
    const span = o.deps.tracing?.startGateway(
      req,
      traceInfo,
      plan.kind === 'forward' ? plan.request : undefined,
    );
    executeOutbound(o.deps, 'gateway', view ?? NO_ENDPOINTS, plan, req, res, started, span);
  };
  // HTTP/1.1 Upgrade (WebSocket): planned like any request, then the two connections are joined.
  const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    const config = o.config();
    const raw = (status: number, message: string, location?: string): void =>
      rawReply(socket, status, message, location);
    if (!config?.view) {
      o.deps.metrics.errors.inc(['gateway', 'not_ready']);
      return raw(503, NOT_READY);
    }
    if (misdirected(req, config.view)) {
      o.deps.metrics.errors.inc(['gateway', 'misdirected']);
      return raw(421, MISDIRECTED);
    }
    const plan = planGatewayForward(o.deps, config, o.port, scheme, req);
    if (plan.kind === 'reply') return raw(plan.code, publicMessage(plan.message), plan.location);
    forwardUpgrade(o.deps, plan.target.endpoints, plan.request, socket, head, (code) => {
      o.deps.metrics.requests.inc([
        'gateway',
        plan.target.routeLabel,
        plan.target.backendLabel,
        String(code),
      ]);
    });
  };
  const servers = createHttpServers(handle, onUpgrade, {
    limits,
    ...(o.headerLimits ? { headerLimits: o.headerLimits } : {}),
    onTimeout: (kind) => o.deps.metrics.timeouts.inc(['gateway', kind]),
  });
  const toHttp = (socket: net.Socket, h2: boolean): void => {
    if (h2) return void servers.h2.emit('connection', socket);
    servers.http1.emit('connection', socket);
    socket.resume();
  };

  let tlsServer: tls.Server | undefined;
  if (o.protocol === 'HTTPS') {
    tlsServer = tls.createServer({
      ALPNProtocols: ['h2', 'http/1.1'],
      minVersion: 'TLSv1.2',
      // Client certificates are asked for on every HTTPS port; listeners that validate them check the
      // result after the handshake (below), the others ignore what they get.
      requestCert: true,
      rejectUnauthorized: false,
      SNICallback: (serverName, callback) => {
        const picked = o.certificates.select(o.port, serverName || undefined);
        if (!picked) return callback(new Error(`no certificate for ${serverName || '(no SNI)'}`), undefined);
        callback(null, picked.context);
      },
      handshakeTimeout: limits.headerTimeoutMs || 120_000,
    });
    tlsServer.on('tlsClientError', (_err, socket) => {
      o.deps.metrics.errors.inc(['gateway', 'tls_handshake']);
      socket.destroy();
    });
    tlsServer.on('secureConnection', (socket: tls.TLSSocket) => {
      socket.on('error', () => socket.destroy());
      const serverName = (socket as tls.TLSSocket & { servername?: string | false }).servername;
      const listener = o.certificates.select(o.port, serverName || undefined)?.listener;
      const validation = listener?.clientValidation;
      if (validation && validation.mode !== 'AllowInsecureFallback' && !socket.authorized) {
        o.deps.metrics.errors.inc(['gateway', 'client_certificate']);
        return void socket.destroy();
      }
      (socket as unknown as Record<symbol, GatewayListenerView | undefined>)[CHOICE] = listener;
      o.deps.metrics.connections.inc(['gateway', `tls-${socket.alpnProtocol || 'none'}`]);
      toHttp(socket, socket.alpnProtocol === 'h2');
    });
  }

  const server = net.createServer({ allowHalfOpen: false, noDelay: true }, (socket) => {
    socket.on('error', () => socket.destroy());
    if (tlsServer) return void tlsServer.emit('connection', socket);
    void (async () => {
      const { protocol } = await sniff(socket, o.detectTimeoutMs, { httpPort: true });
      o.deps.metrics.connections.inc(['gateway', protocol]);
      toHttp(socket, protocol === 'h2c');
    })();
  });
  capConnections(server, limits.maxDownstreamConnections, () =>
    o.deps.metrics.overflows.inc(['gateway', 'downstream_connections']),
  );
  // Clients that send no SNI (an IP address in the URL) never reach SNICallback: the server's own context
  // answers them, so it is kept on the port's default choice.
  let defaultPem: unknown;
  const refresh = (): void => {
    const options = tlsServer ? o.certificates.select(o.port, undefined)?.options : undefined;
    if (!tlsServer || !options || options === defaultPem) return;
    defaultPem = options;
    tlsServer.setSecureContext({ ...options, ALPNProtocols: ['h2', 'http/1.1'] } as tls.SecureContextOptions);
  };
  refresh();
  return { server, http: servers, refresh };
}
