import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { readFileSync } from 'node:fs';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';

export interface ClientTls {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** True when GET `url` answers 200. With `tls`, the server is verified and a client certificate is sent. */
export function httpOk(url: string, tls?: ClientTls | 'insecure'): Promise<boolean> {
  return new Promise((resolve) => {
    const secure = url.startsWith('https:');
    const options =
      tls === 'insecure'
        ? { rejectUnauthorized: false }
        : tls
          ? { ca: readFileSync(tls.ca), cert: readFileSync(tls.cert), key: readFileSync(tls.key) }
          : {};
    const req = (secure ? httpsRequest : httpRequest)(url, { ...options, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/** True when something accepts connections on a unix socket. */
export function socketAccepts(path: string): Promise<boolean> {
  if (!existsSync(path)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const socket = connect(path, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}
