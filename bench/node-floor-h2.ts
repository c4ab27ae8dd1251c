// The Node floor's header copy and HTTP/2 hop (bench/node-floor-proxy.ts, and bench/request-garbage.ts's
// `floor` tree): the least a forwarder must do, nothing Sluice-specific.
import http2 from 'node:http2';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'http2-settings',
]);

/** The end-to-end headers: no pseudo-headers (`:status` the one number), no hop-by-hop ones. */
export function endToEnd(
  headers: NodeJS.Dict<string | string[] | number>,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || typeof value === 'number' || name.startsWith(':') || HOP_BY_HOP.has(name))
      continue;
    out[name] = value;
  }
  return out;
}

/** An HTTP/2 request handler forwarding over one session (made again by `connect` once it is gone), piped. */
export function h2Forwarder(
  connect: () => http2.ClientHttp2Session,
): (req: Http2ServerRequest, res: Http2ServerResponse) => void {
  let session: http2.ClientHttp2Session | undefined;
  return (req, res) => {
    if (!session || session.closed || session.destroyed) session = connect();
    const headers: http2.OutgoingHttpHeaders = endToEnd(req.headers);
    headers[':method'] = req.method;
    headers[':path'] = req.url;
    headers[':authority'] = req.headers[':authority'];
    const upstream = session.request(headers, { endStream: req.stream.endAfterHeaders });
    if (!req.stream.endAfterHeaders) req.pipe(upstream);
    upstream.on('response', (h) => {
      res.writeHead(h[':status'] ?? 502, endToEnd(h));
      upstream.pipe(res);
    });
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
  };
}
