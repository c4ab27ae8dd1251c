import net, { isIPv4, isIPv6 } from 'node:net';
import tls from 'node:tls';
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import type { Endpoint } from '../mesh-model/endpoints.ts';
import { declaredProtocol, isMeshAlpn, type MeshTlsCredentials } from '../pki/tls-options.ts';
import { inboundPortProtocol } from '../mesh-model/port-protocol.ts';
import type { ProxyView } from '../mesh-model/proxy-view.ts';
import { authenticatePeer } from '../pki/peer-identity.ts';
import { originalDestination } from './original-dst.ts';
import { clientHelloAlpn, sniff } from './protocol-sniff.ts';
import {
  connectionInfo,
  requestConnectionInfo,
  setConnectionInfo,
  type ConnectionInfo,
} from './connection-info.ts';
import { createHttpServers, type HttpServers } from './http-servers.ts';
import type { HeaderLimits } from './header-limits.ts';
import {
  sendWithRetries,
  type ForwardDeps,
  type SendOptions,
  type Target,
  type UpstreamRequest,
} from './http-forward.ts';
import type { RequestSpan } from './tracing/request-tracing.ts';
import {
  forwardHeaders,
  NOT_PROCESSED_HEADER,
  PEER_IDENTITY_HEADER,
  RESET_BY_APP_HEADER,
} from './http-headers.ts';
import { forwardUpgrade } from './upgrade-forward.ts';
import {
  declaredBodyBytes,
  localReply,
  type DownstreamRequest,
  type DownstreamResponse,
} from './local-reply.ts';
import { pipeSockets } from './tcp-pipe.ts';
import { isSelfLoop, normalizeAddress, podAddressSet } from './self-loop.ts';
import { relayUnlessHttp } from './opaque-relay.ts';
import { normalizeTarget } from '../mesh-model/request-target.ts';
import { capConnections, DEFAULT_LIMITS, type ProxyLimits } from './limits.ts';
import type { RequestFacts, RequestSeriesGroup } from './metrics.ts';
import { refuseSelfConnect } from './tcp-self-connect.ts';
import { hostText } from '../lib/host-text.ts';

export type MtlsMode = 'STRICT' | 'PERMISSIVE';

export interface InboundOptions {
  deps: ForwardDeps;
  credentials: () => MeshTlsCredentials | undefined;
  trustDomain: () => string | undefined;
  mode: MtlsMode;
  detectTimeoutMs: number;
  /**
   * Where the app listens; the original destination port is kept. Undefined (the default): the address the
   * connection was sent to, i.e. the pod IP, so ports the app binds to loopback only stay private.
   */
  appAddress: string | undefined;
  /** Local ports of the proxy itself: a connection addressed to them would loop. */
  ownPorts: ReadonlySet<number>;
  /** The current configuration: which of the pod's ports Services declare HTTP. */
  view: () => ProxyView | undefined;
  headerLimits?: HeaderLimits;
  limits?: ProxyLimits;
}

/**
 * The source address the proxy binds when it hands a connection to the app at the pod IP. Without it, the
 * proxy's own connection to the pod IP would be taken for a Service hairpin and redirected back to the inbound
 * port; init-iptables.ts lets connections from these addresses through. IPv6 uses ::1 because, unlike
 * 127.0.0.6, ::6 would first have to be added to lo (and the kernel accepts ::1 as source on lo).
 */
export function handOffSource(address: string): string | undefined {
  const a = normalizeAddress(address);
  if (isIPv4(a)) return a.startsWith('127.') ? undefined : '127.0.0.6';
  if (isIPv6(a)) return a === '::1' ? undefined : '::1';
  return undefined;
}

/**
 * The inbound listener: connections to the pod, redirected here by iptables. mTLS from peer sidecars
 * (recognised by the mesh ALPN in the ClientHello) is terminated and the caller's SPIFFE ID verified;
 * the request reaches the app at the pod IP (see handOffSource) and its original port with the identity header set. Plaintext
 * (and a workload's own TLS) passes in PERMISSIVE mode and is refused in STRICT mode.
 */
/**
 * Hands a connection that offered the mesh ALPN to the mesh TLS server. The listener's sockets are
 * half-open (allowHalfOpen), and the TLS socket Node wraps around one inherits that: a peer that ends
 * (FIN) before the handshake completes then leaves the server with no 'close' and so no tlsClientError,
 * holding the descriptor and the TLS state until the handshake timeout (a loaded fuzz run left 1,600 such
 * connections in CLOSE-WAIT). The handshake therefore runs without half-open; the secureConnection
 * handler turns it back on for the HTTP servers.
 */
export function meshTlsHandover(tlsServer: tls.Server, socket: net.Socket): void {
  socket.allowHalfOpen = false;
  tlsServer.emit('connection', socket);
}

export function createInboundListener(o: InboundOptions): {
  server: net.Server;
  http: HttpServers;
  tlsServer: tls.Server | undefined;
} {
  const podAddresses = podAddressSet();
  const limits = o.limits ?? DEFAULT_LIMITS;
  const appAddress = (info: ConnectionInfo): string => o.appAddress ?? normalizeAddress(info.address);
  // One per connection, not per request: the pools and the load balancer key their state by the object.
  const appEndpoints = new WeakMap<ConnectionInfo, Endpoint>();
  const appEndpoint = (info: ConnectionInfo): Endpoint => {
    let ep = appEndpoints.get(info);
    if (!ep) {
      ep = {
        address: appAddress(info),
        port: info.port,
        ready: true,
        serving: true,
        terminating: false,
        identity: undefined,
        pod: undefined,
      };
      appEndpoints.set(info, ep);
    }
    return ep;
  };

  const appEndpointLists = new WeakMap<Endpoint, readonly Endpoint[]>();
  const appEndpointList = (info: ConnectionInfo): readonly Endpoint[] => {
    const ep = appEndpoint(info);
    let list = appEndpointLists.get(ep);
    if (!list) appEndpointLists.set(ep, (list = [ep]));
    return list;
  };

  // The app port's label and metric series, once per connection (not built and looked up per request).
  const appSeries = new WeakMap<ConnectionInfo, { label: string; series: RequestSeriesGroup }>();
  const appSeriesOf = (info: ConnectionInfo): { label: string; series: RequestSeriesGroup } => {
    let s = appSeries.get(info);
    if (!s) {
      const label = `app:${info.port}`;
      s = { label, series: o.deps.metrics.requestSeries('inbound', 'none', label) };
      appSeries.set(info, s);
    }
    return s;
  };

  const requestHeaders = (req: DownstreamRequest, info: ConnectionInfo) => {
    const headers = forwardHeaders(
      req.headers,
      req.httpVersionMajor !== 2 && req.headers.upgrade !== undefined,
    );
    if (info.peerIdentity) headers[PEER_IDENTITY_HEADER] = info.peerIdentity;
    else delete headers[PEER_IDENTITY_HEADER]; // never trust a caller-supplied identity
    return headers;
  };

  /** A request the proxy answers itself before reaching the app: a SERVER span with the cause, and the metrics. */
  const localFailure = (
    req: DownstreamRequest,
    res: DownstreamResponse,
    started: number,
    info: ConnectionInfo | undefined,
    code: number,
    cause: string,
    message: string,
  ): void => {
    const peer = {
      address: info?.address ?? req.socket.localAddress ?? '',
      port: info?.port ?? req.socket.localPort ?? 0,
      peerIdentity: info?.peerIdentity,
    };
    const span = o.deps.tracing?.startInbound(req, {}, peer);
    span?.end(code, cause);
    o.deps.metrics.errors.inc(['inbound', cause]);
    const responseBytes = localReply(req, res, code, message);
    o.deps.metrics.request('inbound', 'none', info ? `app:${info.port}` : 'none', code, started, req.method, {
      requestBytes: declaredBodyBytes(req),
      responseBytes,
      peerIdentity: info?.peerIdentity,
    });
  };

  const handle = (req: DownstreamRequest, res: DownstreamResponse): void => {
    const started = performance.now();
    const info = requestConnectionInfo(req);
    if (!info)
      return localFailure(
        req,
        res,
        started,
        undefined,
        500,
        'no_destination',
        'connection without destination',
      );
    const h2 = req.httpVersionMajor === 2;
    // The app receives the normalised request, as it would from a client sidecar.
    const target = normalizeTarget(req.url || '/', o.deps.normalize);
    if (!target.ok)
      return localFailure(req, res, started, info, 400, 'bad_path', `bad request: ${target.reason}`);
    const authority =
      target.authority ??
      String(
        (h2 ? req.headers[':authority'] : req.headers.host) ?? `${hostText(appAddress(info))}:${info.port}`,
      );
    const headers = requestHeaders(req, info);
    if (!h2) headers.host = authority;
    const { label, series } = appSeriesOf(info);
    const span = o.deps.tracing?.startInbound(req, headers, info);
    sendWithRetries(
      new InboundSend(
        o.deps,
        { endpoints: appEndpointList(info), backendLabel: label, plan: undefined },
        { method: req.method ?? 'GET', path: target.target, authority, headers, h2 },
        req,
        res,
        span,
        series,
        started,
        info.peerIdentity,
      ),
    );
  };
  const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    const info = connectionInfo(req.socket);
    const target = normalizeTarget(req.url ?? '/', o.deps.normalize);
    if (!info || !target.ok) return void socket.destroy();
    const headers = requestHeaders(req, info);
    headers.host = target.authority ?? req.headers.host;
    forwardUpgrade(
      o.deps,
      [appEndpoint(info)],
      { method: req.method ?? 'GET', path: target.target, authority: '', headers, h2: false },
      socket,
      head,
      (code) => {
        o.deps.metrics.requests.inc(['inbound', 'none', `app:${info.port}`, String(code)]);
      },
    );
  };
  const servers = createHttpServers(handle, onUpgrade, {
    limits,
    ...(o.headerLimits ? { headerLimits: o.headerLimits } : {}),
    onTimeout: (kind) => o.deps.metrics.timeouts.inc(['inbound', kind]),
  });

  /** `watch`: the client has sent nothing yet; an HTTP request before the app speaks is still parsed. */
  const toApp = (socket: net.Socket, info: ConnectionInfo, watch = false): void => {
    const host = appAddress(info);
    const localAddress = o.appAddress === undefined ? handOffSource(host) : undefined;
    const app = refuseSelfConnect(
      net.connect({ host, port: info.port, ...(localAddress ? { localAddress } : {}) }),
    );
    const relayed = (): void =>
      o.deps.metrics.tcp.track('inbound', `app:${info.port}`, socket, info.peerIdentity);
    if (watch)
      relayUnlessHttp(socket, app, (protocol) => toHttp(socket, protocol), limits.tcpIdleTimeoutMs, relayed);
    else {
      relayed();
      pipeSockets(socket, app, undefined, limits.tcpIdleTimeoutMs);
    }
  };

  // Opaque bytes reach the app as they are, with no identity header added; on a port a Service declares
  // HTTP they are parsed as HTTP anyway (garbage gets 400), and on an undeclared port an HTTP request is
  // parsed too, so a forged header cannot ride along. Only a port declared opaque is relayed unseen.
  const opaqueOrHttp = (socket: net.Socket, info: ConnectionInfo): void => {
    const declared = inboundPortProtocol(o.view(), info.address, info.port);
    if (declared !== 'http') return toApp(socket, info, declared === 'detect');
    void sniff(socket, o.detectTimeoutMs, { httpPort: true }).then(({ protocol }) =>
      toHttp(socket, protocol),
    );
  };
  const toHttp = (socket: net.Socket, protocol: string): void => {
    if (protocol === 'h2c') return void servers.h2.emit('connection', socket);
    servers.http1.emit('connection', socket);
    socket.resume();
  };

  const creds = o.credentials();
  // A peer sidecar's handshake takes milliseconds: one not done within the header timeout is not coming
  // (Node's default would hold the connection and its TLS state for 2 minutes).
  const tlsServer = creds
    ? tls.createServer({ ...creds.serverOptions(), handshakeTimeout: limits.headerTimeoutMs || 120_000 })
    : undefined;
  if (tlsServer && creds) {
    creds.track(tlsServer);
    tlsServer.on('tlsClientError', (_err, socket) => socket.destroy());
    tlsServer.on('secureConnection', (tlsSocket: tls.TLSSocket) => {
      // Handshake done: half-open again, as every listener hands sockets on (see meshTlsHandover).
      tlsSocket.allowHalfOpen = true;
      tlsSocket.on('error', () => tlsSocket.destroy());
      const raw = connectionInfo((tlsSocket as unknown as { _parent?: net.Socket })._parent);
      const td = o.trustDomain();
      let peer;
      try {
        if (!raw || !td) throw new Error('no destination');
        peer = authenticatePeer(tlsSocket, td);
      } catch {
        return void tlsSocket.destroy();
      }
      const info: ConnectionInfo = { ...raw, peerIdentity: peer.spiffeId };
      setConnectionInfo(tlsSocket, info);
      o.deps.metrics.connections.inc(['inbound', `mtls-${tlsSocket.alpnProtocol || 'none'}`]);
      // The client sidecar declared the protocol; a declared HTTP stream is parsed, never relayed raw.
      const declared = declaredProtocol(tlsSocket.alpnProtocol);
      if (declared === 'h2') servers.h2.emit('connection', tlsSocket);
      else if (declared === 'http1') servers.http1.emit('connection', tlsSocket);
      else if (declared === 'tcp') opaqueOrHttp(tlsSocket, info);
      else tlsSocket.destroy();
    });
  }

  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    socket.on('error', () => socket.destroy());
    const dst = originalDestination(socket);
    if (!dst) return void socket.destroy();
    if (isSelfLoop(dst, socket.localAddress, { ownPorts: o.ownPorts })) {
      // e.g. another pod dialling <podIP>:15006 or :15001: handing it to the "app" at that port is the proxy.
      o.deps.metrics.errors.inc(['inbound', 'self_loop']);
      return void socket.destroy();
    }
    if (o.appAddress === undefined && !podAddresses.has(dst.address)) {
      // Sent through this pod to some other address: the sidecar hands traffic only to its own app.
      o.deps.metrics.errors.inc(['inbound', 'not_for_pod']);
      return void socket.destroy();
    }
    const info: ConnectionInfo = { address: dst.address, port: dst.port, peerIdentity: undefined };
    setConnectionInfo(socket, info);
    const declared = inboundPortProtocol(o.view(), dst.address, dst.port);
    const httpPort = declared === 'http';
    void (async () => {
      const { protocol, head } = await sniff(socket, o.detectTimeoutMs, { httpPort });
      const mesh = protocol === 'tls' && clientHelloAlpn(head)?.some(isMeshAlpn) === true;
      if (mesh && tlsServer) return meshTlsHandover(tlsServer, socket);
      if (o.mode === 'STRICT') {
        o.deps.metrics.errors.inc(['inbound', 'strict_refused']);
        return void socket.destroy();
      }
      o.deps.metrics.connections.inc(['inbound', protocol]);
      // On a port declared HTTP even the app's own TLS is parsed (and refused with 400): never raw.
      if (protocol === 'http1' || protocol === 'h2c' || httpPort) return toHttp(socket, protocol);
      toApp(socket, info, head.length === 0 && declared === 'detect');
    })();
  });
  capConnections(server, limits.maxDownstreamConnections, () =>
    o.deps.metrics.overflows.inc(['inbound', 'downstream_connections']),
  );
  return { server, http: servers, tlsServer };
}

/**
 * The SendOptions of an inbound request to its app: its outcome recorded by methods of one object, where
 * the options, three closures and their context were made per request.
 */
class InboundSend implements SendOptions {
  readonly direction = 'inbound';
  readonly deps: ForwardDeps;
  readonly target: Pick<Target, 'endpoints' | 'backendLabel' | 'plan'>;
  readonly request: UpstreamRequest;
  readonly req: DownstreamRequest;
  readonly res: DownstreamResponse;
  readonly span: RequestSpan | undefined;
  readonly #series: RequestSeriesGroup;
  readonly #started: number;
  readonly #peerIdentity: string | undefined;

  constructor(
    deps: ForwardDeps,
    target: Pick<Target, 'endpoints' | 'backendLabel' | 'plan'>,
    request: UpstreamRequest,
    req: DownstreamRequest,
    res: DownstreamResponse,
    span: RequestSpan | undefined,
    series: RequestSeriesGroup,
    started: number,
    peerIdentity: string | undefined,
  ) {
    this.deps = deps;
    this.target = target;
    this.request = request;
    this.req = req;
    this.res = res;
    this.span = span;
    this.#series = series;
    this.#started = started;
    this.#peerIdentity = peerIdentity;
  }

  editResponse(): void {}

  finish(code: number, facts: RequestFacts): void {
    this.span?.end(code);
    this.deps.metrics.recordIn(this.#series, code, this.#started, this.req.method, {
      requestBytes: facts.requestBytes,
      responseBytes: facts.responseBytes,
      peerIdentity: this.#peerIdentity,
    });
  }

  fail(code: number, message: string, cause: string, notProcessed?: boolean, resetByApp?: boolean): void {
    this.span?.end(code, cause);
    this.deps.metrics.errors.inc(['inbound', cause]);
    const extra: Record<string, string> = notProcessed
      ? { [NOT_PROCESSED_HEADER]: '1' }
      : resetByApp
        ? { [RESET_BY_APP_HEADER]: '1' }
        : {};
    const responseBytes = localReply(this.req, this.res, code, message, extra);
    this.deps.metrics.recordIn(this.#series, code, this.#started, this.req.method, {
      requestBytes: declaredBodyBytes(this.req),
      responseBytes,
      peerIdentity: this.#peerIdentity,
    });
  }
}
