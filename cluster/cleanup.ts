import { existsSync, readdirSync, readFileSync, readlinkSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CLUSTER } from './cluster-config.ts';
import { findDaemons, stopProcesses } from './daemons.ts';
import { run } from './exec.ts';

/** What `down` removed, for the progress output. */
export interface CleanupReport {
  processes: number;
  podProcesses: number;
  mounts: number;
  iptablesRules: number;
  cgroups: number;
  links: string[];
}

/** The stop order: the node agents first (so nothing restarts containers), the datastore last. */
const STOP_ORDER = [
  'kubelet',
  'kube-proxy',
  'containerd',
  'kube-scheduler',
  'kube-controller-manager',
  'kube-apiserver',
  'etcd',
];

const CGROUP_ROOT = '/sys/fs/cgroup';

/** Every cgroup directory named kubepods* (kubelet's pod cgroups) in every hierarchy, deepest first. */
function podCgroups(): string[] {
  const found: string[] = [];
  const walk = (dir: string, inPods: boolean): void => {
    let entries: string[];
    try {
      entries = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of entries) {
      const path = join(dir, name);
      const pods = inPods || name.startsWith('kubepods');
      try {
        if (!statSync(path).isDirectory()) continue;
      } catch {
        continue;
      }
      if (pods) walk(path, true);
      else if (dir === CGROUP_ROOT) walk(path, false);
      if (pods) found.push(path);
    }
  };
  walk(CGROUP_ROOT, false);
  return found.sort((a, b) => b.split('/').length - a.split('/').length);
}

function pidsIn(cgroups: readonly string[]): number[] {
  const pids = new Set<number>();
  for (const dir of cgroups) {
    try {
      for (const line of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n')) {
        if (line) pids.add(Number(line));
      }
    } catch {
      // gone already
    }
  }
  return [...pids];
}

/** Mount points at or under any of `roots`, deepest first. */
export function mountsUnder(roots: readonly string[]): string[] {
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\(\d{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8))))
    .filter((p) => roots.some((root) => p === root || p.startsWith(`${root}/`)));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** Chains kubelet makes on its own (kube-proxy --cleanup leaves them). */
export const KUBELET_CHAINS = ['KUBE-FIREWALL', 'KUBE-KUBELET-CANARY', 'KUBE-IPTABLES-HINT'];

/**
 * iptables-restore input deleting what the cluster left in the host's tables: the rules the CNI plugins
 * added for our pod network (they carry a comment naming it), the chains only those rules jump to, and
 * the chains in `chains` with every rule that jumps to them. Pure, so it is unit-tested.
 */
export function iptablesCleanup(
  save: string,
  network: string,
  chains: readonly string[] = KUBELET_CHAINS,
): { script: string; rules: number } {
  const marker = `name: \\"${network}\\"`;
  const out: string[] = [];
  let table = '';
  let deletes: string[] = [];
  const doomed = new Set<string>();
  let rules = 0;
  const flush = (): void => {
    if (deletes.length === 0 && doomed.size === 0) return;
    const names = [...doomed];
    out.push(
      `*${table}`,
      ...deletes,
      ...names.map((c) => `-F ${c}`),
      ...names.map((c) => `-X ${c}`),
      'COMMIT',
    );
  };
  for (const line of save.split('\n')) {
    if (line.startsWith('*')) {
      flush();
      table = line.slice(1);
      deletes = [];
      doomed.clear();
    } else if (line.startsWith(':')) {
      const chain = line.slice(1).split(' ')[0] ?? '';
      if (chains.includes(chain)) doomed.add(chain);
    } else if (line.startsWith('-A ')) {
      const [, chain = ''] = line.split(' ');
      const target = /-j ([\w-]+)/.exec(line)?.[1] ?? '';
      const ours = line.includes(marker);
      if (ours && target.startsWith('CNI-') && !target.startsWith('CNI-HOSTPORT')) doomed.add(target);
      // Rules inside doomed chains go with the flush; rules elsewhere that are ours or jump to them go now.
      if (doomed.has(chain) || (!ours && !chains.includes(target))) continue;
      deletes.push(`-D ${line.slice(3)}`);
      rules++;
    }
  }
  flush();
  return { script: out.length > 0 ? `${out.join('\n')}\n` : '', rules };
}

async function removeIptablesLeftovers(): Promise<number> {
  let removed = 0;
  for (const [save, restore] of [
    ['iptables-save', 'iptables-restore'],
    ['ip6tables-save', 'ip6tables-restore'],
  ] as const) {
    const dump = await run(save, []).catch(() => undefined);
    if (!dump) continue;
    const { script, rules } = iptablesCleanup(dump.stdout, CLUSTER.cniNetwork);
    if (!script) continue;
    await run(restore, ['--noflush'], { input: script });
    removed += rules;
  }
  return removed;
}

/**
 * Paths kubelet, containerd and libcni hard-code outside our directories. We remove our entries, and the
 * directories when they end up empty (a system containerd or kubelet keeps its own).
 */
function removeHardcodedLeftovers(podLogsDir: string): void {
  const remove = (dir: string, mine: (entry: string) => boolean): void => {
    for (const entry of safeReaddir(dir))
      if (mine(entry)) rmSync(join(dir, entry), { force: true, recursive: true });
  };
  remove('/var/log/containers', (link) => {
    try {
      return readlinkSync(join('/var/log/containers', link)).startsWith(`${podLogsDir}/`);
    } catch {
      return false;
    }
  });
  // libcni caches one result per sandbox and network: ours, and containerd's loopback for the same sandbox.
  const prefix = `${CLUSTER.cniNetwork}-`;
  const sandboxes = safeReaddir('/var/lib/cni/results')
    .filter((file) => file.startsWith(prefix))
    .map((file) => file.slice(prefix.length).split('-')[0]);
  remove('/var/lib/cni/results', (file) => {
    const [, sandbox] = /^cni-loopback-([0-9a-f]+)-/.exec(file) ?? [];
    return file.startsWith(prefix) || (sandbox !== undefined && sandboxes.includes(sandbox));
  });
  // Shim sockets and kubelet's device-plugin socket have no owner in their names: ours are the only
  // ones when nothing else is in the directory next to them.
  if (safeReaddir('/run/containerd').every((e) => e === 's'))
    rmSync('/run/containerd', { recursive: true, force: true });
  remove('/var/lib/kubelet/device-plugins', (file) => file === 'kubelet.sock');
  for (const dir of [
    '/var/log/containers',
    '/var/lib/cni/results',
    '/var/lib/cni',
    '/var/lib/kubelet/device-plugins',
    '/var/lib/kubelet',
  ]) {
    try {
      rmdirSync(dir);
    } catch {
      // not empty, or absent
    }
  }
}

export function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * Removes everything a cluster run created on the host — processes (also of a crashed run), pod
 * processes, mounts, pod cgroups, iptables rules, the bridge — in an order where nothing restarts
 * what was just removed. Safe to call when nothing is running.
 */
export async function cleanupHost(opts: {
  dataDir: string;
  runDir: string;
  kubeProxy?: string;
  kubeProxyConfig?: string;
  podLogsDir: string;
}): Promise<CleanupReport> {
  const report: CleanupReport = {
    processes: 0,
    podProcesses: 0,
    mounts: 0,
    iptablesRules: 0,
    cgroups: 0,
    links: [],
  };
  let daemons = findDaemons();
  const stop = async (name: string): Promise<void> => {
    const pids = daemons.get(name) ?? [];
    report.processes += pids.length;
    await stopProcesses(pids);
  };
  await stop('kubelet');
  // Containers do not carry our marker: find them by kubelet's pod cgroups.
  const podPids = pidsIn(podCgroups());
  report.podProcesses = podPids.length;
  await stopProcesses(podPids, 0);
  for (const name of STOP_ORDER.slice(1)) await stop(name);
  daemons = findDaemons(); // shims and anything unknown that is left
  for (const name of daemons.keys()) await stop(name);

  if (opts.kubeProxy && existsSync(opts.kubeProxy)) {
    await run(
      opts.kubeProxy,
      [
        '--cleanup',
        ...(opts.kubeProxyConfig && existsSync(opts.kubeProxyConfig)
          ? [`--config=${opts.kubeProxyConfig}`]
          : []),
      ],
      {
        okCodes: [1],
      },
    ).catch(() => undefined);
  }
  report.iptablesRules = await removeIptablesLeftovers();

  for (const point of mountsUnder([opts.dataDir, opts.runDir])) {
    await run('umount', ['--lazy', point]).catch(() => undefined);
    report.mounts++;
  }
  for (const dir of podCgroups()) {
    try {
      rmdirSync(dir);
      report.cgroups++;
    } catch {
      // still busy or gone
    }
  }
  removeHardcodedLeftovers(opts.podLogsDir);
  if (existsSync(`/sys/class/net/${CLUSTER.bridge}`)) {
    await run('ip', ['link', 'delete', CLUSTER.bridge]);
    report.links.push(CLUSTER.bridge);
  }
  return report;
}
