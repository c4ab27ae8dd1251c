// A proxy's own cgroup v1 memory group with a pod's container limit, for bench:compare: in a pod the kubelet
// puts the proxy container in one (256Mi, ADR 0012), and Node sizes V8's heap from its limit at start, so a
// benchmark without it measures another heap than production runs. Created under the memory controller's
// root as `sluice-bench-<pid>-<name>`; remove() after the processes in it have exited, and a later run removes
// what a killed one left.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from '../test/support/wait-for.ts';

const ROOT = '/sys/fs/cgroup/memory';
const PREFIX = 'sluice-bench-';

export interface MemoryCgroup {
  readonly dir: string;
  /** The kernel's accounting: peak usage (RSS, page cache and kernel memory such as socket buffers), how
   * often the limit was hit, and OOM kills. */
  readings(): { peakMb: number; limitHits: number; oomKills: number };
  remove(): Promise<void>;
}

/** Memory groups of earlier runs whose bench process is gone (it was killed before removing them). */
export function removeStaleMemoryCgroups(): void {
  if (!existsSync(ROOT)) return;
  for (const name of readdirSync(ROOT)) {
    const pid = /^sluice-bench-(\d+)-/.exec(name)?.[1];
    if (pid === undefined || existsSync(`/proc/${pid}`)) continue;
    try {
      rmdirSync(join(ROOT, name));
    } catch {
      // still has processes: left for the next run, which will have a different pid
    }
  }
}

export function createMemoryCgroup(name: string, limitBytes: number): MemoryCgroup {
  if (!existsSync(join(ROOT, 'memory.limit_in_bytes'))) {
    throw new Error(`--memory-limit needs the cgroup v1 memory controller at ${ROOT}`);
  }
  const dir = join(ROOT, `${PREFIX}${process.pid}-${name}`);
  mkdirSync(dir);
  writeFileSync(join(dir, 'memory.limit_in_bytes'), String(limitBytes));
  const read = (file: string): string => readFileSync(join(dir, file), 'utf8');
  return {
    dir,
    readings: () => ({
      peakMb: Number(read('memory.max_usage_in_bytes')) / 2 ** 20,
      limitHits: Number(read('memory.failcnt')),
      oomKills: Number(/^oom_kill (\d+)/m.exec(read('memory.oom_control'))?.[1] ?? 0),
    }),
    async remove() {
      if (!existsSync(dir)) return;
      await waitFor('the processes in ' + dir + ' to exit', () => read('cgroup.procs').trim() === '', {
        timeoutMs: 10_000,
        intervalMs: 100,
      });
      rmdirSync(dir);
    },
  };
}
