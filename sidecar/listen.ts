import type http from 'node:http';
import type net from 'node:net';

/** Listens on host:port; "::" falls back to 0.0.0.0 where the pod has no IPv6. */
export function listen(server: net.Server | http.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      // A pod without IPv6 cannot bind "::": fall back to IPv4 only.
      if (host === '::' && (err.code === 'EAFNOSUPPORT' || err.code === 'EADDRNOTAVAIL')) {
        server.off('error', onError);
        listen(server, port, '0.0.0.0').then(resolve, reject);
      } else reject(err);
    };
    server.once('error', onError);
    server.listen({ port, host }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
