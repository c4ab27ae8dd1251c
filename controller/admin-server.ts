// The controller's admin port (15014): /live, /ready (with the reasons it is not) and /metrics.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../lib/json-log.ts';

export const ADMIN_PORT = 15014;

export interface AdminServerOptions {
  readonly port: number;
  readonly log: Logger;
  /** Why the controller is not ready; empty when it is. */
  readonly notReady: () => string[];
  readonly metricsText: () => string;
}

/** Listens on `port`; resolves once listening. */
export async function startAdminServer(options: AdminServerOptions): Promise<http.Server> {
  const server = http.createServer((req, res) => onAdmin(options, req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (error) => options.log.error('admin server error', { error: error.message }));
  options.log.info('admin server listening', { port: (server.address() as AddressInfo).port });
  return server;
}

/** Closes the server and its keep-alive connections. */
export async function closeAdminServer(server: http.Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
}

function onAdmin(options: AdminServerOptions, req: IncomingMessage, res: ServerResponse): void {
  const path = (req.url ?? '/').split('?')[0];
  const send = (status: number, body: string, type = 'text/plain; charset=utf-8'): void => {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
    res.end(body);
  };
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed\n');
  switch (path) {
    case '/live':
      return send(200, 'ok\n');
    case '/ready': {
      const why = options.notReady();
      if (why.length === 0) return send(200, 'ready\n');
      return send(503, `not ready: ${why.join('; ')}\n`);
    }
    case '/metrics':
      return send(200, options.metricsText(), 'text/plain; version=0.0.4; charset=utf-8');
    default:
      return send(404, 'not found: /ready, /live, /metrics\n');
  }
}
