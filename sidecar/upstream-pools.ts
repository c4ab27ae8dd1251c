import type * as http from 'node:http';
import https from 'node:https';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { H1Pool } from './http1-client.ts';
import { DEFAULT_HEADER_LIMITS, type HeaderLimits } from './header-limits.ts';
import type { Endpoint } from '../mesh-model/endpoints.ts';
import type { ProxyLimits } from './limits.ts';
import { HeldRequests } from './held-requests.ts';
import {
  MESH_ALPN,
  MESH_ALPN_H2,
  MESH_ALPN_HTTP1,
  MESH_ALPN_TCP,
  type MeshTlsCredentials,
} from '../pki/tls-options.ts';
import { nodeHttp } from './node-http.ts';
import { isSelfConnected, selfConnectRefusal } from './tcp-self-connect.ts';
import { hostText } from '../lib/host-text.ts';

// One declared protocol per connection, which a current server sidecar selects (and then parses what is
// declared HTTP); the older names after it let a sidecar of the previous version answer during an upgrade.
export const ALPN_HTTP1 = [MESH_ALPN_HTTP1, 'http/1.1', MESH_ALPN];
export const ALPN_H2 = [MESH_ALPN_H2, 'h2', MESH_ALPN];
export const ALPN_TCP = [MESH_ALPN_TCP, MESH_ALPN];

/** The code of the error an upstream connection fails with when it is not up within the connect timeout. */
export const CONNECT_TIMEOUT = 'ERR_UPSTREAM_CONNECT_TIMEOUT';

/** How long an upstream connection may take to come up (ms; 0: no bound). */
interface ConnectBounds {
  /** From the SYN to the TCP connection established. */
  readonly tcp: number;
  /** From the SYN to the connection ready: established and, when meshed, its TLS handshake done. */
  readonly ready: number;
}

/**
 * Destroys `socket` with a CONNECT_TIMEOUT error unless its TCP connection is established within
 * `bounds.tcp` and it is ready (`event`: connected, or its TLS handshake done) within `bounds.ready`.
 * Without them, a connection to an address that drops SYNs (or no longer exists) waits for the kernel's
 * retries (about 2 min) and the request for the stream idle timeout.
 */
function boundConnect<S extends net.Socket>(
  socket: S,
  event: 'connect' | 'secureConnect',
  bounds: ConnectBounds,
): S {
  const giveUp = (what: string, ms: number) => (): void => {
    const err = new Error(`upstream ${what} not done within ${ms} ms`);
    socket.destroy(Object.assign(err, { code: CONNECT_TIMEOUT }));
  };
  const tcp = bounds.tcp > 0 ? setTimeout(giveUp('TCP connect', bounds.tcp), bounds.tcp) : undefined;
  const what = event === 'connect' ? 'connect' : 'connect and TLS handshake';
  const ready = bounds.ready > 0 ? setTimeout(giveUp(what, bounds.ready), bounds.ready) : undefined;
  if (tcp) socket.once('connect', () => clearTimeout(tcp));
  if (ready) socket.once(event, () => clearTimeout(ready));
  socket.once('close', () => {
    clearTimeout(tcp);
    clearTimeout(ready);
  });
  return socket;
}

/**
 * Keep-alive connection pools per endpoint: an http.Agent for HTTP/1.1 and one multiplexed session for
 * HTTP/2. Meshed endpoints (with an identity) get mTLS checked against that identity; others plaintext.
 * On certificate rotation the pools are replaced: new requests use new connections, open ones finish.
 */
export interface UpstreamPoolOptions {
  /** Source address to bind for plaintext connections to an address (undefined: the kernel chooses). */
  localAddress?: (address: string) => string | undefined;
  /** HTTP/1.1 connections per endpoint (0: no cap; default 64). */
  maxConnections?: number;
  /** Opaque TCP connections per endpoint (0: no cap; default: maxConnections). */
  maxTcpConnections?: number;
  /** HTTP/1.1 requests per endpoint that may wait for a capped connection (default 0: none wait). */
  maxQueued?: number;
  /**
   * Concurrent streams on an endpoint's HTTP/2 session (default 1000, what a server sidecar advertises);
   * up to maxQueued more wait in nghttp2's queue, then requests get a 503 as on HTTP/1.1.
   */
  maxStreams?: number;
  /** The bound on requests held across pools; pools given the same object share it (default: none). */
  held?: HeldRequests;
  /** How long an upstream may stay silent while a response is awaited or streamed (default 5 min). */
  streamIdleMs?: number;
  /**
   * A pooled connection with no request in flight is closed after this long (default 60 s; 0: the pool's own
   * keep-alive, i.e. the upstream's Keep-Alive hint capped at 10 min, and HTTP/2 sessions kept while open).
   */
  idleMs?: number;
  /** An upstream connection (TCP and, if meshed, its TLS handshake) not up within this fails (default 10 s). */
  connectTimeoutMs?: number;
  /** An upstream TCP connection not established within this fails (default 2 s; ADR 0020). */
  tcpConnectTimeoutMs?: number;
  /** Bytes an HTTP/1.1 response head may take (default: the request header limit's default). */
  maxResponseHeadBytes?: number;
}

/** The pool options a proxy's limits set (sidecar and gateway alike); response heads bounded as requests'. */
export function poolOptionsFor(limits: ProxyLimits, headerLimits?: HeaderLimits): UpstreamPoolOptions {
  return {
    ...(headerLimits ? { maxResponseHeadBytes: headerLimits.maxHeaderBytes } : {}),
    maxConnections: limits.maxUpstreamConnections,
    maxTcpConnections: limits.maxUpstreamTcpConnections,
    maxQueued: limits.maxUpstreamQueue,
    held: new HeldRequests(limits.maxHeldRequests),
    streamIdleMs: limits.streamIdleTimeoutMs,
    idleMs: limits.upstreamIdleTimeoutMs,
    connectTimeoutMs: limits.upstreamConnectTimeoutMs,
    tcpConnectTimeoutMs: limits.upstreamTcpConnectTimeoutMs,
  };
}

/** Without a Keep-Alive hint from the upstream, an idle HTTP/1.1 connection is kept at most this long: an
 * app server may close its end sooner without saying so (Node's default is 5 s). */
const UNHINTED_KEEP_ALIVE_MS = 4_000;
/** With --upstream-idle-timeout-ms 0, a Keep-Alive hint is followed up to this. */
const MAX_HINTED_KEEP_ALIVE_MS = 600_000;

/** Errors of connections that never became ready: no byte of any request went out on them. */
const connectFailures = new WeakSet<Error>();

/** Whether an upstream error is the failure to connect (TCP or handshake), not one of a connection. */
export function isConnectFailure(err: Error): boolean {
  return connectFailures.has(err);
}

const waitingForConnect = new WeakMap<http2.ClientHttp2Session, (() => void)[]>();

/**
 * Runs `fn` once `session` is connected, at once when it is. However many requests wait, the session gets
 * one 'connect' listener (one per request tripped MaxListenersExceededWarning under load); a session that
 * never connects drops them with it (its streams fail on their own).
 */
export function whenConnected(session: http2.ClientHttp2Session, fn: () => void): void {
  if (!session.connecting) return fn();
  const waiting = waitingForConnect.get(session);
  if (waiting) return void waiting.push(fn);
  const list = [fn];
  waitingForConnect.set(session, list);
  session.once('connect', () => {
    waitingForConnect.delete(session);
    for (const f of list) f();
  });
}

const keys = new WeakMap<Endpoint, string>();

function keyOf(ep: Endpoint): string {
  let key = keys.get(ep);
  if (key === undefined) keys.set(ep, (key = `${ep.address}:${ep.port}:${ep.identity ?? ''}`));
  return key;
}

export class UpstreamPools {
  readonly #agents = new Map<string, http.Agent>();
  readonly #pools = new Map<string, H1Pool>();
  readonly #sessions = new Map<string, http2.ClientHttp2Session>();
  readonly #tcpOpen = new Map<string, number>();
  readonly #streamsOpen = new WeakMap<http2.Http2Session, number>();
  /** Sessions asked to close while connecting: they close when their last stream does. */
  readonly #closeWhenDone = new WeakSet<http2.Http2Session>();
  /**
   * HTTP/1.1 requests a pool holds per endpoint (running or queued), counted by the forwarder. One whose
   * client went while it waited in the queue no longer counts.
   */
  readonly #outstanding = new Map<string, number>();
  readonly #credentials: () => MeshTlsCredentials | undefined;
  readonly #localAddress: (address: string) => string | undefined;
  readonly #maxConnections: number;
  readonly #maxTcpConnections: number;
  readonly #maxQueued: number;
  readonly #maxStreams: number;
  readonly #held: HeldRequests;
  readonly #streamIdleMs: number;
  readonly #idleMs: number;
  readonly #connectBounds: ConnectBounds;
  readonly #maxHeadBytes: number;
  /** Endpoints of the last view given to retain(). */
  #viewKeys = new Set<string>();
  /** The ready ones among them. */
  #readyKeys = new Set<string>();

  constructor(credentials: () => MeshTlsCredentials | undefined, options: UpstreamPoolOptions = {}) {
    this.#credentials = credentials;
    this.#localAddress = options.localAddress ?? (() => undefined);
    this.#maxConnections = options.maxConnections ?? 64;
    this.#maxTcpConnections = options.maxTcpConnections ?? this.#maxConnections;
    this.#maxQueued = options.maxQueued ?? 0;
    this.#maxStreams = options.maxStreams ?? 1000;
    this.#held = options.held ?? new HeldRequests(0);
    this.#streamIdleMs = options.streamIdleMs ?? 300_000;
    this.#idleMs = options.idleMs ?? 60_000;
    this.#connectBounds = {
      tcp: options.tcpConnectTimeoutMs ?? 2_000,
      ready: options.connectTimeoutMs ?? 10_000,
    };
    this.#maxHeadBytes = options.maxResponseHeadBytes ?? DEFAULT_HEADER_LIMITS.maxHeaderBytes;
  }

  /** A connection to `ep`: mTLS with `alpn` when it is meshed, else plain; bounded by the connect timeouts. */
  #connect(ep: Endpoint, tlsOptions: tls.ConnectionOptions | undefined): net.Socket {
    // No Nagle on mTLS either, as on plain connections and HTTP/2 sessions: a request head and body written
    // apart must not wait for the peer's delayed ACK.
    return tlsOptions
      ? boundConnect(tls.connect(tlsOptions).setNoDelay(true), 'secureConnect', this.#connectBounds)
      : boundConnect(this.#plainConnect(ep), 'connect', this.#connectBounds);
  }

  #plainConnect(ep: Endpoint): net.Socket {
    const localAddress = this.#localAddress(ep.address);
    return net.connect({
      host: ep.address,
      port: ep.port,
      noDelay: true,
      ...(localAddress ? { localAddress } : {}),
    });
  }

  /**
   * Whether a request to this endpoint can be taken: false when every one of the capped HTTP/1.1
   * connections is busy and the queue of requests waiting for one is full, or the opaque TCP cap is reached.
   * HTTP/2 multiplexes on one session per endpoint and is always allowed.
   */
  hasCapacity(ep: Endpoint, kind: 'http1' | 'h2' | 'tcp'): boolean {
    const key = keyOf(ep);
    if (kind === 'tcp') {
      const maxTcp = this.#maxTcpConnections;
      return maxTcp <= 0 || (this.#tcpOpen.get(key) ?? 0) < maxTcp;
    }
    const max = this.#maxConnections;
    if (max <= 0) return true;
    if (kind === 'h2') {
      // One session per endpoint: streams past the peer's concurrency wait in nghttp2, bounded here.
      const session = this.#sessions.get(key);
      return (
        session === undefined || (this.#streamsOpen.get(session) ?? 0) < this.#maxStreams + this.#maxQueued
      );
    }
    return (this.#outstanding.get(key) ?? 0) < max + this.#maxQueued;
  }

  /** Whether the proxy-wide bound on held requests lets one more HTTP request in (`held` option). */
  mayHoldMore(): boolean {
    return this.#held.hasRoom();
  }

  /**
   * An HTTP/1.1 request handed to the endpoint's pool (+1), or one that no longer takes a place (-1):
   * the pool let go of it, or its client went while it was still queued.
   */
  countOutstanding(ep: Endpoint, delta: 1 | -1): void {
    const key = keyOf(ep);
    const n = (this.#outstanding.get(key) ?? 0) + delta;
    this.#held.add(delta);
    if (n > 0) this.#outstanding.set(key, n);
    else this.#outstanding.delete(key);
  }

  #tlsOptions(ep: Endpoint, alpn: string[]): tls.ConnectionOptions {
    const creds = this.#credentials();
    if (!creds) throw Object.assign(new Error('no workload certificate loaded'), { code: 'ENOIDENTITY' });
    return creds.clientOptions({ expectedSpiffeId: ep.identity!, alpnProtocols: alpn });
  }

  /** The HTTP/1.1 agent for an endpoint. */
  agent(ep: Endpoint): http.Agent {
    const key = keyOf(ep);
    let agent = this.#agents.get(key);
    if (!agent) {
      const localAddress = ep.identity ? undefined : this.#localAddress(ep.address);
      const common = {
        keepAlive: true,
        scheduling: 'lifo' as const,
        keepAliveMsecs: 1000,
        timeout: 60_000,
        ...(localAddress ? { localAddress } : {}),
        ...(this.#maxConnections > 0 ? { maxSockets: this.#maxConnections } : {}),
      };
      agent = ep.identity
        ? new https.Agent({ ...common, ...this.#tlsOptions(ep, ALPN_HTTP1) })
        : new nodeHttp.Agent(common);
      this.#agents.set(key, agent);
    }
    return agent;
  }

  /** The HTTP/1.1 connection pool for an endpoint (http1-client.ts; mTLS with the mesh ALPN when meshed). */
  pool(ep: Endpoint): H1Pool {
    const key = keyOf(ep);
    let pool = this.#pools.get(key);
    if (!pool) {
      const tlsOptions = ep.identity
        ? { host: ep.address, port: ep.port, ...this.#tlsOptions(ep, ALPN_HTTP1) }
        : undefined;
      const idle = this.#idleMs;
      pool = new H1Pool({
        host: `${hostText(ep.address)}:${ep.port}`,
        maxConnections: this.#maxConnections,
        // Idle connections close after min(the upstream's Keep-Alive hint, idle): a peer sidecar hints its
        // own 1 h idle timeout, and pools that never shrink hold a descriptor on both sides per connection.
        keepAliveMs: idle > 0 ? Math.min(UNHINTED_KEEP_ALIVE_MS, idle) : UNHINTED_KEEP_ALIVE_MS,
        keepAliveMaxMs: idle > 0 ? idle : MAX_HINTED_KEEP_ALIVE_MS,
        streamIdleMs: this.#streamIdleMs,
        maxHeadBytes: this.#maxHeadBytes,
        connect: (callback) => {
          const socket = this.#connect(ep, tlsOptions);
          const ready = tlsOptions ? 'secureConnect' : 'connect';
          const onError = (err: Error): void => {
            connectFailures.add(err);
            callback(err, null);
          };
          socket.once('error', onError);
          socket.once(ready, () => {
            if (isSelfConnected(socket)) {
              const refused = selfConnectRefusal(socket);
              socket.destroy();
              return onError(refused);
            }
            socket.off('error', onError);
            callback(null, socket);
          });
        },
      });
      this.#pools.set(key, pool);
    }
    return pool;
  }

  /** A live HTTP/2 session to an endpoint (h2 over mTLS, or h2c). */
  session(ep: Endpoint): http2.ClientHttp2Session {
    const key = keyOf(ep);
    const existing = this.#sessions.get(key);
    if (existing && !existing.closed && !existing.destroyed) return existing;
    const authority = `${ep.identity ? 'https' : 'http'}://${hostText(ep.address)}:${ep.port}`;
    // Our own TLS connection: http2.connect would replace the ALPN list, dropping the mesh marker.
    const tlsOptions = ep.identity
      ? { host: ep.address, port: ep.port, ...this.#tlsOptions(ep, ALPN_H2) }
      : undefined;
    const session = http2.connect(authority, {
      peerMaxConcurrentStreams: this.#maxStreams,
      createConnection: () => this.#connect(ep, tlsOptions),
    });
    const forget = (): void => {
      if (this.#sessions.get(key) === session) this.#sessions.delete(key);
    };
    session.on('close', forget);
    session.on('goaway', forget);
    session.on('error', forget);
    // Idle: no frame either way for that long (a stream still open finishes; the next request opens anew).
    if (this.#idleMs > 0) session.setTimeout(this.#idleMs, () => session.close());
    session.unref();
    this.#sessions.set(key, session);
    return session;
  }

  /**
   * A stream opened on `session`: counted for hasCapacity until its caller calls streamClosed (from the
   * 'close' listener it has anyway: no listener of our own per stream).
   */
  streamOpened(session: http2.ClientHttp2Session): void {
    this.#streamsOpen.set(session, (this.#streamsOpen.get(session) ?? 0) + 1);
    this.#held.add(1);
  }

  streamClosed(session: http2.ClientHttp2Session): void {
    const n = (this.#streamsOpen.get(session) ?? 1) - 1;
    this.#streamsOpen.set(session, n);
    this.#held.add(-1);
    if (n === 0 && this.#closeWhenDone.has(session)) session.close();
  }

  /**
   * Closes a session without failing its streams. One still connecting closes once the streams waiting for
   * it have ended: Node fails them if it is closed before it is up (ERR_HTTP2_GOAWAY_SESSION), and a GOAWAY
   * sent as it comes up refuses them, each then a connect failure of a healthy endpoint (ADR 0020).
   */
  #closeSession(session: http2.ClientHttp2Session): void {
    if (!session.connecting) {
      session.close();
      return;
    }
    this.#closeWhenDone.add(session);
    whenConnected(session, () => {
      if ((this.#streamsOpen.get(session) ?? 0) === 0) session.close();
    });
  }

  /** A raw connection for opaque TCP: mTLS with the mesh ALPN to meshed endpoints, plain otherwise. */
  connectTcp(ep: Endpoint): net.Socket {
    const socket = this.#connect(
      ep,
      ep.identity ? { host: ep.address, port: ep.port, ...this.#tlsOptions(ep, ALPN_TCP) } : undefined,
    );
    const key = keyOf(ep);
    this.#tcpOpen.set(key, (this.#tcpOpen.get(key) ?? 0) + 1);
    socket.once('close', () => {
      const n = (this.#tcpOpen.get(key) ?? 1) - 1;
      if (n > 0) this.#tcpOpen.set(key, n);
      else this.#tcpOpen.delete(key);
    });
    return socket;
  }

  /**
   * A new view: pools of endpoints that were in the previous view and are not in this one close, and so do
   * those of endpoints that were ready and no longer are (terminating): idle connections now, busy ones
   * after their request, so nothing in flight is cut. A terminating endpoint asked again (every endpoint is
   * terminating) gets a new pool. Addresses dialled directly (not Services) are left to the idle timeout.
   */
  retain(endpoints: Iterable<Endpoint>): void {
    const keys = new Set<string>();
    const ready = new Set<string>();
    for (const ep of endpoints) {
      keys.add(keyOf(ep));
      if (ep.ready) ready.add(keyOf(ep));
    }
    for (const key of this.#viewKeys) if (!keys.has(key)) this.#drain(key);
    for (const key of this.#readyKeys) if (keys.has(key) && !ready.has(key)) this.#drain(key);
    this.#viewKeys = keys;
    this.#readyKeys = ready;
  }

  /** Closes an endpoint's pools without cutting what is in flight (HTTP/2: GOAWAY, open streams finish). */
  #drain(key: string): void {
    const pool = this.#pools.get(key);
    pool?.close();
    this.#pools.delete(key);
    const session = this.#sessions.get(key);
    if (session) this.#closeSession(session);
    this.#sessions.delete(key);
    const agent = this.#agents.get(key);
    if (agent) closeAgent(agent);
    this.#agents.delete(key);
  }

  /** Connections to each endpoint, for tests and the admin view: HTTP/1.1 pooled + HTTP/2 sessions. */
  connectionCount(): number {
    let n = 0;
    for (const p of this.#pools.values()) n += p.connected;
    for (const s of this.#sessions.values()) if (!s.closed && !s.destroyed) n++;
    return n;
  }

  /**
   * Requests held now: HTTP/1.1 ones handed to a pool (running or queued) and open HTTP/2 streams, by every
   * pool set that shares this one's `held` count (a sidecar's two).
   */
  inFlight(): number {
    return this.#held.count;
  }

  /**
   * Rotation: new requests open new connections with the new certificate; idle connections close now,
   * busy ones after their request (HTTP/2 sessions get GOAWAY, which lets open streams finish).
   */
  reset(): void {
    for (const a of this.#agents.values()) closeAgent(a);
    this.#agents.clear();
    for (const p of this.#pools.values()) p.close();
    this.#pools.clear();
    for (const s of this.#sessions.values()) this.#closeSession(s);
    this.#sessions.clear();
  }

  /** Shutdown: close everything. */
  destroy(): void {
    for (const a of this.#agents.values()) a.destroy();
    for (const p of this.#pools.values()) p.destroy();
    this.reset();
  }
}

/** Idle sockets close now; busy ones are not kept alive after their request. */
function closeAgent(a: http.Agent): void {
  for (const list of Object.values(a.freeSockets)) for (const socket of list ?? []) socket.destroy();
  (a as unknown as { options: { keepAlive: boolean } }).options.keepAlive = false;
}
