import type net from 'node:net';

/**
 * Per-connection timeouts and connection caps of the sidecar (defaults and reasons in docs/security.md).
 * Timeouts in milliseconds; 0 turns one off.
 */
export interface ProxyLimits {
  /** From a request's first byte to the end of its headers (HTTP/2: from a new session to its first stream). */
  readonly headerTimeoutMs: number;
  /** No byte in either direction while a request body is still being received. */
  readonly requestBodyIdleTimeoutMs: number;
  /** No byte in either direction on an HTTP/1.1 connection with a request in flight, or on an HTTP/2 stream. */
  readonly streamIdleTimeoutMs: number;
  /** An HTTP connection with no request in flight (HTTP/1.1 keep-alive, HTTP/2 session without streams). */
  readonly idleTimeoutMs: number;
  /** A pooled upstream connection (HTTP/1.1 or an HTTP/2 session) with no request in flight is closed. */
  readonly upstreamIdleTimeoutMs: number;
  /**
   * An upstream connection (TCP connect, and the mesh mTLS handshake when there is one) not ready within
   * this is given up: the request tries another endpoint, else gets 503 (`cause="connect_timeout"`).
   */
  readonly upstreamConnectTimeoutMs: number;
  /**
   * An upstream TCP connection not established within this (the SYN unanswered: a pod address that is gone,
   * a black hole) is given up the same way, without waiting for the whole bound above (ADR 0020).
   */
  readonly upstreamTcpConnectTimeoutMs: number;
  /** No byte in either direction on an opaque TCP connection. */
  readonly tcpIdleTimeoutMs: number;
  /** Open downstream connections per listener; more are closed at accept. */
  readonly maxDownstreamConnections: number;
  /**
   * HTTP/1.1 connections per upstream endpoint; a request that would need another waits in the queue. Low
   * by default (ADR 0016): a backlog waits for the open connections instead of becoming mTLS handshakes.
   */
  readonly maxUpstreamConnections: number;
  /** Opaque TCP connections per upstream endpoint (each is one of the app's own); more are closed. */
  readonly maxUpstreamTcpConnections: number;
  /**
   * HTTP/1.1 requests per endpoint waiting for one of its capped connections; one more gets a 503 at once
   * (`cause="upstream_overflow"`): a backlog waits for the open connections instead of opening new ones.
   * By default as many as the downstream cap lets in: an app's own connections already bound its HTTP/1.1
   * requests, and with 1,024 half the requests of 2,048 client connections got a 503 that its upstream would
   * have answered in a fraction of a second (ADR 0023).
   */
  readonly maxUpstreamQueue: number;
  /**
   * Requests the upstream pools hold at once across all endpoints (HTTP/1.1 running or queued, HTTP/2
   * streams open or waiting); one more gets a 503 at once (`cause="upstream_overflow"`). About 16–26 KB each:
   * 4,096 is ~100 MB over idle, under the proxy container's 256 MiB (ADR 0023).
   */
  readonly maxHeldRequests: number;
}

const DOWNSTREAM_CONNECTIONS = 10_000;

export const DEFAULT_LIMITS: ProxyLimits = {
  headerTimeoutMs: 10_000,
  requestBodyIdleTimeoutMs: 60_000,
  streamIdleTimeoutMs: 5 * 60_000,
  idleTimeoutMs: 60 * 60_000,
  upstreamIdleTimeoutMs: 60_000,
  upstreamConnectTimeoutMs: 10_000,
  upstreamTcpConnectTimeoutMs: 2_000,
  tcpIdleTimeoutMs: 60 * 60_000,
  maxDownstreamConnections: DOWNSTREAM_CONNECTIONS,
  maxUpstreamConnections: 64,
  maxUpstreamTcpConnections: 1024,
  maxUpstreamQueue: DOWNSTREAM_CONNECTIONS,
  maxHeldRequests: 4096,
};

/**
 * Caps the open connections of a listener: net.Server closes the ones past `max` at accept (before any
 * byte is read) and emits 'drop', which is counted.
 */
export function capConnections(server: net.Server, max: number, onDrop: () => void): void {
  if (max > 0) server.maxConnections = max;
  server.on('drop', onDrop);
}
