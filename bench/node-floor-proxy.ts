/**
 * The Node floor of bench/mesh-compare.ts: the smallest forwarder pair a Node sidecar could be, no routing,
 * no metrics. Run as a process inside a netns pod:
 *
 *   node bench/node-floor-proxy.ts '{"role":"client","port":15101,"h2cPort":15111,
 *     "upstream":"https://10.248.0.5:15201","cert":"…pem","key":"…pem","ca":"…pem"}'
 *   node bench/node-floor-proxy.ts '{"role":"server","port":15201,"upstream":"http://127.0.0.1:9080",…}'
 *
 * client: node:http (and a node:http2 h2c server) → undici Pool over mTLS (HTTP/1.1) → the server role.
 * server: node:https with client certificates required → undici Pool → the app.
 * The upstream Pool has a connection cap and a long keep-alive, as any sane sidecar would.
 * `"h2": true` (both roles): HTTP/2 requests stay HTTP/2 on every hop, like Sluice's: one h2 session over mTLS
 * to the server role (an HTTP/2 server there, HTTP/1.1 too), one h2c session from it to the app.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import { Pool } from 'undici';
import { endToEnd, h2Forwarder } from './node-floor-h2.ts';

interface Spec {
  role: 'client' | 'server';
  port: number;
  h2cPort?: number;
  upstream: string;
  cert: string;
  key: string;
  ca: string;
  /** The name the server's certificate carries (client role). */
  serverName?: string;
  h2?: boolean;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as Spec;
const tls = {
  cert: readFileSync(spec.cert),
  key: readFileSync(spec.key),
  ca: readFileSync(spec.ca),
};
const pool = new Pool(spec.upstream, {
  connections: 64,
  keepAliveTimeout: 60_000,
  keepAliveMaxTimeout: 600_000,
  ...(spec.role === 'client' ? { connect: { ...tls, servername: spec.serverName } } : {}),
});

function forward(
  req: http.IncomingMessage | Http2ServerRequest,
  res: http.ServerResponse | Http2ServerResponse,
): void {
  const headers = endToEnd(req.headers);
  if (headers.host === undefined && req.headers[':authority'] !== undefined) {
    headers.host = req.headers[':authority'];
  }
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
  pool
    .request({
      path: req.url ?? '/',
      method: req.method as 'GET',
      headers,
      body: hasBody ? (req as http.IncomingMessage) : null,
    })
    .then(
      (upstream) => {
        (res as http.ServerResponse).writeHead(upstream.statusCode, endToEnd(upstream.headers));
        upstream.body.pipe(res as http.ServerResponse);
      },
      () => {
        if (!res.headersSent) (res as http.ServerResponse).writeHead(502);
        res.end();
      },
    );
}

const forwardH2 = h2Forwarder(() =>
  http2.connect(spec.upstream, spec.role === 'client' ? { ...tls, servername: spec.serverName } : {}),
);
const h2Or1 = (
  req: http.IncomingMessage | Http2ServerRequest,
  res: http.ServerResponse | Http2ServerResponse,
): void =>
  req.httpVersionMajor === 2
    ? forwardH2(req as Http2ServerRequest, res as Http2ServerResponse)
    : forward(req, res);

if (spec.role === 'client') {
  http.createServer({ keepAliveTimeout: 60_000 }, forward).listen(spec.port, '127.0.0.1');
  if (spec.h2cPort !== undefined)
    http2.createServer(spec.h2 ? h2Or1 : forward).listen(spec.h2cPort, '127.0.0.1');
} else if (spec.h2) {
  http2
    .createSecureServer({ ...tls, requestCert: true, rejectUnauthorized: true, allowHTTP1: true }, h2Or1)
    .listen(spec.port, '0.0.0.0');
} else {
  https
    .createServer({ ...tls, requestCert: true, rejectUnauthorized: true, keepAliveTimeout: 60_000 }, forward)
    .listen(spec.port, '0.0.0.0');
}
// Exits at SIGTERM, so a --cpu-prof profile gets written.
process.on('SIGTERM', () => process.exit(0));
process.stdout.write('listening\n');
