import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ClusterError } from './errors.ts';
import { tail } from './exec.ts';

/** A long-running host process of the cluster (etcd, kube-apiserver, containerd, kubelet...). */
export interface DaemonSpec {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
}

/**
 * Every daemon carries this variable (value: its name), and so do the processes it starts (containerd's
 * shims). It lets `down` and a later `up` find them even when the previous run crashed, whichever checkout
 * started them: the cluster's ports and directories are fixed, so a host has at most one.
 */
const MARKER = 'SLUICE_CLUSTER_DAEMON';

export function logFile(logDir: string, name: string): string {
  return join(logDir, `${name}.log`);
}

export function startDaemon(spec: DaemonSpec, logDir: string): number {
  mkdirSync(logDir, { recursive: true });
  const fd = openSync(logFile(logDir, spec.name), 'a');
  try {
    const child = spawn(spec.command, spec.args, {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { ...process.env, ...spec.env, [MARKER]: spec.name },
    });
    child.unref();
    if (child.pid === undefined) throw new ClusterError(`${spec.name}: could not start ${spec.command}`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/** The processes of the cluster, by daemon name (a name may have several: containerd and its shims). */
export function findDaemons(): Map<string, number[]> {
  const found = new Map<string, number[]>();
  const prefix = `${MARKER}=`;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${entry}/environ`, 'latin1');
    } catch {
      continue; // gone, or a kernel thread
    }
    const marker = environ.split('\0').find((v) => v.startsWith(prefix));
    if (!marker) continue;
    const name = marker.slice(prefix.length);
    found.set(name, [...(found.get(name) ?? []), Number(entry)]);
  }
  return found;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/stat`, 'latin1').includes(') Z ');
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL for whatever is still alive after `graceMs`. */
export async function stopProcesses(pids: readonly number[], graceMs = 10_000): Promise<void> {
  for (const pid of pids) signal(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (pids.some(isAlive) && Date.now() < deadline) await sleep(100);
  for (const pid of pids.filter(isAlive)) signal(pid, 'SIGKILL');
  while (pids.some(isAlive)) await sleep(50);
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Polls `check` until it returns true; fails early when the daemon died, quoting its log. */
export async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  options: { timeoutMs: number; pid?: number; log?: string },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (options.pid !== undefined && !isAlive(options.pid)) {
      throw new ClusterError(`${what}: the process exited. ${logTail(options.log)}`);
    }
    if (Date.now() > deadline) {
      throw new ClusterError(
        `${what}: not ready after ${options.timeoutMs / 1000} s. ${logTail(options.log)}`,
      );
    }
    await sleep(250);
  }
}

function logTail(log: string | undefined): string {
  if (!log) return '';
  try {
    return `Last log lines (${log}): ${tail(readFileSync(log, 'utf8'), 3)}`;
  } catch {
    return '';
  }
}
