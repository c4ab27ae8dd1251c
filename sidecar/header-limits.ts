import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { localReply, type DownstreamRequest, type DownstreamResponse } from './local-reply.ts';

/** Bounds on a request's header section, on both listeners, HTTP/1.1 and HTTP/2 (flags of `sluice proxy`). */
export interface HeaderLimits {
  /** Request headers (HTTP/2 pseudo-headers not counted); more get 431. */
  readonly maxHeaders: number;
  /** Bytes of request line (or pseudo-headers) and headers; more get 431. */
  readonly maxHeaderBytes: number;
}

export const DEFAULT_HEADER_LIMITS: HeaderLimits = { maxHeaders: 100, maxHeaderBytes: 60 * 1024 };

/**
 * Options for the servers' own parsers. HTTP/1.1: Node's parser stops at maxHeaderSize (431 from the
 * server's clientError handler) and keeps one header more than the limit, so the count can be checked.
 * HTTP/2: nghttp2 resets a stream (ENHANCE_YOUR_CALM) beyond maxHeaderListPairs/maxHeaderListSize, so those
 * are set above the limits, leaving room for a 431 to requests a little over them. All of these are read
 * when a socket is handed over with emit('connection'), not only by listen().
 */
export function parserLimits(limits: HeaderLimits): {
  http1: { maxHeaderSize: number; maxHeadersCount: number };
  h2: { maxHeaderListPairs: number; maxHeaderListSize: number };
} {
  const pairs = 2 * limits.maxHeaders + 8;
  return {
    http1: { maxHeaderSize: limits.maxHeaderBytes, maxHeadersCount: limits.maxHeaders + 1 },
    h2: { maxHeaderListPairs: pairs, maxHeaderListSize: 2 * limits.maxHeaderBytes + 32 * pairs },
  };
}

/** What is over the limits in a parsed request, or undefined. */
export function headerLimitExceeded(
  req: Pick<DownstreamRequest, 'rawHeaders' | 'method' | 'url'>,
  limits: HeaderLimits,
): string | undefined {
  let count = 0;
  let bytes = (req.method?.length ?? 0) + (req.url?.length ?? 0);
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    bytes += raw[i]!.length + raw[i + 1]!.length;
    if (raw[i]!.charCodeAt(0) !== 58 /* ':' */) count++;
  }
  if (count > limits.maxHeaders) return `more than ${limits.maxHeaders} request headers`;
  if (bytes > limits.maxHeaderBytes) return `request headers larger than ${limits.maxHeaderBytes} bytes`;
  return undefined;
}

/** The handler, behind a 431 for requests over the limits (which never reach it). */
export function limitHeaders(
  handler: (req: DownstreamRequest, res: DownstreamResponse) => void,
  limits: HeaderLimits,
): (req: DownstreamRequest, res: DownstreamResponse) => void {
  return (req, res) => {
    const over = headerLimitExceeded(req, limits);
    if (over === undefined) return handler(req, res);
    localReply(req, res, 431, over, req.httpVersionMajor === 2 ? {} : { connection: 'close' });
  };
}

/** The same for HTTP/1.1 upgrade requests, answered on the raw socket. */
export function limitUpgradeHeaders(
  onUpgrade: (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void,
  limits: HeaderLimits,
): (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void {
  return (req, socket, head) => {
    const over = headerLimitExceeded(req, limits);
    if (over === undefined) return onUpgrade(req, socket, head);
    const body = `${over}\n`;
    socket.end(
      `HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  };
}
