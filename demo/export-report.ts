// Why a proxy's spans may be missing from Jaeger, from what the proxy itself says: its span counters
// (sluice_trace_spans_total by outcome, sluice_trace_spans_dropped_total by reason) and its last
// `spans dropped: <reason>` log lines (docs/observability.md). Pure.

const COUNTER = /^sluice_trace_spans(_dropped)?_total\{/;

export function exportReport(metrics: string | Error, log: string | Error, lastLines = 3): string[] {
  const counters =
    metrics instanceof Error
      ? [`/metrics could not be read: ${metrics.message}`]
      : metrics.split('\n').filter((l) => COUNTER.test(l));
  if (counters.length === 0) counters.push('no span exported or dropped yet');
  if (log instanceof Error) return [...counters, `its log could not be read: ${log.message}`];
  const dropped = log
    .split('\n')
    .filter((l) => l.includes('"msg":"spans dropped'))
    .slice(-lastLines);
  return [
    ...counters,
    ...(dropped.length > 0
      ? ['last "spans dropped" log lines:', ...dropped]
      : ['no "spans dropped" log line']),
  ];
}
