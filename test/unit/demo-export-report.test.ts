import assert from 'node:assert/strict';
import { exportReport } from '../../demo/export-report.ts';

describe('demo: a proxy\u2019s span export report', () => {
  const metrics = [
    '# TYPE sluice_trace_spans_total counter',
    'sluice_trace_spans_total{outcome="exported"} 4',
    'sluice_trace_spans_total{outcome="dropped_export_failed"} 18',
    'sluice_trace_spans_dropped_total{reason="http_status"} 18',
    'sluice_requests_total{direction="inbound"} 9',
  ].join('\n');
  const line = (n: number): string =>
    `{"level":"warn","component":"proxy","msg":"spans dropped: http_status","status":400,"attempts":1,"n":${n}}`;

  it('keeps the span counters and the last "spans dropped" lines', () => {
    const log = ['{"msg":"listening"}', line(1), line(2), line(3), line(4), ''].join('\n');
    assert.deepEqual(exportReport(metrics, log), [
      'sluice_trace_spans_total{outcome="exported"} 4',
      'sluice_trace_spans_total{outcome="dropped_export_failed"} 18',
      'sluice_trace_spans_dropped_total{reason="http_status"} 18',
      'last "spans dropped" log lines:',
      line(2),
      line(3),
      line(4),
    ]);
  });

  it('says when there is nothing to show, or what could not be read', () => {
    assert.deepEqual(exportReport('', '{"msg":"listening"}'), [
      'no span exported or dropped yet',
      'no "spans dropped" log line',
    ]);
    assert.deepEqual(exportReport(new Error('exec failed'), new Error('no pod')), [
      '/metrics could not be read: exec failed',
      'its log could not be read: no pod',
    ]);
  });
});
