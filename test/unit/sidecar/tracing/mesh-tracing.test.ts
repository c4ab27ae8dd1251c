// A proxy's tracing reports every lost span: counted by reason and logged with the reason's details,
// throttled (a dead collector fails every batch).
import assert from 'node:assert/strict';
import type { LogFields } from '../../../../lib/json-log.ts';
import { ProxyMetrics } from '../../../../sidecar/metrics.ts';
import { MeshTracing } from '../../../../sidecar/tracing/mesh-tracing.ts';
import type { ExportFailure } from '../../../../sidecar/tracing/span-pipeline.ts';

describe('mesh tracing: dropped spans', () => {
  it('counts them by reason and logs why, once per interval', async () => {
    const lines: [string, LogFields][] = [];
    const metrics = new ProxyMetrics();
    const failure: ExportFailure = { reason: 'http_status', status: 503, attempts: 3 };
    const mesh = new MeshTracing(
      {
        resource: { 'service.name': 'web' },
        exporter: { export: () => Promise.resolve(failure), shutdown: () => Promise.resolve() },
      },
      {
        identity: () => undefined,
        metrics,
        log: { info: () => undefined, warn: (m, f) => lines.push([m, f ?? {}]), error: () => undefined },
      },
    );
    mesh.follow('shop', {
      'tracing.otlpEndpoint': 'http://collector:4318/v1/traces',
      'tracing.samplingPercent': '100',
    });
    const request = {
      method: 'GET',
      url: '/',
      headers: { host: 'reviews.shop' },
      httpVersion: '1.1',
      socket: null,
    };
    for (let i = 0; i < 2; i++) {
      mesh.tracing.startOutbound(request, {}, 'reviews.shop')!.end(200);
      await mesh.tracing.flush();
    }
    const text = metrics.render();
    assert.match(text, /^sluice_trace_spans_total\{outcome="dropped_export_failed"\} 2$/m);
    assert.match(text, /^sluice_trace_spans_dropped_total\{reason="http_status"\} 2$/m);
    assert.deepEqual(lines, [
      [
        'spans dropped: http_status',
        {
          reason: 'http_status',
          status: 503,
          attempts: 3,
          spans: 1,
          backend: 'http://collector:4318/v1/traces',
          sinceLastLine: 0,
        },
      ],
    ]);
  });
});
