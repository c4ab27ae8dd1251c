// A benchmark's readings of other processes from /proc: CPU time and RSS of a process tree.
import { readFileSync } from 'node:fs';

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

export function procStats(pids: number[]): { rssMb: number; anonMb: number; cpuMs: number } {
  let rssKb = 0;
  let anonKb = 0;
  let ticks = 0;
  for (const pid of pids) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      rssKb += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      anonKb += Number(/RssAnon:\s+(\d+)/.exec(status)?.[1] ?? 0);
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]); // utime + stime: the kernel's TCP/TLS path counts
    } catch {
      // the process exited between listing and reading
    }
  }
  return { rssMb: rssKb / 1024, anonMb: anonKb / 1024, cpuMs: ticks * 10 };
}
