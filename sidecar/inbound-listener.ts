import net from 'node:net';
import tls from 'node:tls';
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import type { Endpoint } from '../mesh-model/endpoints.ts';
import { MESH_ALPN, type MeshTlsCredentials } from '../pki/tls-options.ts';
import { authenticatePeer } from '../pki/peer-identity.ts';
import { originalDestination } from './original-dst.ts';
import { clientHelloAlpn, sniff } from './protocol-sniff.ts';
import { connectionInfo, setConnectionInfo, type ConnectionInfo } from './connection-info.ts';
import { createHttpServers, type HttpServers } from './http-servers.ts';
import { sendWithRetries, type ForwardDeps } from './http-forward.ts';
import { forwardHeaders, PEER_IDENTITY_HEADER } from './http-headers.ts';
import { forwardUpgrade } from './upgrade-forward.ts';
import { localReply, type DownstreamRequest, type DownstreamResponse } from './local-reply.ts';
import { pipeSockets } from './tcp-pipe.ts';
import { normalizeTarget } from '../mesh-model/request-target.ts';
import { capConnections, DEFAULT_LIMITS, type ProxyLimits } from './limits.ts';

export type MtlsMode = 'STRICT' | 'PERMISSIVE';

export interface InboundOptions {
  deps: ForwardDeps;
  credentials: () => MeshTlsCredentials | undefined;
  trustDomain: () => string | undefined;
  mode: MtlsMode;
  detectTimeoutMs: number;
  /** Where the app listens; the original destination port is kept. */
  appAddress: string;
  limits?: ProxyLimits;
}

/**
 * The inbound listener: connections to the pod, redirected here by iptables. mTLS from peer sidecars
 * (recognised by the mesh ALPN in the ClientHello) is terminated and the caller's SPIFFE ID verified;
 * the request reaches the app on loopback at its original port with the identity header set. Plaintext
 * (and a workload's own TLS) passes in PERMISSIVE mode and is refused in STRICT mode.
 */
export function createInboundListener(o: InboundOptions): {
  server: net.Server;
  http: HttpServers;
  tlsServer: tls.Server | undefined;
} {
  const appEndpoint = (info: ConnectionInfo): Endpoint => ({
    address: o.appAddress,
    port: info.port,
    ready: true,
    identity: undefined,
    pod: undefined,
  });

  const requestHeaders = (req: DownstreamRequest, info: ConnectionInfo) => {
    const headers = forwardHeaders(
      req.headers,
      req.httpVersionMajor !== 2 && req.headers.upgrade !== undefined,
    );
    if (info.peerIdentity) headers[PEER_IDENTITY_HEADER] = info.peerIdentity;
    else delete headers[PEER_IDENTITY_HEADER]; // never trust a caller-supplied identity
    return headers;
  };

  const handle = (req: DownstreamRequest, res: DownstreamResponse): void => {
    const info = connectionInfo(req.socket);
    if (!info) return localReply(req, res, 500, 'connection without destination');
    const started = performance.now();
    const h2 = req.httpVersionMajor === 2;
    // The app receives the normalised request, as it would from a client sidecar.
    const target = normalizeTarget(req.url || '/', o.deps.normalize);
    if (!target.ok) {
      o.deps.metrics.errors.inc(['inbound', 'bad_path']);
      return localReply(req, res, 400, `bad request: ${target.reason}`);
    }
    const authority =
      target.authority ??
      String((h2 ? req.headers[':authority'] : req.headers.host) ?? `${o.appAddress}:${info.port}`);
    const headers = requestHeaders(req, info);
    if (!h2) headers.host = authority;
    const label = `app:${info.port}`;
    const record = (code: number): void => o.deps.metrics.request('inbound', 'none', label, code, started);
    sendWithRetries({
      deps: o.deps,
      target: { endpoints: [appEndpoint(info)], backendLabel: label, plan: undefined },
      request: { method: req.method ?? 'GET', path: target.target, authority, headers, h2 },
      req,
      res,
      editResponse: () => undefined,
      finish: record,
      direction: 'inbound',
      fail: (code, message, cause) => {
        o.deps.metrics.errors.inc(['inbound', cause]);
        record(code);
        localReply(req, res, code, message);
      },
    });
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
  const limits = o.limits ?? DEFAULT_LIMITS;
  const servers = createHttpServers(handle, onUpgrade, limits, (kind) =>
    o.deps.metrics.timeouts.inc(['inbound', kind]),
  );

  const toApp = (socket: net.Socket, info: ConnectionInfo): void => {
    pipeSockets(
      socket,
      net.connect({ host: o.appAddress, port: info.port }),
      undefined,
      limits.tcpIdleTimeoutMs,
    );
  };

  const creds = o.credentials();
  const tlsServer = creds ? tls.createServer(creds.serverOptions()) : undefined;
  if (tlsServer && creds) {
    creds.track(tlsServer);
    tlsServer.on('tlsClientError', (_err, socket) => socket.destroy());
    tlsServer.on('secureConnection', (tlsSocket: tls.TLSSocket) => {
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
      if (tlsSocket.alpnProtocol === 'h2') servers.h2.emit('connection', tlsSocket);
      else if (tlsSocket.alpnProtocol === 'http/1.1') servers.http1.emit('connection', tlsSocket);
      else if (tlsSocket.alpnProtocol === MESH_ALPN) toApp(tlsSocket, info);
      else tlsSocket.destroy();
    });
  }

  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    socket.on('error', () => socket.destroy());
    const dst = originalDestination(socket);
    if (!dst) return void socket.destroy();
    const info: ConnectionInfo = { address: dst.address, port: dst.port, peerIdentity: undefined };
    setConnectionInfo(socket, info);
    void (async () => {
      const { protocol, head } = await sniff(socket, o.detectTimeoutMs);
      const mesh = protocol === 'tls' && clientHelloAlpn(head)?.includes(MESH_ALPN) === true;
      if (mesh && tlsServer) return void tlsServer.emit('connection', socket);
      if (o.mode === 'STRICT') {
        o.deps.metrics.errors.inc(['inbound', 'strict_refused']);
        return void socket.destroy();
      }
      o.deps.metrics.connections.inc(['inbound', protocol]);
      if (protocol === 'http1') {
        servers.http1.emit('connection', socket);
        return void socket.resume();
      }
      if (protocol === 'h2c') return void servers.h2.emit('connection', socket);
      toApp(socket, info);
    })();
  });
  capConnections(server, limits.maxDownstreamConnections, () =>
    o.deps.metrics.overflows.inc(['inbound', 'downstream_connections']),
  );
  return { server, http: servers, tlsServer };
}
