// Preload (`--import`) for bench/idle-release-cost.ts: counts the process's garbage collections by kind
// (perf_hooks' GC entries) and, on SIGUSR2, prints one JSON line to stdout with the counts so far, V8's heap
// spaces (committed MB) and RSS, which the mesh fixture keeps among the sidecar's log lines.
import { PerformanceObserver, constants, type PerformanceEntry } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';

const KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'markCompact',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakCallbacks',
};
const gc: Record<string, number> = {};
new PerformanceObserver((list) => {
  for (const e of list.getEntries() as (PerformanceEntry & { detail?: unknown })[]) {
    const kind = KINDS[(e.detail as { kind: number }).kind] ?? 'other';
    gc[kind] = (gc[kind] ?? 0) + 1;
    gc[`${kind}Ms`] = (gc[`${kind}Ms`] ?? 0) + e.duration;
  }
}).observe({ entryTypes: ['gc'] });

const mb = (n: number): number => Math.round((n / 2 ** 20) * 10) / 10;
process.on('SIGUSR2', () => {
  const spaces = Object.fromEntries(getHeapSpaceStatistics().map((s) => [s.space_name, mb(s.space_size)]));
  process.stdout.write(
    `${JSON.stringify({ msg: 'gc probe', time: new Date().toISOString(), gc: { ...gc }, spaces, rssMb: mb(process.memoryUsage.rss()) })}\n`,
  );
});
