import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ClusterError } from './errors.ts';
import { run } from './exec.ts';

export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new ClusterError(
      'the local cluster needs root (it runs containers, mounts filesystems, changes iptables)',
    );
  }
}

/** The IPv4 address of the interface that carries the default route (or the first global one). */
export async function detectNodeIp(): Promise<string> {
  interface Route {
    dev?: string;
    prefsrc?: string;
  }
  interface Addr {
    ifname: string;
    addr_info: { family: string; local: string; scope: string }[];
  }
  const routes = JSON.parse(
    (await run('ip', ['-j', '-4', 'route', 'show', 'default'])).stdout || '[]',
  ) as Route[];
  const addrs = JSON.parse((await run('ip', ['-j', '-4', 'addr', 'show'])).stdout) as Addr[];
  const global = (a: Addr) => a.addr_info.filter((i) => i.family === 'inet' && i.scope === 'global');
  const defaultDev = routes.find((r) => r.dev)?.dev;
  const preferred = routes.find((r) => r.prefsrc)?.prefsrc;
  if (preferred) return preferred;
  const candidates = [
    ...addrs.filter((a) => a.ifname === defaultDev),
    ...addrs.filter((a) => a.ifname !== defaultDev),
  ];
  const ip = candidates.flatMap(global).find((i) => !i.local.startsWith('10.244.'))?.local;
  if (!ip) throw new ClusterError('no global IPv4 address on this host for the node to use');
  return ip;
}

/** Kernel settings the node needs. */
export const SYSCTLS: Readonly<Record<string, string>> = {
  'net.ipv4.ip_forward': '1',
  'net.bridge.bridge-nf-call-iptables': '1',
  'net.bridge.bridge-nf-call-ip6tables': '1',
};

const sysctlPath = (key: string): string => `/proc/sys/${key.replaceAll('.', '/')}`;

/**
 * The host's values before the cluster changed them are kept in the cluster's data directory (fixed per
 * host), so whichever checkout runs `down` restores them, also after another checkout's `up`.
 */
const savedSysctls = (dataDir: string): string => join(dataDir, 'host-sysctls.json');

export async function applySysctls(dataDir: string): Promise<void> {
  if (!existsSync(sysctlPath('net.bridge.bridge-nf-call-iptables'))) {
    await run('modprobe', ['br_netfilter']).catch(() => undefined);
  }
  const previous: Record<string, string> = {};
  for (const [key, value] of Object.entries(SYSCTLS)) {
    const path = sysctlPath(key);
    if (!existsSync(path)) throw new ClusterError(`kernel setting ${key} is missing (module br_netfilter?)`);
    previous[key] = readFileSync(path, 'utf8').trim();
    if (previous[key] !== value) writeFileSync(path, value);
  }
  if (!existsSync(savedSysctls(dataDir))) {
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(savedSysctls(dataDir), JSON.stringify(previous));
  }
}

export function restoreSysctls(dataDir: string): void {
  let previous: Record<string, string>;
  try {
    previous = JSON.parse(readFileSync(savedSysctls(dataDir), 'utf8')) as Record<string, string>;
  } catch {
    return; // nothing was changed, or it is already restored
  }
  for (const [key, value] of Object.entries(previous)) {
    if (!(key in SYSCTLS)) continue;
    try {
      writeFileSync(sysctlPath(key), value);
    } catch {
      // the setting went away (module unloaded): nothing to restore
    }
  }
}

const CAP_SYS_RESOURCE = 24n;

/** Whether this process may lower oom_score_adj (some sandboxes drop CAP_SYS_RESOURCE even for root). */
export function hasSysResourceCapability(): boolean {
  const line = readFileSync('/proc/self/status', 'utf8').match(/^CapEff:\s*([0-9a-f]+)$/m)?.[1] ?? '0';
  return ((BigInt(`0x${line}`) >> CAP_SYS_RESOURCE) & 1n) === 1n;
}
