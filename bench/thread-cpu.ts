/** Per-thread CPU of this process, from /proc (the tracing benchmarks' main and export thread figures). */
import { readdirSync, readFileSync } from 'node:fs';

/** A thread's run time so far, µs (`task`: a /proc task directory; schedstat counts ns). */
export function threadRunUs(task: string): number {
  return Number(readFileSync(`${task}/schedstat`, 'utf8').split(' ')[0]) / 1000;
}

/** The OTLP export thread's run time so far, µs (0 before it starts; an ended thread takes its time). */
export function exportThreadUs(): number {
  return readdirSync('/proc/self/task')
    .map((t) => `/proc/self/task/${t}`)
    .filter((t) => readFileSync(`${t}/comm`, 'utf8').trim() === 'otlp-export')
    .reduce((sum, t) => sum + threadRunUs(t), 0);
}

/** A process's run time so far over all its threads, µs (0 once it is gone). */
export function processRunUs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    return readdirSync(`/proc/${pid}/task`).reduce(
      (sum, t) => sum + threadRunUs(`/proc/${pid}/task/${t}`),
      0,
    );
  } catch {
    return 0;
  }
}
