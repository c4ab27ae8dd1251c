import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { fixedCredentials } from '../../lib/kube/kube-credentials.ts';
import { KubeApi } from '../../lib/kube/kube-api.ts';

interface ActiveWatch {
  readonly res: ServerResponse;
  readonly upstream: IncomingMessage;
}

/**
 * A plain-HTTP reverse proxy on loopback in front of the real API server (it adds the credentials of
 * `upstream`, GET only: what informers send), for the one failure TCP-level tricks cannot produce quickly: the API server telling a watch
 * its resource version has expired. expireWatches() ends every open watch response the way the API server
 * does — one ERROR event holding a 410 Expired Status, then the end of the stream.
 */
export class ApiFaultProxy {
  readonly #server: http.Server;
  readonly #upstream: KubeApi;
  readonly #watches = new Set<ActiveWatch>();
  readonly requests: string[] = [];

  private constructor(server: http.Server, upstream: KubeApi) {
    this.#server = server;
    this.#upstream = upstream;
  }

  static async start(upstream: KubeApi): Promise<ApiFaultProxy> {
    const server = http.createServer();
    const proxy = new ApiFaultProxy(server, upstream);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      proxy.#forward(req, res).catch((error: unknown) => {
        res.destroy(error instanceof Error ? error : new Error(String(error)));
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    return proxy;
  }

  /** A client of the proxy: plain HTTP, no credentials of its own. */
  api(): KubeApi {
    const address = this.#server.address();
    if (address === null || typeof address === 'string') throw new Error('proxy not listening');
    return new KubeApi({ server: `http://127.0.0.1:${address.port}`, credentials: fixedCredentials({}) });
  }

  /** Open watch responses right now. */
  get openWatches(): number {
    return this.#watches.size;
  }

  expireWatches(message = 'too old resource version (injected by the test)'): void {
    const event = {
      type: 'ERROR',
      object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', message, reason: 'Expired', code: 410 },
    };
    for (const watch of this.#watches) {
      watch.upstream.unpipe(watch.res);
      watch.upstream.destroy();
      watch.res.end(`${JSON.stringify(event)}\n`);
      this.#watches.delete(watch);
    }
  }

  async close(): Promise<void> {
    for (const watch of this.#watches) {
      watch.upstream.destroy();
      watch.res.destroy();
    }
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.requests.push(req.url ?? '');
    const isWatch = new URL(req.url ?? '/', 'http://x').searchParams.get('watch');
    const aborted = new AbortController();
    res.on('close', () => aborted.abort());
    const upstream = await this.#upstream.open(req.method ?? 'GET', req.url ?? '/', {
      signal: aborted.signal,
    });
    res.writeHead(upstream.statusCode ?? 502, upstream.headers);
    const watch = { res, upstream };
    if (isWatch === '1' || isWatch === 'true') {
      this.#watches.add(watch);
      res.on('close', () => this.#watches.delete(watch));
    }
    upstream.on('error', () => res.destroy());
    upstream.pipe(res);
  }
}
