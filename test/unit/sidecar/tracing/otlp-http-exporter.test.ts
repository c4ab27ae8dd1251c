// The OTLP/HTTP sender against a loopback collector: protobuf POSTs from its own thread, retries on 503,
// gives up at the export's deadline when the collector does not answer, recovers when a collector that was
// down comes up, and a thread that dies fails its exports and is replaced at the next one; every failure
// comes with its reason.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { clientSpan, startCollector } from '../../../support/otlp-collector.ts';
import { encodeTraceRequest } from '../../../../sidecar/tracing/otlp-encode.ts';
import { OtlpHttpExporter } from '../../../../sidecar/tracing/otlp-http-exporter.ts';
import type { ExportFailure } from '../../../../sidecar/tracing/span-pipeline.ts';

describe('OTLP/HTTP exporter', () => {
  let server: http.Server | undefined;
  afterEach(() => {
    server?.closeAllConnections();
    server?.close();
  });

  /** A loopback collector; `bodies` gets every request's body. */
  async function collector(...args: Parameters<typeof startCollector>) {
    let url: string;
    ({ server, url } = await startCollector(...args));
    return url;
  }

  const run = (e: OtlpHttpExporter): Promise<ExportFailure | undefined> => e.export([]);

  it('retries a 503 and succeeds on the next answer', async () => {
    const seen: string[] = [];
    const url = await collector((n, req, res) => {
      seen.push(`${req.method} ${req.url} ${req.headers['content-type']}`);
      res.statusCode = n === 1 ? 503 : 200;
      res.end();
    });
    const e = new OtlpHttpExporter({ url, timeoutMs: 5000, backoffBaseMs: 1 });
    assert.equal(await run(e), undefined);
    assert.deepEqual(seen, Array(2).fill('POST /v1/traces application/x-protobuf'));
    await e.shutdown();
  });

  it('fails at once on a 400, and at the deadline when the collector does not answer', async () => {
    let url = await collector((_n, _req, res) => {
      res.statusCode = 400;
      res.end();
    });
    let e = new OtlpHttpExporter({ url, timeoutMs: 5000, backoffBaseMs: 1 });
    assert.deepEqual(await run(e), { reason: 'http_status', status: 400, attempts: 1 });
    await e.shutdown();
    server!.close();
    url = await collector(() => undefined); // never answers
    e = new OtlpHttpExporter({ url, timeoutMs: 200, backoffBaseMs: 1 });
    const started = performance.now();
    assert.deepEqual(await run(e), { reason: 'timed_out', attempts: 1 });
    assert.ok(performance.now() - started < 2000);
    await e.shutdown();
  });

  it('starts its thread at the first export and sends the encoded batch as it is', async () => {
    const bodies: Buffer[] = [];
    const url = await collector((_n, _req, res) => res.end(), bodies);
    const e = new OtlpHttpExporter({ url, timeoutMs: 5000, backoffBaseMs: 1 });
    assert.equal(e.worker, undefined);
    const span = clientSpan('GET');
    const pooled = Buffer.from('still here'); // a slice of Node's shared pool, which no export may detach
    assert.equal(await e.export([span]), undefined);
    assert.ok(e.worker);
    assert.deepEqual(bodies, [encodeTraceRequest([span])]);
    assert.equal(pooled.toString(), 'still here');
    await e.shutdown();
  });

  it('fails the exports of a thread that died, with its exit code, and starts another at the next export', async () => {
    let answer = false;
    const url = await collector((_n, _req, res) => {
      if (answer) res.end();
    });
    const e = new OtlpHttpExporter({ url, timeoutMs: 10_000, backoffBaseMs: 1 });
    const lost = run(e);
    const first = e.worker!;
    await once(first, 'online');
    await first.terminate();
    assert.deepEqual(await lost, { reason: 'thread_exited', exitCode: 1 });
    answer = true;
    assert.equal(await run(e), undefined);
    assert.notEqual(e.worker, first);
    await e.shutdown();
  });

  it('fails with the network error while the collector is down, and exports once it is up', async () => {
    const url = await collector((_n, _req, res) => res.end());
    const port = (server!.address() as AddressInfo).port;
    server!.close();
    await once(server!, 'close');
    const e = new OtlpHttpExporter({ url, timeoutMs: 300, backoffBaseMs: 1 });
    const failure = await run(e);
    assert.ok(
      failure?.reason === 'network_error' || failure?.reason === 'timed_out',
      JSON.stringify(failure),
    );
    assert.equal('error' in failure ? failure.error : undefined, 'ECONNREFUSED');
    assert.ok(failure.reason === 'network_error' ? failure.attempts > 1 : true, 'retried');
    server!.listen(port, '127.0.0.1');
    await once(server!, 'listening');
    assert.equal(await run(e), undefined);
    await e.shutdown();
  });

  it('gives its thread a time budget, never a point in time (the threads’ clocks need not agree)', async () => {
    const url = await collector((_n, _req, res) => res.end());
    const e = new OtlpHttpExporter({ url, timeoutMs: 5000, backoffBaseMs: 1 });
    assert.equal(await run(e), undefined);
    const sent: unknown[] = [];
    const worker = e.worker!;
    const post = worker.postMessage.bind(worker);
    worker.postMessage = (...args: Parameters<typeof post>) => {
      sent.push(args[0]);
      post(...args);
    };
    assert.equal(await run(e), undefined);
    assert.deepEqual(
      sent.map((m) => Object.keys(m as object).sort()),
      [['body', 'budgetMs', 'id', 'length']],
    );
    assert.equal((sent[0] as { budgetMs: number }).budgetMs, 5000);
    await e.shutdown();
  });
});
