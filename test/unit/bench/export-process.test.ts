// The bench's OTLP/HTTP sender in a process of its own (ADR 0019, "export process"): the same POSTs, retries and
// deadlines as the export thread, the batch's bytes sent as they were encoded, a child that dies fails its
// exports and is replaced after a backoff, and a child whose proxy is gone (stdin's end) exits.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { clientSpan, startCollector } from '../../support/otlp-collector.ts';
import { encodeTraceRequest } from '../../../sidecar/tracing/otlp-encode.ts';
import { OtlpProcessExporter } from '../../../bench/export-process.ts';

describe('OTLP/HTTP export process', () => {
  let server: http.Server | undefined;
  afterEach(() => {
    server?.closeAllConnections();
    server?.close();
  });

  async function collector(answer: (n: number, res: http.ServerResponse) => void, bodies: Buffer[] = []) {
    let url: string;
    ({ server, url } = await startCollector((n, _req, res) => answer(n, res), bodies));
    return url;
  }

  it('starts its process at the first export and sends each encoded batch as it is, retrying a 503', async () => {
    const bodies: Buffer[] = [];
    const url = await collector((n, res) => {
      res.statusCode = n === 1 ? 503 : 200;
      res.end();
    }, bodies);
    const e = new OtlpProcessExporter({ url, timeoutMs: 5000, backoffBaseMs: 1 });
    assert.equal(e.child, undefined);
    const big = Array.from({ length: 2000 }, (_, i) => clientSpan(`GET ${i}`)); // more than a socket's buffer
    const small = [clientSpan('GET')];
    const results = await Promise.all([e.export(small), e.export(big)]);
    assert.deepEqual(results, [undefined, undefined]);
    assert.ok(e.child);
    const sent = [encodeTraceRequest(small), encodeTraceRequest(big)];
    assert.deepEqual(
      bodies.slice(1).sort((a, b) => a.length - b.length),
      sent,
    );
    await e.shutdown();
  });

  it('fails at once on a 400, and at the deadline when the collector does not answer', async () => {
    let url = await collector((_n, res) => {
      res.statusCode = 400;
      res.end();
    });
    let e = new OtlpProcessExporter({ url, timeoutMs: 5000, backoffBaseMs: 1 });
    assert.deepEqual(await e.export([]), { reason: 'http_status', status: 400, attempts: 1 });
    await e.shutdown();
    server!.close();
    url = await collector(() => undefined);
    e = new OtlpProcessExporter({ url, timeoutMs: 200, backoffBaseMs: 1 });
    assert.deepEqual(await e.export([]), { reason: 'timed_out', attempts: 1 });
    await e.shutdown();
  });

  it('fails the exports of a process that died and starts another after a backoff', async () => {
    let answer = false;
    const url = await collector((_n, res) => {
      if (answer) res.end();
    });
    const e = new OtlpProcessExporter({ url, timeoutMs: 10_000, backoffBaseMs: 1 });
    const lost = e.export([]);
    const first = e.child!;
    first.kill('SIGKILL');
    assert.deepEqual(await lost, { reason: 'thread_exited', exitCode: -1, error: 'SIGKILL' });
    assert.deepEqual(await e.export([]), { reason: 'thread_start_failed', error: 'restarting' });
    answer = true;
    for (;;) {
      const failure = await e.export([]);
      if (failure === undefined) break;
      assert.deepEqual(failure, { reason: 'thread_start_failed', error: 'restarting' });
      await new Promise((resolve) => setImmediate(resolve));
    }
    assert.notEqual(e.child, first);
    await e.shutdown();
  });

  it('exits when its stdin ends (the proxy is gone)', async () => {
    const child = spawn(
      process.execPath,
      [
        fileURLToPath(new URL('../../../bench/export-process-child.ts', import.meta.url)),
        'http://127.0.0.1:9/v1/traces',
      ],
      { stdio: ['pipe', 'ignore', 'inherit'] },
    );
    child.stdin.end();
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 0);
  });
});
