import type * as http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { localReply, type DownstreamRequest, type DownstreamResponse } from './local-reply.ts';
import { DEFAULT_LIMITS, type ProxyLimits } from './limits.ts';
import { peerHasSentFin } from './tcp-state.ts';
import {
  DEFAULT_HEADER_LIMITS,
  limitHeaders,
  limitUpgradeHeaders,
  parserLimits,
  type HeaderLimits,
} from './header-limits.ts';
import { nodeHttp } from './node-http.ts';
import { declaresBody, EarlyClosingResponse } from './early-response.ts';

/** After a client's FIN, how long streams in flight may take to finish before the connection is closed. */
const HALF_CLOSED_DRAIN_MS = 5_000;
/** How often a session that got a GOAWAY is checked for a stuck nghttp2 queue. */
const STUCK_CHECK_MS = 1_000;

export type RequestHandler = (req: DownstreamRequest, res: DownstreamResponse) => void;

/** Which timeout closed a connection or stream (the label of sluice_timeouts_total). */
export type TimeoutKind = 'header' | 'request_body_idle' | 'stream_idle' | 'idle';

/**
 * An HTTP/1.1 server and an HTTP/2 server that own no port: listeners hand them connections after
 * protocol detection or TLS termination. Malformed requests get a 4xx from here and never reach the
 * handler; slow clients are bounded by the header, body idle, stream idle and connection idle timeouts.
 */
export interface HttpServers {
  http1: http.Server;
  h2: http2.Http2Server;
  /** Stops keep-alive reuse and sends GOAWAY, letting requests in flight finish. */
  drain(): void;
}

function hasBody(req: DownstreamRequest): boolean {
  // By type, not httpVersionMajor: an HTTP/1.1 parser also takes a request line that says HTTP/2.0.
  if (req instanceof http2.Http2ServerRequest) return !req.stream.endAfterHeaders;
  return declaresBody(req);
}

/**
 * Node's HTTP/1.1 parser also takes a request line that says HTTP/2.0 or HTTP/3.x; everything after it
 * tells HTTP/2 by the version, so such a request is refused here (505) before it can be taken for one.
 */
function http1Only(handler: RequestHandler): RequestHandler {
  return (req, res) => {
    if (req.httpVersionMajor === 1) return handler(req, res);
    localReply(req, res, 505, 'HTTP version not supported', { connection: 'close' });
  };
}

/**
 * Pipelined HTTP/1.1 requests are handled one at a time per connection, as Envoy does. Node parses every
 * request a client pipelines and emits them all at once (it only orders the responses), so handing each to
 * the forwarder on arrival made one upstream connection per request in flight (an HTTP/1.1 upstream carries
 * one at a time): a client pipelining 24 requests opened 24 mesh connections, with their TLS handshakes, at
 * once. The next request starts when the previous response has been written or its connection is gone.
 */
function oneAtATime(handler: RequestHandler): RequestHandler {
  return (req, res) => {
    // Node gives a pipelined request's response the socket only once the one before it has finished
    // ('socket' event); until then the response has none. The usual, unpipelined request has it at once:
    // no listener, no bookkeeping. A request parsed behind one whose connection closed never gets it.
    const socket = (res as http.ServerResponse).socket;
    if (socket) {
      // After a `Connection: close` response (EarlyClosingResponse), what still comes is not served.
      if (!socket.writable) return void socket.destroy();
      return handler(req, res);
    }
    res.once('socket', () => {
      if (!req.socket.destroyed) handler(req, res);
    });
  };
}

export interface HttpServerOptions {
  readonly limits?: ProxyLimits;
  readonly headerLimits?: HeaderLimits;
  /** Counts the connections and streams a timeout closed. */
  readonly onTimeout?: (kind: TimeoutKind) => void;
}

export function createHttpServers(
  handler: RequestHandler,
  onUpgrade?: (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void,
  options: HttpServerOptions = {},
): HttpServers {
  const {
    limits = DEFAULT_LIMITS,
    headerLimits = DEFAULT_HEADER_LIMITS,
    onTimeout = () => undefined,
  } = options;
  const parsers = parserLimits(headerLimits);
  const http1 = nodeHttp.createServer(
    {
      maxHeaderSize: parsers.http1.maxHeaderSize,
      ServerResponse: EarlyClosingResponse,
      requestTimeout: 0,
      headersTimeout: limits.headerTimeoutMs,
      keepAliveTimeout: limits.idleTimeoutMs,
      // How often Node looks for requests past headersTimeout: a fraction of it, at most once a second.
      connectionsCheckingInterval: Math.max(
        25,
        Math.min(1000, Math.floor(limits.headerTimeoutMs / 4) || 1000),
      ),
    },
    oneAtATime(http1Only(limitHeaders(handler, headerLimits))),
  );
  http1.maxHeadersCount = parsers.http1.maxHeadersCount;
  // Node starts its headersTimeout checks when the server listens; this one is only handed sockets.
  http1.emit('listening');
  // Socket idle while a request is in flight (Node replaces it by keepAliveTimeout between requests).
  http1.timeout = limits.streamIdleTimeoutMs;
  http1.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') onTimeout('header');
    if (!socket.writable) return void socket.destroy();
    const status =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? '431 Request Header Fields Too Large'
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? '408 Request Timeout'
          : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  });
  http1.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const bodyIdle = limits.requestBodyIdleTimeoutMs;
    if (!bodyIdle || !hasBody(req)) return;
    const socket = req.socket;
    (socket as SocketPhase).sluiceBody = true;
    socket.setTimeout(bodyIdle);
    const done = (): void => {
      if ((socket as SocketPhase).sluiceBody !== true) return;
      (socket as SocketPhase).sluiceBody = false;
      if (!res.writableFinished && !socket.destroyed) socket.setTimeout(limits.streamIdleTimeoutMs);
    };
    req.once('end', done);
    req.once('close', done);
  });
  // Replaces Node's default (destroy on socket timeout): same action, counted by cause.
  http1.on('timeout', (socket: net.Socket) => {
    const res = (socket as { _httpMessage?: http.ServerResponse | null })._httpMessage;
    onTimeout(
      (socket as SocketPhase).sluiceBody
        ? 'request_body_idle'
        : res && !res.writableFinished
          ? 'stream_idle'
          : 'idle',
    );
    socket.destroy();
  });
  if (onUpgrade) http1.on('upgrade', limitUpgradeHeaders(onUpgrade, headerLimits));

  const h2 = http2.createServer(
    {
      maxHeaderListPairs: parsers.h2.maxHeaderListPairs,
      maxSessionMemory: 64,
      settings: { maxConcurrentStreams: 1000, maxHeaderListSize: parsers.h2.maxHeaderListSize },
    },
    limitHeaders(handler, headerLimits),
  );
  // A socket Node accepted learns its peer's address at the first read of remoteAddress, as a new property
  // (`_peername`). Read only for some requests (a sampled one's span), it gave the proxy's sockets two
  // shapes and made the stream code every request runs polymorphic (ADR 0022); read here, before Node's
  // own connection handling, every connection has the same shape.
  // The body phase is set on every HTTP/1.1 socket at once for the same reason (not only on one carrying a body).
  const peerAddressFirst = (socket: net.Socket): string | undefined => socket.remoteAddress;
  http1.prependListener('connection', (socket: net.Socket) => {
    peerAddressFirst(socket);
    (socket as SocketPhase).sluiceBody = false;
  });
  h2.prependListener('connection', peerAddressFirst);
  h2.on('sessionError', () => undefined);
  // One listener function for every stream (its phase kept on the stream), not a closure per stream.
  function streamTimedOut(this: TimedStream): void {
    onTimeout(this.sluicePhase ?? 'stream_idle');
    this.close(http2.constants.NGHTTP2_CANCEL);
  }
  h2.on('request', (req: http2.Http2ServerRequest) => {
    const stream = req.stream as TimedStream;
    const declared = hasBody(req);
    const body = limits.requestBodyIdleTimeoutMs > 0 && declared;
    stream.setTimeout(body ? limits.requestBodyIdleTimeoutMs : limits.streamIdleTimeoutMs);
    // A response that ended before its request (an early answer, a local 502 after the upstream failed)
    // leaves the rest of the body unread where nothing reads it any more: the client, out of flow-control
    // window, would wait for the stream idle timeout. It is read and dropped instead (ADR 0024).
    if (declared) stream.once('finish', () => req.readableEnded || req.resume());
    if (body) {
      stream.sluicePhase = 'request_body_idle';
      req.once('end', () => {
        stream.sluicePhase = 'stream_idle';
        if (!stream.destroyed) stream.setTimeout(limits.streamIdleTimeoutMs);
      });
    }
    stream.on('timeout', streamTimedOut);
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on('session', (s) => {
    sessions.add(s);
    // A new session must open its first stream within the header timeout; later, a session without
    // streams is idle. Either way it is closed with GOAWAY.
    let streams = 0;
    const open = new Set<http2.ServerHttp2Stream>();
    // One timer per session, left running while streams are open (it does nothing then) and refreshed when
    // the session goes idle again: at about one idle transition per request, a clear and a new timer each
    // time cost more than a refresh.
    let timer: NodeJS.Timeout | undefined;
    let timerMs = 0;
    let timerKind: TimeoutKind = 'idle';
    const fire = (): void => {
      if (streams > 0) return;
      onTimeout(timerKind);
      s.close();
      s.destroy();
    };
    const arm = (ms: number, kind: TimeoutKind): void => {
      timerKind = kind;
      if (timer !== undefined && ms === timerMs) return void timer.refresh();
      clearTimeout(timer);
      timerMs = ms;
      timer = ms > 0 ? setTimeout(fire, ms) : undefined;
    };
    arm(limits.headerTimeoutMs || limits.idleTimeoutMs, limits.headerTimeoutMs ? 'header' : 'idle');
    let clientDone = false;
    // Once the client is done and no stream is left, the session ends even if nghttp2 still counts one
    // the application never saw (e.g. a header block cut short by a frame error): close() alone waits for
    // those forever. The destroy waits a turn so the last frames written are handed to the socket first.
    const endIfIdle = (): void => {
      if (!clientDone || open.size > 0 || s.destroyed) return;
      if (!s.closed) s.close();
      setImmediate(() => {
        if (!s.destroyed) s.destroy();
      });
    };
    s.on('stream', (stream: http2.ServerHttp2Stream) => {
      streams++;
      open.add(stream);
      stream.once('close', () => {
        open.delete(stream);
        if (--streams === 0 && !s.closed) arm(limits.idleTimeoutMs, 'idle');
        endIfIdle();
      });
    });
    // The client half-closed (FIN; sockets are handed over half-open): no byte can follow. A stream still
    // waiting for its request can never complete and is cancelled; the others finish and their responses
    // go out (GOAWAY stops new ones), then the session ends (at once when nothing is open). They get
    // HALF_CLOSED_DRAIN_MS: a client that cannot send cannot open flow-control windows either.
    const halfClosed = (): void => {
      if (clientDone) return;
      clientDone = true;
      setTimeout(() => {
        if (!s.destroyed) s.destroy();
      }, HALF_CLOSED_DRAIN_MS).unref();
      for (const stream of open) {
        if (stream.state.remoteClose) continue;
        // close() alone waits for the response side to finish writing, which may never happen now.
        stream.close(http2.constants.NGHTTP2_CANCEL);
        stream.destroy();
      }
      if (!s.closed) s.close();
      endIfIdle();
    };
    if (s.socket.readableEnded) halfClosed();
    else s.socket.once('end', halfClosed);
    // After a peer's GOAWAY, a protocol error makes nghttp2 end the session (it sends its own GOAWAY and
    // will neither read nor write again) without Node telling the application: Node just stops reading the
    // socket, so streams waiting for request bytes never complete and the client's FIN is never read.
    // (Without the peer's GOAWAY, Node destroys the session on such an error itself.) Each check asks the
    // kernel whether the FIN has come, which needs no read, and acts on it as on a FIN read; a session
    // whose queue has not moved for two checks in a row (frames nghttp2 will never send) is ended.
    s.once('goaway', () => {
      let last = -1;
      const watch = setInterval(() => {
        if (s.destroyed) {
          clearInterval(watch);
          return;
        }
        if (!clientDone && peerHasSentFin(s.socket) === true) return halfClosed();
        const queued = s.state.outboundQueueSize ?? 0;
        const writable = (s.socket as { writableLength?: number } | undefined)?.writableLength ?? 0;
        if (queued > 0 && queued === last && writable === 0) {
          clearInterval(watch);
          s.destroy();
        }
        last = queued;
      }, STUCK_CHECK_MS);
      watch.unref();
      s.once('close', () => clearInterval(watch));
    });
    s.on('close', () => {
      clearTimeout(timer);
      sessions.delete(s);
    });
    s.on('error', () => undefined);
  });
  return {
    http1,
    h2,
    drain() {
      http1.closeIdleConnections();
      http1.on('request', (_req, res: http.ServerResponse) => res.setHeader('connection', 'close'));
      for (const s of sessions) s.close();
    },
  };
}

type SocketPhase = Duplex & { sluiceBody?: boolean };
type TimedStream = http2.ServerHttp2Stream & { sluicePhase?: TimeoutKind };
