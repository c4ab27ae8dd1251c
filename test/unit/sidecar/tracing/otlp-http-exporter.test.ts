// The OTLP/HTTP sender against a loopback collector: protobuf POSTs, retries on 503, gives up at the
// export's deadline when the collector does not answer.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { OtlpHttpExporter } from '../../../../sidecar/tracing/otlp-http-exporter.ts';

describe('OTLP/HTTP exporter', () => {
  let server: http.Server | undefined;
  afterEach(() => {
    server?.closeAllConnections();
    server?.close();
  });

  async function collector(answer: (n: number, req: http.IncomingMessage, res: http.ServerResponse) => void) {
    let n = 0;
    server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => answer(++n, req, res));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`;
  }

  const run = (e: OtlpHttpExporter): Promise<boolean> => e.export([]);

  it('retries a 503 and succeeds on the next answer', async () => {
    const seen: string[] = [];
    const url = await collector((n, req, res) => {
      seen.push(`${req.method} ${req.url} ${req.headers['content-type']}`);
      res.statusCode = n === 1 ? 503 : 200;
      res.end();
    });
    const e = new OtlpHttpExporter({ url, timeoutMs: 5000, backoffMs: () => 1 });
    assert.equal(await run(e), true);
    assert.deepEqual(seen, Array(2).fill('POST /v1/traces application/x-protobuf'));
    await e.shutdown();
  });

  it('fails at once on a 400, and at the deadline when the collector does not answer', async () => {
    let url = await collector((_n, _req, res) => {
      res.statusCode = 400;
      res.end();
    });
    let e = new OtlpHttpExporter({ url, timeoutMs: 5000, backoffMs: () => 1 });
    assert.equal(await run(e), false);
    await e.shutdown();
    server!.close();
    url = await collector(() => undefined); // never answers
    e = new OtlpHttpExporter({ url, timeoutMs: 200, backoffMs: () => 1 });
    const started = performance.now();
    assert.equal(await run(e), false);
    assert.ok(performance.now() - started < 2000);
    await e.shutdown();
  });
});
