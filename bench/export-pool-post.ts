// Bench mode "1%/pool" (ADR 0019, seventh session): the export's POST through the data plane's own HTTP/1.1
// client (sidecar/http1-client.ts) on the proxy's main thread, the code every upstream request runs and
// keeps warm, in the hope that the export would add no code of its own to the proxy's isolate. It cost
// +13.8 % at 1 %, against the export thread's +4.7 … +6.2 %.
import net from 'node:net';
import tls from 'node:tls';
import type { IncomingHttpHeaders } from 'node:http';
import { H1Pool, type H1Controller, type H1Handler } from '../sidecar/http1-client.ts';
import type { PostResult } from '../sidecar/tracing/otlp-export-retries.ts';

/** An idle export connection is closed after this long: exports come every batch delay (5 s by default). */
const IDLE_MS = 30_000;
const MAX_HEAD_BYTES = 64 * 1024;

const timedOut = (): Error => Object.assign(new Error('export timed out'), { code: 'ETIMEDOUT' });

/** POSTs encoded batches to one OTLP/HTTP endpoint; `post` never rejects. */
export class PoolPoster {
  readonly #pool: H1Pool;
  readonly #path: string;

  constructor(url: URL) {
    const https = url.protocol === 'https:';
    const port = Number(url.port || (https ? 443 : 80));
    const host = url.hostname.replace(/^\[|\]$/g, '');
    this.#path = `${url.pathname}${url.search}`;
    this.#pool = new H1Pool({
      host: url.host,
      maxConnections: 4,
      keepAliveMs: IDLE_MS,
      keepAliveMaxMs: IDLE_MS,
      streamIdleMs: 0, // the export's own budget bounds it
      maxHeadBytes: MAX_HEAD_BYTES,
      connect: (callback) => {
        const socket = https
          ? tls.connect({ host, port, servername: net.isIP(host) ? undefined : host })
          : net.connect({ host, port, noDelay: true });
        const onError = (err: Error): void => callback(err, null);
        socket.once('error', onError);
        socket.once(https ? 'secureConnect' : 'connect', () => {
          socket.off('error', onError);
          callback(null, socket);
        });
      },
    });
  }

  post(body: Uint8Array, timeoutMs: number): Promise<PostResult> {
    return new Promise((resolve) => {
      let settled = false;
      const settle = (result: PostResult): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(result);
      };
      let status = 0;
      const handler: H1Handler = {
        onRequestStart: () => undefined,
        onResponseStart: (_c: H1Controller, s: number, _h: IncomingHttpHeaders) => (status = s),
        onResponseData: () => undefined,
        onResponseEnd: () => settle({ status }),
        onResponseError: (_c, err) =>
          settle(err === timeoutError ? { timedOut: true } : { error: errorCode(err) }),
      };
      const buffer = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
      const control = this.#pool.request(
        {
          method: 'POST',
          path: this.#path,
          headers: { 'content-type': 'application/x-protobuf', 'content-length': String(buffer.length) },
          body: buffer,
        },
        handler,
      );
      const timeoutError = timedOut();
      const timer = setTimeout(() => control.abort(timeoutError), timeoutMs);
      timer.unref();
    });
  }

  close(): void {
    this.#pool.close();
  }
}

function errorCode(err: Error): string {
  return (err as NodeJS.ErrnoException).code ?? err.message;
}
