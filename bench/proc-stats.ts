// A benchmark's readings of other processes from /proc: CPU time and RSS of a process tree.
import { readdirSync, readFileSync } from 'node:fs';

/** A process and its descendants (nginx: master and worker). */
export function tree(pid: number): number[] {
  let children: number[];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
  return [pid, ...children.flatMap(tree)];
}

/** cpuMs: user + system; sysMs: the system part (syscalls, the kernel's TCP path, softirqs run in the process). */
export function procStats(pids: number[]): { rssMb: number; anonMb: number; cpuMs: number; sysMs: number } {
  let rssKb = 0;
  let anonKb = 0;
  let ticks = 0;
  let sysTicks = 0;
  for (const pid of pids) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      rssKb += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      anonKb += Number(/RssAnon:\s+(\d+)/.exec(status)?.[1] ?? 0);
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]); // utime + stime: the kernel's TCP/TLS path counts
      sysTicks += Number(fields[12]);
    } catch {
      // the process exited between listing and reading
    }
  }
  return { rssMb: rssKb / 1024, anonMb: anonKb / 1024, cpuMs: ticks * 10, sysMs: sysTicks * 10 };
}

/**
 * CPU so far (user + system, ms) of a process tree's threads, by what they are: each process's main thread
 * ("main"), and the others by name (V8's workers, libuv's pool, Node's own), digits dropped.
 */
export function threadCpuMs(pids: number[]): Map<string, number> {
  const byName = new Map<string, number>();
  for (const pid of pids) {
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const tid of tasks) {
      try {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const name =
          tid === String(pid)
            ? 'main'
            : stat
                .slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
                .replace(/\d+/g, '')
                .trim();
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        byName.set(name, (byName.get(name) ?? 0) + (Number(fields[11]) + Number(fields[12])) * 10);
      } catch {
        // the thread ended between listing and reading
      }
    }
  }
  return byName;
}
