// An HTTP/1.1 response written while its request's body is still arriving (an app's early 413, a local
// 503, a response that ends before the upload does) closes its connection, in stages (ADR 0024).
import type http from 'node:http';
import type net from 'node:net';
import { nodeHttp } from './node-http.ts';

/** How long a closing connection's remaining request bytes are read and dropped before it is destroyed. */
export const LINGER_MS = 2_000;
/** And how many of them at most. */
export const LINGER_BYTES = 1024 * 1024;

/** An HTTP/1.1 request that declares a body. */
export function declaresBody(req: http.IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * The HTTP/1.1 server's response class. Its head says `Connection: close` when the request's body is
 * still arriving: the client may be blocked writing it (Node's HTTP client stops listening for its
 * socket's 'drain' once a complete response came, so such a request never ends and its keep-alive socket
 * never goes back to its agent: the next request waits for it forever). Draining the rest on a keep-alive
 * connection instead does not unblock such a client, and lets any client upload without end.
 */
export class EarlyClosingResponse extends nodeHttp.ServerResponse {
  // Named arguments, not a rest array: this runs for every response.
  override writeHead(statusCode: number, reason?: unknown, headers?: unknown): this {
    const socket = this.socket;
    if (socket && this.shouldKeepAlive && !this.req.complete && declaresBody(this.req)) {
      this.shouldKeepAlive = false;
      // Node closes a `Connection: close` response's socket with destroySoon() once it is written.
      socket.destroySoon = () => lingeringClose(socket, this.req);
    }
    return super.writeHead(statusCode, reason as string | undefined, headers as http.OutgoingHttpHeaders);
  }
}

/**
 * RFC 9112 §9.6's staged close, in place of Node's destroySoon (FIN, then the socket destroyed as soon as
 * the FIN is written): a socket closed with request bytes unread, or still coming, is answered with a RST,
 * which can destroy the response before the client read it. So the FIN goes after the response, the rest
 * is read and dropped, and the socket is destroyed at the client's own FIN, or past LINGER_MS or LINGER_BYTES.
 */
function lingeringClose(socket: net.Socket, req: http.IncomingMessage): void {
  socket.end();
  if (socket.destroyed) return;
  const from = socket.bytesRead;
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  socket.once('close', () => clearTimeout(timer));
  socket.on('data', () => {
    if (socket.bytesRead - from > LINGER_BYTES) socket.destroy();
  });
  // With the response done, the request's rest goes nowhere (an upload to an upstream that answered).
  req.resume();
  if (socket.readableEnded) socket.destroy();
  else socket.once('end', () => socket.destroy());
}
