/**
 * Test "pods" as Linux network namespaces, for integration tests that need real addresses, real iptables and
 * several hosts on one machine. Needs root (CI runs as root); check `netnsUnavailableReason()` first.
 *
 * Topology of one harness:
 *
 *   root namespace:  bridge <id>b  (no IP address, no uplink)
 *                      ├── veth <id>v0 ── eth0 in namespace <id>-<pod0>   10.248.N.2/24, fd48:5cNN::2/64
 *                      ├── veth <id>v1 ── eth0 in namespace <id>-<pod1>   10.248.N.3/24, fd48:5cNN::3/64
 *                      └── …
 *
 * Each pod has lo up and a default route straight out of eth0 (no gateway). The bridge has no address and the
 * root namespace does not route for the test subnet, so nothing a pod sends can leave the bridge: a packet to
 * an address no pod owns just goes unanswered (its ARP/neighbour solicitation stays on the bridge).
 *
 * Service ClusterIPs (e.g. 10.96.0.10) are not real addresses anywhere. The client pod's outbound capture
 * (sidecar/init-iptables.ts) redirects a connection to the local sidecar in the nat OUTPUT chain, which runs
 * after the routing decision, so all a ClusterIP needs is *a* route — the default route above provides it.
 *
 * Names: <id> is `sl<pid>x<n>` (≤ 12 characters, so every interface name stays within Linux's 15). A harness
 * removes its namespaces, bridge and processes in destroy(), and at process exit if a test forgot; on creation
 * it also removes leftovers of earlier runs whose process is gone (a crashed or killed test run).
 *
 * Bridged traffic passes the root namespace's iptables FORWARD chain when br_netfilter is loaded with
 * bridge-nf-call-iptables=1 (as on this machine); it must not drop it (its policy here is ACCEPT). It also
 * passes the root namespace's connection tracking, which knows nothing of the pods' own NAT and sees each
 * pod-to-pod connection as it is on the wire. When that tracker takes a packet for invalid (a client reusing
 * a source port whose earlier connection it still counts as open: a SYN there is "ignored", i.e. INVALID),
 * a rule such as kube-proxy's `KUBE-FORWARD … --ctstate INVALID -j DROP` (present while the local cluster
 * runs) drops it silently: under the fuzz test's load whole bursts of new connections stayed in SYN-SENT
 * for over a minute, counted in no pod. So each harness exempts its bridge from the root namespace's
 * tracking (raw PREROUTING, `-i <bridge> -j CT --notrack`, tagged with the bridge's name and removed with
 * it); the pods keep their own conntrack, which their NAT rules need.
 */
import { spawn, spawnSync, type ChildProcess, type StdioOptions } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { processAlive } from '../../lib/process-alive.ts';
import { waitFor } from './wait-for.ts';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** Node 24 (the system node may be older): start Node processes inside namespaces with this absolute path. */
export const nodeBin = resolve(repoRoot, 'node_modules/.bin/node');

export interface Pod {
  name: string;
  /** Network namespace name (`ip netns exec <ns> …`). */
  ns: string;
  ip: string;
  /** IPv6 address, when the harness was created with ipv6 (the default). */
  ip6: string | undefined;
  index: number;
}

export interface ExecOptions {
  /** Run as this uid (via setpriv); the gid defaults to the same number. */
  uid?: number;
  gid?: number;
  env?: Record<string, string | undefined>;
  cwd?: string;
  stdio?: StdioOptions;
  /** A cgroup v1 memory group (its directory under /sys/fs/cgroup/memory) to run in from the start. */
  cgroup?: string;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

const namePattern = /^sl(\d{1,7})x([0-9a-z]{1,2})(?:b|[vp][0-9a-z]{1,2}|-.+)$/;
const createdHere = new Set<string>();
const liveHarnesses = new Set<NetnsHarness>();
let harnessCounter = 0;

/** Why netns tests cannot run here, or undefined when they can. */
export function netnsUnavailableReason(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'network namespace tests need root (CI runs them as root)';
  const ip = spawnSync('ip', ['-V'], { stdio: 'ignore' });
  if (ip.error !== undefined || ip.status !== 0) return "the 'ip' command (iproute2) is missing";
  return undefined;
}

export class NetnsHarness {
  readonly id: string;
  readonly bridge: string;
  readonly subnet: number;
  readonly ipv6: boolean;
  private readonly pods: Pod[] = [];
  private readonly children = new Set<ChildProcess>();
  private destroyed = false;

  private constructor(ipv6: boolean) {
    const n = harnessCounter++;
    this.id = `sl${process.pid}x${(n % 1296).toString(36)}`;
    this.bridge = `${this.id}b`;
    this.subnet = n % 256;
    this.ipv6 = ipv6;
  }

  /** Removes stale leftovers, then creates the bridge. */
  static async create(options: { ipv6?: boolean } = {}): Promise<NetnsHarness> {
    const reason = netnsUnavailableReason();
    if (reason !== undefined) throw new Error(reason);
    cleanupLeftovers();
    const harness = new NetnsHarness(options.ipv6 ?? true);
    createdHere.add(harness.id);
    liveHarnesses.add(harness);
    try {
      await ip(['link', 'add', harness.bridge, 'type', 'bridge']);
      await ip(['link', 'set', harness.bridge, 'up']);
      if (process.env.SEC_TRACK === undefined) untrackBridge(harness.bridge, true);
    } catch (err) {
      await harness.destroy();
      throw err;
    }
    return harness;
  }

  /** A namespace plugged into the bridge, with an address, lo up and a default route. */
  async createPod(name: string): Promise<Pod> {
    if (this.destroyed) throw new Error('harness already destroyed');
    if (!/^[a-z0-9][a-z0-9-]{0,30}$/.test(name)) throw new Error(`bad pod name '${name}'`);
    const index = this.pods.length;
    if (index >= 36) throw new Error('at most 36 pods per harness');
    const host = `${this.id}v${index.toString(36)}`;
    const peer = `${this.id}p${index.toString(36)}`;
    const pod: Pod = {
      name,
      ns: `${this.id}-${name}`,
      ip: `10.248.${this.subnet}.${index + 2}`,
      ip6: this.ipv6
        ? `fd48:5c${this.subnet.toString(16).padStart(2, '0')}::${(index + 2).toString(16)}`
        : undefined,
      index,
    };
    this.pods.push(pod); // before creating anything, so destroy() removes a half-built pod too
    await ip(['netns', 'add', pod.ns]);
    await ip(['link', 'add', host, 'type', 'veth', 'peer', 'name', peer]);
    await ip(['link', 'set', peer, 'netns', pod.ns]);
    await ip(['link', 'set', host, 'master', this.bridge, 'up']);
    const inPod = (args: string[]): Promise<void> => ip(['-n', pod.ns, ...args]);
    await inPod(['link', 'set', peer, 'name', 'eth0']);
    await inPod(['addr', 'add', `${pod.ip}/24`, 'dev', 'eth0']);
    if (pod.ip6 !== undefined) await inPod(['-6', 'addr', 'add', `${pod.ip6}/64`, 'dev', 'eth0', 'nodad']);
    await inPod(['link', 'set', 'lo', 'up']);
    await inPod(['link', 'set', 'eth0', 'up']);
    await inPod(['route', 'add', 'default', 'dev', 'eth0']);
    if (pod.ip6 !== undefined) await inPod(['-6', 'route', 'add', 'default', 'dev', 'eth0']);
    return pod;
  }

  /** Starts a process inside the pod (optionally as another uid); it is killed by destroy() at the latest. */
  exec(pod: Pod, command: string, args: string[] = [], options: ExecOptions = {}): ChildProcess {
    const child = spawn(
      'ip',
      ['netns', 'exec', pod.ns, ...inCgroup(options), ...asUser(options), command, ...args],
      {
        stdio: options.stdio ?? ['ignore', 'pipe', 'pipe'],
        env: childEnv(options),
        cwd: options.cwd ?? repoRoot,
      },
    );
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    child.on('error', () => this.children.delete(child));
    return child;
  }

  /** Runs a command in the pod to completion; resolves whatever its exit code. */
  run(
    pod: Pod,
    command: string,
    args: string[] = [],
    options: ExecOptions & { timeoutMs?: number } = {},
  ): Promise<RunResult> {
    // A guard against a hung command, not a wait: generous, as a busy machine starts Node slowly.
    const timeoutMs = options.timeoutMs ?? 60_000;
    return new Promise<RunResult>((resolvePromise, reject) => {
      const child = this.exec(pod, command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
      child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`timed out after ${timeoutMs} ms: ${command} ${args.join(' ')}`));
      }, timeoutMs);
      child.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        resolvePromise({ code, stdout, stderr });
      });
    });
  }

  /** Runs a command in the pod and returns its stdout; rejects (with its stderr) unless it exits 0. */
  async runIn(
    pod: Pod,
    command: string,
    args: string[] = [],
    options: ExecOptions & { timeoutMs?: number } = {},
  ): Promise<string> {
    const result = await this.run(pod, command, args, options);
    if (result.code !== 0) {
      throw new Error(
        `in ${pod.name}: '${[command, ...args].join(' ')}' exited ${result.code}: ${result.stderr.trim()}`,
      );
    }
    return result.stdout;
  }

  /**
   * Waits until something in the pod listens on ip:port (or on a wildcard address at that port). It looks at
   * the socket table instead of connecting, so the probe is neither captured by iptables nor seen by servers.
   */
  async waitForPort(pod: Pod, address: string, port: number, timeoutMs = 60_000): Promise<void> {
    const wanted = new Set([address, `[${address}]`, '0.0.0.0', '*', '[::]', '::', '[::ffff:0.0.0.0]']);
    const listening = async (): Promise<boolean> => {
      const table = await this.runIn(pod, 'ss', ['-Hltn']);
      return table.split('\n').some((line) => {
        const local = line.trim().split(/\s+/)[3];
        if (local === undefined) return false;
        const colon = local.lastIndexOf(':');
        const host = local.slice(0, colon).replace(/%.*$/, '');
        return local.slice(colon + 1) === String(port) && wanted.has(host);
      });
    };
    await waitFor(`something to listen on ${address}:${port} in ${pod.name}`, listening, {
      timeoutMs,
      intervalMs: 50,
    });
  }

  /** Kills the processes, deletes namespaces, veths and the bridge. Safe to call twice or after a failure. */
  async destroy(): Promise<void> {
    this.destroyed = true;
    const exits = [...this.children].map(
      (child) =>
        new Promise<void>((done) => {
          if (child.exitCode !== null || child.signalCode !== null) {
            done();
            return;
          }
          child.once('exit', () => {
            done();
          });
          child.kill('SIGTERM');
          setTimeout(() => {
            child.kill('SIGKILL');
            done();
          }, 1000).unref();
        }),
    );
    await Promise.all(exits);
    removeNames(
      this.pods.map((p) => p.ns),
      this.ownedLinks(),
    );
    liveHarnesses.delete(this);
  }

  private ownedLinks(): string[] {
    const links = this.pods.flatMap((p) => [
      `${this.id}v${p.index.toString(36)}`,
      `${this.id}p${p.index.toString(36)}`,
    ]);
    return [...links, this.bridge];
  }

  /** Synchronous last resort used at process exit. */
  destroySync(): void {
    for (const child of this.children) child.kill('SIGKILL');
    removeNames(
      this.pods.map((p) => p.ns),
      this.ownedLinks(),
    );
    liveHarnesses.delete(this);
  }
}

let scratchCoverageDir: string | undefined;

/**
 * The environment for a child: ours plus `options.env`. Under c8, a process running as another user cannot
 * write to our coverage directory (and says so on stderr); Node passes NODE_V8_COVERAGE on to children even
 * when it is removed, so such children get a world-writable scratch directory instead.
 */
function childEnv(options: ExecOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...options.env };
  if (env.NODE_V8_COVERAGE && options.uid !== undefined && options.uid !== process.getuid?.()) {
    if (scratchCoverageDir === undefined) {
      scratchCoverageDir = mkdtempSync(join(tmpdir(), 'sluice-coverage-'));
      chmodSync(scratchCoverageDir, 0o1777);
      process.on('exit', () => rmSync(scratchCoverageDir!, { recursive: true, force: true }));
    }
    env.NODE_V8_COVERAGE = scratchCoverageDir;
  }
  return env;
}

/**
 * Joins the cgroup before exec, so that the process starts inside it and Node sizes V8's heap from its limit.
 * `ip netns exec` mounts a fresh /sys without the cgroup filesystems: the memory hierarchy is mounted again
 * in the command's own mount namespace (as a container has it), where Node reads the limit.
 */
function inCgroup(options: ExecOptions): string[] {
  if (options.cgroup === undefined) return [];
  const mount =
    'mount -t tmpfs none /sys/fs/cgroup && mkdir /sys/fs/cgroup/memory && ' +
    'mount -t cgroup -o memory none /sys/fs/cgroup/memory';
  return ['sh', '-c', `${mount} && echo $$ > "$0/cgroup.procs" && exec "$@"`, options.cgroup];
}

function asUser(options: ExecOptions): string[] {
  if (options.uid === undefined && options.gid === undefined) return [];
  const uid = options.uid ?? 0;
  const gid = options.gid ?? uid;
  return ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--'];
}

function ip(args: string[]): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolvePromise();
      else reject(new Error(`ip ${args.join(' ')}: ${stderr.trim() || `exit ${code}`}`));
    });
  });
}

/** Kills what runs in the namespaces, then deletes namespaces and links; missing ones are fine. */
function removeNames(namespaces: string[], links: string[]): void {
  for (const ns of namespaces) {
    if (!existsSync(`/run/netns/${ns}`)) continue;
    const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout;
    for (const pid of pids.split('\n').filter((p) => /^\d+$/.test(p))) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
    spawnSync('ip', ['netns', 'delete', ns], { stdio: 'ignore' });
  }
  for (const link of links) {
    if (/b$/.test(link)) untrackBridge(link, false);
    if (existsSync(`/sys/class/net/${link}`)) spawnSync('ip', ['link', 'delete', link], { stdio: 'ignore' });
  }
}

/**
 * Adds (or removes every copy of) the root namespace's rule that keeps a bridge's packets out of its
 * connection tracking (see the header), for IPv4 and IPv6. Where iptables is missing, nothing is done.
 */
function untrackBridge(bridge: string, add: boolean): void {
  const rule = ['PREROUTING', '-i', bridge, '-m', 'comment', '--comment', `sluice-netns ${bridge}`];
  for (const cmd of ['iptables', 'ip6tables']) {
    const run = (op: string): number | null =>
      spawnSync(cmd, ['-w', '-t', 'raw', op, ...rule, '-j', 'CT', '--notrack'], { stdio: 'ignore' }).status;
    if (add) run('-I');
    else for (let i = 0; i < 10 && run('-D') === 0; i++);
  }
}

/**
 * Removes namespaces and links left by harnesses whose process is gone, or that carry this process's pid
 * without having been created by it (a crashed run that had the same pid, as happens in fresh containers).
 */
export function cleanupLeftovers(): void {
  const isStale = (name: string): boolean => {
    const match = namePattern.exec(name);
    if (!match) return false;
    const pid = Number(match[1]);
    const id = `sl${match[1]}x${match[2]}`;
    return pid === process.pid ? !createdHere.has(id) : !processAlive(pid);
  };
  const namespaces = existsSync('/run/netns') ? readdirSync('/run/netns').filter(isStale) : [];
  const links = readdirSync('/sys/class/net').filter(isStale);
  // Untracking rules of bridges already gone.
  // (stdout is null when iptables is missing, whatever the type says)
  const rules = spawnSync('iptables', ['-w', '-t', 'raw', '-S', 'PREROUTING'], {
    encoding: 'utf8',
  }).stdout as string | null;
  for (const [, bridge] of (rules ?? '').matchAll(/sluice-netns (sl\w+b)\b/g))
    if (isStale(bridge!) && !links.includes(bridge!)) untrackBridge(bridge!, false);
  // Namespaces first: deleting one also deletes its veth and so the peer in the root namespace.
  removeNames(namespaces, links);
}

process.on('exit', () => {
  for (const harness of liveHarnesses) harness.destroySync();
});
