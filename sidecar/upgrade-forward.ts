import type * as http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { Endpoint } from '../mesh-model/endpoints.ts';
import type { ForwardDeps, UpstreamRequest } from './http-forward.ts';
import { forwardResponseHeaders } from './http-headers.ts';
import { pipeSockets } from './tcp-pipe.ts';
import { rawReply } from './local-reply.ts';
import { nodeHttp } from './node-http.ts';

function headBlock(status: number, headers: http.IncomingHttpHeaders): string {
  let out = `HTTP/1.1 ${status} ${nodeHttp.STATUS_CODES[status] ?? ''}\r\n`;
  for (const [k, v] of Object.entries(headers)) {
    for (const value of Array.isArray(v) ? v : [v]) if (value !== undefined) out += `${k}: ${value}\r\n`;
  }
  return `${out}\r\n`;
}

/**
 * Forwards an HTTP/1.1 Upgrade (WebSocket and the like): sends the request to an endpoint and, on 101,
 * joins the two connections byte for byte. A non-101 answer is relayed as a normal response.
 */
export function forwardUpgrade(
  deps: ForwardDeps,
  endpoints: readonly Endpoint[],
  request: UpstreamRequest,
  client: Duplex,
  head: Buffer,
  onDone: (status: number) => void,
): void {
  client.on('error', () => client.destroy());
  const ep = deps.lb.pick(endpoints);
  if (!ep) {
    onDone(503);
    return rawReply(client, 503, 'no healthy endpoints');
  }
  const upReq = (ep.identity ? https : nodeHttp).request({
    agent: deps.pools.agent(ep),
    host: ep.address,
    port: ep.port,
    method: request.method,
    path: request.path,
    headers: { ...(request.headers as http.OutgoingHttpHeaders), connection: 'upgrade' },
    setHost: false,
  });
  upReq.on('upgrade', (upRes, upSocket: Socket, upHead: Buffer) => {
    client.write(
      headBlock(101, {
        ...forwardResponseHeaders(upRes.headers),
        connection: 'upgrade',
        upgrade: upRes.headers.upgrade,
      }),
    );
    if (upHead.length > 0) client.write(upHead);
    if (head.length > 0) upSocket.write(head);
    onDone(101);
    pipeSockets(client, upSocket);
  });
  upReq.on('response', (upRes) => {
    onDone(upRes.statusCode ?? 502);
    client.write(
      headBlock(upRes.statusCode ?? 502, { ...forwardResponseHeaders(upRes.headers), connection: 'close' }),
    );
    upRes.pipe(client);
  });
  upReq.on('error', (err: NodeJS.ErrnoException) => {
    onDone(502);
    rawReply(client, 502, `upstream ${err.code ?? 'error'} from ${ep.address}:${ep.port}`);
  });
  upReq.end();
}
