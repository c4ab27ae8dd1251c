// The OTLP/HTTP sender against a loopback collector: protobuf POSTs from its own thread, retries on 503,
// gives up at the export's deadline when the collector does not answer, and a thread that dies fails its
// exports and is replaced at the next one.
import assert from 'node:assert/strict';
import { SpanKind } from '@opentelemetry/api';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SpanRecord } from '../../../../sidecar/tracing/span-record.ts';
import { encodeTraceRequest } from '../../../../sidecar/tracing/otlp-encode.ts';
import { OtlpHttpExporter } from '../../../../sidecar/tracing/otlp-http-exporter.ts';

describe('OTLP/HTTP exporter', () => {
  let server: http.Server | undefined;
  afterEach(() => {
    server?.closeAllConnections();
    server?.close();
  });

  /** A loopback collector; `bodies` gets every request's body. */
  async function collector(
    answer: (n: number, req: http.IncomingMessage, res: http.ServerResponse) => void,
    bodies: Buffer[] = [],
  ) {
    let n = 0;
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        bodies.push(Buffer.concat(chunks));
        answer(++n, req, res);
      });
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
    const e = new OtlpHttpExporter({ url, timeoutMs: 5000, backoffBaseMs: 1 });
    assert.equal(await run(e), true);
    assert.deepEqual(seen, Array(2).fill('POST /v1/traces application/x-protobuf'));
    await e.shutdown();
  });

  it('fails at once on a 400, and at the deadline when the collector does not answer', async () => {
    let url = await collector((_n, _req, res) => {
      res.statusCode = 400;
      res.end();
    });
    let e = new OtlpHttpExporter({ url, timeoutMs: 5000, backoffBaseMs: 1 });
    assert.equal(await run(e), false);
    await e.shutdown();
    server!.close();
    url = await collector(() => undefined); // never answers
    e = new OtlpHttpExporter({ url, timeoutMs: 200, backoffBaseMs: 1 });
    const started = performance.now();
    assert.equal(await run(e), false);
    assert.ok(performance.now() - started < 2000);
    await e.shutdown();
  });

  it('starts its thread at the first export and sends the encoded batch as it is', async () => {
    const bodies: Buffer[] = [];
    const url = await collector((_n, _req, res) => res.end(), bodies);
    const e = new OtlpHttpExporter({ url, timeoutMs: 5000, backoffBaseMs: 1 });
    assert.equal(e.worker, undefined);
    const span = new SpanRecord(
      { attributes: { 'service.name': 'bench' } },
      {
        traceId: '0af7651916cd43dd8448eb211c80319c',
        spanId: 'b7ad6b7169203331',
        parentSpanId: undefined,
        parentIsRemote: false,
      },
      undefined,
      'GET',
      SpanKind.CLIENT,
      { 'http.request.method': 'GET' },
    );
    const pooled = Buffer.from('still here'); // a slice of Node's shared pool, which no export may detach
    assert.equal(await e.export([span]), true);
    assert.ok(e.worker);
    assert.deepEqual(bodies, [encodeTraceRequest([span])]);
    assert.equal(pooled.toString(), 'still here');
    await e.shutdown();
  });

  it('fails the exports of a thread that died and starts another at the next export', async () => {
    let answer = false;
    const url = await collector((_n, _req, res) => {
      if (answer) res.end();
    });
    const e = new OtlpHttpExporter({ url, timeoutMs: 10_000, backoffBaseMs: 1 });
    const lost = run(e);
    const first = e.worker!;
    await first.terminate();
    assert.equal(await lost, false);
    answer = true;
    assert.equal(await run(e), true);
    assert.notEqual(e.worker, first);
    await e.shutdown();
  });
});
