import http from 'node:http';
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import type { DownstreamRequest, DownstreamResponse } from './local-reply.ts';
import {
  DEFAULT_HEADER_LIMITS,
  limitHeaders,
  limitUpgradeHeaders,
  parserLimits,
  type HeaderLimits,
} from './header-limits.ts';

export type RequestHandler = (req: DownstreamRequest, res: DownstreamResponse) => void;

/**
 * An HTTP/1.1 server and an HTTP/2 server that own no port: listeners hand them connections after
 * protocol detection or TLS termination. Malformed requests get a 4xx from here and never reach the
 * handler; slow clients are bounded by header and idle timeouts.
 */
export interface HttpServers {
  http1: http.Server;
  h2: http2.Http2Server;
  /** Stops keep-alive reuse and sends GOAWAY, letting requests in flight finish. */
  drain(): void;
}

export function createHttpServers(
  handler: RequestHandler,
  onUpgrade?: (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void,
  headerLimits: HeaderLimits = DEFAULT_HEADER_LIMITS,
): HttpServers {
  const parsers = parserLimits(headerLimits);
  const http1 = http.createServer(
    {
      maxHeaderSize: parsers.http1.maxHeaderSize,
      requestTimeout: 0,
      headersTimeout: 30_000,
      keepAliveTimeout: 60_000,
    },
    limitHeaders(handler, headerLimits),
  );
  http1.maxHeadersCount = parsers.http1.maxHeadersCount;
  http1.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (!socket.writable) return void socket.destroy();
    const status =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? '431 Request Header Fields Too Large'
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? '408 Request Timeout'
          : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
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
  h2.on('sessionError', () => undefined);
  h2.setTimeout(120_000);
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
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
