// The HTTPS endpoint the API server calls (POST /inject) and a plain admin port (/ready, /live, /metrics).
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { HttpServerDuration, processFamilies, renderFamily, type Sample } from '../lib/prometheus-text.ts';
import type { Logger } from '../lib/json-log.ts';
import { answerReview, type Outcome } from './admission-review.ts';
import type { InjectionSettings } from './pod-injection.ts';

export const WEBHOOK_PORT = 15017;
export const ADMIN_PORT = 15014;
export const WEBHOOK_PATH = '/inject';
/** A Pod is far smaller; the API server's own request limit is 3 MiB. */
const MAX_BODY_BYTES = 4 * 1024 * 1024;

export interface ServingCertificate {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface InjectorServerOptions {
  readonly settings: InjectionSettings;
  readonly log: Logger;
  readonly certificate: ServingCertificate;
  readonly port?: number;
  readonly adminPort?: number;
}

class BodyTooLarge extends Error {}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new BodyTooLarge());
        req.destroy();
      } else chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function listen(server: http.Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function send(res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

export class InjectorServer {
  readonly #o: InjectorServerOptions;
  readonly #webhook: https.Server;
  readonly #admin: http.Server;
  readonly #outcomes = new Map<string, number>();
  #errors = 0;
  readonly #durations = new HttpServerDuration();
  #ready = false;
  port = 0;
  adminPort = 0;

  constructor(options: InjectorServerOptions) {
    this.#o = options;
    this.#webhook = https.createServer(
      { cert: options.certificate.certPem, key: options.certificate.keyPem, minVersion: 'TLSv1.2' },
      (req, res) => {
        const started = performance.now();
        const route = (req.url ?? '/').split('?')[0] === WEBHOOK_PATH ? WEBHOOK_PATH : 'other';
        res.once('close', () =>
          this.#durations.observe(req.method, route, res.statusCode, (performance.now() - started) / 1000),
        );
        void this.#onWebhook(req, res);
      },
    );
    this.#webhook.headersTimeout = 10_000;
    this.#webhook.requestTimeout = 30_000;
    this.#admin = http.createServer((req, res) => this.#onAdmin(req, res));
    for (const server of [this.#webhook, this.#admin]) {
      server.on('error', (error) => options.log.error('server error', { error: error.message }));
    }
  }

  async start(): Promise<void> {
    this.port = await listen(this.#webhook, this.#o.port ?? WEBHOOK_PORT);
    this.adminPort = await listen(this.#admin, this.#o.adminPort ?? ADMIN_PORT);
    this.#ready = true;
    this.#o.log.info('injector listening', {
      port: this.port,
      adminPort: this.adminPort,
      path: WEBHOOK_PATH,
    });
  }

  /** A renewed serving certificate: new connections use it at once. */
  setCertificate(certificate: ServingCertificate): void {
    this.#webhook.setSecureContext({
      cert: certificate.certPem,
      key: certificate.keyPem,
      minVersion: 'TLSv1.2',
    });
  }

  /**
   * Stops answering /ready, keeps serving for `graceMs` (the API server still has this pod's address until
   * the endpoints update), then lets in-flight reviews finish and closes.
   */
  async stop(graceMs = 0): Promise<void> {
    this.#ready = false;
    if (graceMs > 0) await new Promise((resolve) => setTimeout(resolve, graceMs));
    await Promise.all(
      [this.#webhook, this.#admin].map(
        (server) =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeIdleConnections();
            setTimeout(() => server.closeAllConnections(), 2000).unref();
          }),
      ),
    );
  }

  async #onWebhook(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== WEBHOOK_PATH) return send(res, 404, `not found: POST ${WEBHOOK_PATH}\n`);
    if (req.method !== 'POST') return send(res, 405, `method not allowed: POST ${WEBHOOK_PATH}\n`);
    let body: unknown;
    try {
      body = JSON.parse((await readBody(req)).toString('utf8'));
    } catch (err) {
      this.#errors++;
      if (err instanceof BodyTooLarge) return send(res, 413, `body over ${MAX_BODY_BYTES} bytes\n`);
      if (err instanceof SyntaxError) return send(res, 400, `body is not JSON: ${err.message}\n`);
      return; // the client went away
    }
    const answer = answerReview(body, this.#o.settings);
    if ('error' in answer) {
      this.#errors++;
      this.#o.log.warn('bad admission request', { error: answer.error });
      return send(res, 400, `${answer.error}\n`);
    }
    this.#count(answer.outcome);
    const fields = { ...answer.context, ...answer.outcome };
    if (answer.outcome.result === 'denied') this.#o.log.warn('pod refused', fields);
    else this.#o.log.info(answer.outcome.result === 'injected' ? 'pod injected' : 'pod not injected', fields);
    send(res, 200, JSON.stringify(answer.review), 'application/json');
  }

  #count(outcome: Outcome): void {
    const key = outcome.reason === undefined ? outcome.result : `${outcome.result}/${outcome.reason}`;
    this.#outcomes.set(key, (this.#outcomes.get(key) ?? 0) + 1);
  }

  #onAdmin(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed\n');
    switch ((req.url ?? '/').split('?')[0]) {
      case '/live':
        return send(res, 200, 'ok\n');
      case '/ready':
        return this.#ready ? send(res, 200, 'ready\n') : send(res, 503, 'not ready\n');
      case '/metrics':
        return send(res, 200, this.metricsText(), 'text/plain; version=0.0.4; charset=utf-8');
      default:
        return send(res, 404, 'not found: /ready, /live, /metrics\n');
    }
  }

  metricsText(): string {
    const decisions: Sample[] = [...this.#outcomes].map(([key, value]) => {
      const [result = key, reason] = key.split('/');
      const labels: Record<string, string> = reason === undefined ? { result } : { result, reason };
      return { labels, value };
    });
    return `${[
      ...renderFamily(
        'sluice_injector_pods_total',
        'counter',
        'Pod admission reviews by outcome.',
        decisions,
      ),
      ...renderFamily('sluice_injector_bad_requests_total', 'counter', 'Requests answered 4xx.', [
        { value: this.#errors },
      ]),
      ...this.#durations.render(),
      ...processFamilies(),
    ].join('\n')}\n`;
  }
}
