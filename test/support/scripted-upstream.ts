import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';

/** A plain HTTP server on loopback that records every request and answers as `behaviour` says (and
 * HTTP/1.1 Upgrade requests as `onUpgrade` does, when given). */
export interface Upstream {
  port: number;
  hits: { method: string; url: string; headers: http.IncomingHttpHeaders }[];
  close(): Promise<void>;
}

export async function upstream(
  behaviour: (n: number, req: http.IncomingMessage, res: http.ServerResponse) => void,
  onUpgrade?: (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void,
): Promise<Upstream> {
  const hits: Upstream['hits'] = [];
  const server = http.createServer((req, res) => {
    hits.push({ method: req.method!, url: req.url!, headers: req.headers });
    req.resume();
    behaviour(hits.length, req, res);
  });
  if (onUpgrade) {
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      hits.push({ method: req.method!, url: req.url!, headers: req.headers });
      onUpgrade(req, socket, head);
    });
  }
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    hits,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
