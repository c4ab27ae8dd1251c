/**
 * Transparent capture: the nat rules a pod's init container installs so that the sidecar sees the pod's TCP
 * traffic without the application knowing.
 *
 * Rule generation is pure (config + current `iptables-save -t nat` text → `iptables-restore --noflush` input);
 * applying it is a thin wrapper that shells out to iptables-save / iptables-restore (and their ip6tables twins).
 *
 * Chains (all in the nat table, all owned by Sluice and rebuilt from scratch on every run):
 *
 *   PREROUTING  -p tcp → SLUICE_INBOUND      connections arriving from outside the pod
 *   OUTPUT      -p tcp → SLUICE_OUTPUT       connections opened by processes in the pod
 *   SLUICE_INBOUND      RETURN for the admin port and excluded inbound ports, else → SLUICE_IN_REDIRECT
 *   SLUICE_IN_REDIRECT  REDIRECT to the inbound port (default 15006)
 *   SLUICE_OUTPUT       see below
 *   SLUICE_REDIRECT     REDIRECT to the outbound port (default 15001)
 *
 * SLUICE_OUTPUT, in order:
 *   1. source 127.0.0.6 (::1) out lo → RETURN. The inbound side of the proxy binds this source address when it
 *      hands a connection to the application at the pod IP, so that hand-off is not captured again.
 *   2. proxy uid/gid, out lo, destination not loopback → SLUICE_INBOUND. This is the hairpin: an app calls a
 *      Service whose endpoint is its own pod; the outbound proxy then dials the pod IP, which the kernel routes
 *      over lo. Sending it through the inbound chain gives it the same treatment (inbound policy, admin/excluded
 *      ports) as a call from another pod.
 *   3. proxy uid/gid → RETURN: everything else the proxy dials is never captured (no loops).
 *   4. out lo → RETURN: app-to-app traffic inside the pod (127.0.0.1, ::1, or the pod's own IP) is left alone.
 *   5. excluded outbound ports and CIDRs → RETURN.
 *   6. included CIDRs (default: everything) → SLUICE_REDIRECT.
 *
 * Contract for the proxy: read the real destination with SO_ORIGINAL_DST (sidecar/original-dst.ts); forward
 * inbound connections to the application at podIP:port from source 127.0.0.6 / ::1 (or, opted in, at
 * 127.0.0.1:port, which exposes the app's loopback-only ports); and refuse
 * a connection whose original destination is one of its own listener ports, which would otherwise loop.
 *
 * Only TCP is captured; DNS and other UDP traffic flow untouched.
 *
 * IPv6 guard. A pod whose only IPv6 address is link-local (fe80::/10, which every interface has) gets no IPv6
 * capture, yet an app listening on `::` is reachable over that address from any pod on the same link. For such
 * pods the filter table gets instead (ipv6GuardInput):
 *
 *   INPUT (first rule) → SLUICE_IN6_GUARD
 *   SLUICE_IN6_GUARD   RETURN for lo, for RELATED/ESTABLISHED and for neighbour solicitation/advertisement
 *                      (so the pod's own link-local traffic still resolves), DROP everything else.
 */
import { spawn } from 'node:child_process';
import { isIPv4, isIPv6 } from 'node:net';
import type { CaptureConfig, IpFamily } from '../protocol/capture-config.ts';

export const chains = {
  inbound: 'SLUICE_INBOUND',
  inRedirect: 'SLUICE_IN_REDIRECT',
  output: 'SLUICE_OUTPUT',
  redirect: 'SLUICE_REDIRECT',
} as const;

const ownedChains: readonly string[] = [chains.inbound, chains.inRedirect, chains.output, chains.redirect];

/** The filter chain that drops inbound IPv6 to a pod without a routable IPv6 address. */
export const ipv6GuardChain = 'SLUICE_IN6_GUARD';

/** The jump to the guard, as ip6tables-save prints it; installed with -I so that it comes first. */
export const ipv6GuardHook = `-A INPUT -j ${ipv6GuardChain}`;

export function ipv6GuardRules(): string[] {
  const c = ipv6GuardChain;
  return [
    `-A ${c} -i lo -j RETURN`,
    `-A ${c} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN`,
    `-A ${c} -p ipv6-icmp -m icmp6 --icmpv6-type 135 -j RETURN`,
    `-A ${c} -p ipv6-icmp -m icmp6 --icmpv6-type 136 -j RETURN`,
    `-A ${c} -j DROP`,
  ];
}

/** `ip6tables-restore --noflush` input for the filter table: exactly the guard, first in INPUT. */
export function ipv6GuardInput(currentFilterSave = ''): string {
  const present = existingHooks(currentFilterSave, [ipv6GuardChain]);
  const upToDate = present.length === 1 && present[0] === ipv6GuardHook;
  const lines = ['*filter', `:${ipv6GuardChain} - [0:0]`];
  if (!upToDate) lines.push(...present.map(deletionOf));
  lines.push(...ipv6GuardRules());
  if (!upToDate) lines.push(ipv6GuardHook.replace(/^-A /, '-I '));
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** Input that removes the guard from the filter table; empty when there is none. */
export function ipv6GuardRemovalInput(currentFilterSave = ''): string {
  if (!currentFilterSave.includes(`:${ipv6GuardChain} `)) return '';
  const hooks = existingHooks(currentFilterSave, [ipv6GuardChain]);
  return [
    '*filter',
    `:${ipv6GuardChain} - [0:0]`,
    ...hooks.map(deletionOf),
    `-X ${ipv6GuardChain}`,
    'COMMIT',
    '',
  ].join('\n');
}

/** Source address the inbound proxy binds when it connects to the application at the pod IP. */
export const inboundPassthroughSource: Record<IpFamily, string> = { 4: '127.0.0.6/32', 6: '::1/128' };

const loopback: Record<IpFamily, string> = { 4: '127.0.0.0/8', 6: '::1/128' };

/** The jumps from the built-in chains, written exactly the way iptables-save prints them back. */
export const hookRules: readonly string[] = [
  `-A PREROUTING -p tcp -j ${chains.inbound}`,
  `-A OUTPUT -p tcp -j ${chains.output}`,
];

/** The rules of the owned chains for one address family (without the chain declarations). */
export function chainRules(config: CaptureConfig, family: IpFamily): string[] {
  const rules: string[] = [];
  const add = (chain: string, spec: string): void => {
    rules.push(`-A ${chain} ${spec}`);
  };

  for (const port of [String(config.adminPort), ...config.excludeInboundPorts]) {
    add(chains.inbound, `-p tcp -m tcp --dport ${port} -j RETURN`);
  }
  add(chains.inbound, `-p tcp -j ${chains.inRedirect}`);
  add(chains.inRedirect, `-p tcp -j REDIRECT --to-ports ${config.inboundPort}`);

  const proxyOwners = [`--uid-owner ${config.proxyUid}`];
  if (config.proxyGid !== undefined) proxyOwners.push(`--gid-owner ${config.proxyGid}`);

  add(chains.output, `-s ${inboundPassthroughSource[family]} -o lo -j RETURN`);
  for (const owner of proxyOwners) {
    add(chains.output, `! -d ${loopback[family]} -o lo -m owner ${owner} -j ${chains.inbound}`);
  }
  for (const owner of proxyOwners) add(chains.output, `-m owner ${owner} -j RETURN`);
  add(chains.output, '-o lo -j RETURN');
  for (const port of config.excludeOutboundPorts)
    add(chains.output, `-p tcp -m tcp --dport ${port} -j RETURN`);
  for (const cidr of cidrsOfFamily(config.excludeOutboundCidrs, family)) {
    add(chains.output, `-d ${cidr} -j RETURN`);
  }
  if (config.includeOutboundCidrs === '*') {
    add(chains.output, `-j ${chains.redirect}`);
  } else {
    for (const cidr of cidrsOfFamily(config.includeOutboundCidrs, family)) {
      add(chains.output, `-d ${cidr} -j ${chains.redirect}`);
    }
  }
  add(chains.redirect, `-p tcp -j REDIRECT --to-ports ${config.outboundPort}`);
  return rules;
}

/** Hook rules currently present in built-in chains (lines of `iptables-save`) that jump to our chains. */
export function existingHooks(currentSave: string, owned: readonly string[] = ownedChains): string[] {
  return currentSave
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => {
      const match = /^-A ([A-Z]+) .*-j ([A-Z0-9_]+)$/.exec(line);
      return match !== null && !owned.includes(match[1]!) && owned.includes(match[2]!);
    });
}

/**
 * `iptables-restore --noflush` input that leaves the nat table with exactly Sluice's rules, whatever an earlier
 * run left behind: declaring an owned chain flushes it, stale or duplicated hooks are deleted, and hooks
 * that are already right are kept (so a re-run does not even move them).
 */
export function restoreInput(config: CaptureConfig, family: IpFamily, currentSave = ''): string {
  const present = existingHooks(currentSave);
  const upToDate = present.length === hookRules.length && hookRules.every((rule) => present.includes(rule));
  const lines = ['*nat', ...ownedChains.map((chain) => `:${chain} - [0:0]`)];
  if (!upToDate) lines.push(...present.map(deletionOf));
  lines.push(...chainRules(config, family));
  if (!upToDate) lines.push(...hookRules);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** Input that removes every trace of Sluice from the nat table. */
export function removalInput(currentSave = ''): string {
  return [
    '*nat',
    ...ownedChains.map((chain) => `:${chain} - [0:0]`),
    ...existingHooks(currentSave).map(deletionOf),
    ...ownedChains.map((chain) => `-X ${chain}`),
    'COMMIT',
    '',
  ].join('\n');
}

function deletionOf(appendRule: string): string {
  return appendRule.replace(/^-A /, '-D ');
}

export function cidrsOfFamily(cidrs: readonly string[], family: IpFamily): string[] {
  return cidrs.filter((cidr) => (family === 4 ? isIPv4 : isIPv6)(cidr.split('/')[0] ?? ''));
}

type Interfaces = NodeJS.Dict<{ family: string | number; address: string; internal: boolean }[]>;

/** Whether the pod has a non-loopback, non-mapped IPv6 address that `keep` accepts. */
function someIpv6(interfaces: Interfaces, keep: (address: string) => boolean): boolean {
  return Object.values(interfaces).some((addresses) =>
    (addresses ?? []).some(
      (a) =>
        (a.family === 'IPv6' || a.family === 6) &&
        !a.internal &&
        !a.address.toLowerCase().startsWith('::ffff:') &&
        keep(a.address),
    ),
  );
}

/** True when the pod has an IPv6 address beyond loopback and link-local, i.e. IPv6 traffic can leave it. */
export function hasRoutableIpv6(interfaces: Interfaces): boolean {
  return someIpv6(interfaces, (address) => !/^fe[89ab]/i.test(address));
}

/** True when the pod has any IPv6 address beyond loopback (link-local counts: it is reachable on the link). */
export function hasIpv6(interfaces: Interfaces): boolean {
  return someIpv6(interfaces, () => true);
}

/** An environment problem (iptables missing, not permitted, rejected input), reported as one line. */
export class CaptureError extends Error {
  override name = 'CaptureError';
}

const tools: Record<IpFamily, { save: string; restore: string }> = {
  4: { save: 'iptables-save', restore: 'iptables-restore' },
  6: { save: 'ip6tables-save', restore: 'ip6tables-restore' },
};

/** What init-iptables programs for one address family: capture (nat) or, IPv6 only, the guard (filter). */
export type FamilyRules = 'capture' | 'ipv6-guard';

/**
 * The restore input for one family, given what the nat and filter tables hold now: the wanted rules, plus the
 * removal of the other kind if an earlier run left it (IPv6 only; the guard never exists for IPv4).
 */
export function familyInput(
  config: CaptureConfig,
  family: IpFamily,
  rules: FamilyRules,
  current: { nat: string; filter: string } = { nat: '', filter: '' },
  remove = false,
): string {
  const natPresent = current.nat.includes(`:${chains.output} `);
  const guardRemoval = family === 6 ? ipv6GuardRemovalInput(current.filter) : '';
  if (remove) return removalInput(current.nat) + guardRemoval;
  if (rules === 'capture') return restoreInput(config, family, current.nat) + guardRemoval;
  return (natPresent ? removalInput(current.nat) : '') + ipv6GuardInput(current.filter);
}

/** Installs (or, with `remove`, uninstalls) the rules for one family; returns the restore input used. */
export async function applyCapture(
  config: CaptureConfig,
  family: IpFamily,
  options: { remove?: boolean; rules?: FamilyRules } = {},
): Promise<string> {
  const { save, restore } = tools[family];
  const nat = await runTool(save, ['-t', 'nat']);
  const filter = family === 6 ? await runTool(save, ['-t', 'filter']) : '';
  const input = familyInput(config, family, options.rules ?? 'capture', { nat, filter }, options.remove);
  if (input !== '') await runTool(restore, ['--wait', '5', '--noflush'], input);
  return input;
}

function runTool(command: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.stdin.on('error', () => undefined); // the tool may exit before reading its input; its exit says why
    child.on('error', (err: NodeJS.ErrnoException) => {
      reject(
        new CaptureError(
          err.code === 'ENOENT'
            ? `${command} not found: install iptables (e.g. 'apt-get install iptables')`
            : `cannot run ${command}: ${err.message}`,
        ),
      );
    });
    child.on('close', (code, signal) => {
      if (code === 0) {
        resolve(stdout);
      } else if (/permission denied|operation not permitted|you must be root/i.test(stderr)) {
        reject(new CaptureError(`${command}: permission denied (needs root or CAP_NET_ADMIN in the pod)`));
      } else {
        const lines = stderr.split('\n').filter((line) => line.trim() !== '' && !line.startsWith('Try `'));
        const detail = lines.map((line) => line.trim()).join('; ') || `exit ${code ?? signal}`;
        reject(new CaptureError(`${command} failed: ${detail}`));
      }
    });
    child.stdin.end(input ?? '');
  });
}
