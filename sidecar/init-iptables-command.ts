/** `sluice init-iptables`: the init container that turns on transparent capture in a pod (see init-iptables.ts). */
import { networkInterfaces } from 'node:os';
import { parseArgs } from 'node:util';
import { UsageError } from '../cli/usage-error.ts';
import { jsonLogger } from '../controller/json-log.ts';
import {
  applyCapture,
  CaptureError,
  defaultCaptureConfig,
  hasRoutableIpv6,
  parseCidr,
  parsePortSpec,
  restoreInput,
  removalInput,
  type CaptureConfig,
  type IpFamily,
} from './init-iptables.ts';

export type Ipv6Mode = 'auto' | 'on' | 'off';

export interface InitIptablesOptions {
  config: CaptureConfig;
  ipv6: Ipv6Mode;
  dryRun: boolean;
  remove: boolean;
  help: boolean;
}

const d = defaultCaptureConfig;

const usage = `usage: sluice init-iptables [OPTIONS]

Programs the pod's nat table (IPv4 and, when the pod has IPv6, IPv6) so that TCP traffic goes through the
sidecar. Safe to run more than once. Needs root or CAP_NET_ADMIN in the pod's network namespace.

  --inbound-port PORT            where inbound connections are redirected (default ${d.inboundPort})
  --outbound-port PORT           where outbound connections are redirected (default ${d.outboundPort})
  --admin-port PORT              proxy admin/health port, never redirected (default ${d.adminPort})
  --proxy-uid UID                traffic of this uid is not captured (default ${d.proxyUid})
  --proxy-gid GID                traffic of this gid is not captured either (default: none)
  --exclude-inbound-ports LIST   ports or ranges (8080,9000-9100) not redirected inbound
  --exclude-outbound-ports LIST  destination ports or ranges not redirected outbound
  --exclude-outbound-cidrs LIST  destination CIDRs not redirected outbound
  --include-outbound-cidrs LIST  only these destinations are redirected outbound ('*' = all, the default;
                                 '' = none)
  --ipv6 auto|on|off             program ip6tables too (auto: when the pod has a non-link-local IPv6 address)
  --dry-run                      print the iptables-restore input instead of applying it
  --remove                       remove Sluice's chains and jumps instead
`;

export function parseInitIptablesArgs(args: string[]): InitIptablesOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        'inbound-port': { type: 'string' },
        'outbound-port': { type: 'string' },
        'admin-port': { type: 'string' },
        'proxy-uid': { type: 'string' },
        'proxy-gid': { type: 'string' },
        'exclude-inbound-ports': { type: 'string' },
        'exclude-outbound-ports': { type: 'string' },
        'exclude-outbound-cidrs': { type: 'string' },
        'include-outbound-cidrs': { type: 'string' },
        ipv6: { type: 'string' },
        'dry-run': { type: 'boolean' },
        remove: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new UsageError(
      `init-iptables: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}`,
    );
  }
  const v = parsed.values;
  const include = v['include-outbound-cidrs']?.trim();
  const config: CaptureConfig = {
    inboundPort: port(v['inbound-port'], d.inboundPort, '--inbound-port'),
    outboundPort: port(v['outbound-port'], d.outboundPort, '--outbound-port'),
    adminPort: port(v['admin-port'], d.adminPort, '--admin-port'),
    proxyUid: id(v['proxy-uid'], '--proxy-uid') ?? d.proxyUid,
    proxyGid: id(v['proxy-gid'], '--proxy-gid'),
    excludeInboundPorts: list(v['exclude-inbound-ports'], parsePortSpec, '--exclude-inbound-ports', 'port'),
    excludeOutboundPorts: list(
      v['exclude-outbound-ports'],
      parsePortSpec,
      '--exclude-outbound-ports',
      'port',
    ),
    excludeOutboundCidrs: list(v['exclude-outbound-cidrs'], parseCidr, '--exclude-outbound-cidrs', 'CIDR'),
    includeOutboundCidrs:
      include === undefined || include === '*'
        ? '*'
        : list(include, parseCidr, '--include-outbound-cidrs', 'CIDR'),
  };
  if (config.inboundPort === config.outboundPort) {
    throw new UsageError('init-iptables: --inbound-port and --outbound-port must differ');
  }
  const ipv6 = v.ipv6 ?? 'auto';
  if (ipv6 !== 'auto' && ipv6 !== 'on' && ipv6 !== 'off') {
    throw new UsageError(`init-iptables: --ipv6 must be auto, on or off, not '${ipv6}'`);
  }
  return { config, ipv6, dryRun: v['dry-run'] ?? false, remove: v.remove ?? false, help: v.help ?? false };
}

function port(text: string | undefined, fallback: number, flag: string): number {
  if (text === undefined) return fallback;
  const value = parsePortSpec(text.trim());
  if (value === undefined || value.includes(':')) {
    throw new UsageError(`init-iptables: ${flag} must be a port number (1-65535), not '${text}'`);
  }
  return Number(value);
}

function id(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const trimmed = text.trim();
  if (!/^\d{1,10}$/.test(trimmed) || Number(trimmed) > 0xfffffffe) {
    throw new UsageError(`init-iptables: ${flag} must be a numeric id, not '${text}'`);
  }
  return Number(trimmed);
}

function list(
  text: string | undefined,
  parse: (item: string) => string | undefined,
  flag: string,
  what: string,
): string[] {
  if (text === undefined) return [];
  const items = text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
  return items.map((item) => {
    const value = parse(item);
    if (value === undefined) throw new UsageError(`init-iptables: ${flag}: '${item}' is not a valid ${what}`);
    return value;
  });
}

export function familiesFor(mode: Ipv6Mode, podHasIpv6: () => boolean): IpFamily[] {
  if (mode === 'on' || (mode === 'auto' && podHasIpv6())) return [4, 6];
  return [4];
}

export async function main(args: string[]): Promise<number> {
  const options = parseInitIptablesArgs(args);
  if (options.help) {
    process.stdout.write(usage);
    return 0;
  }
  const log = jsonLogger('init-iptables');
  const families = familiesFor(options.ipv6, () => hasRoutableIpv6(networkInterfaces()));

  if (options.dryRun) {
    for (const family of families) {
      const tool = family === 4 ? 'iptables-restore' : 'ip6tables-restore';
      const input = options.remove ? removalInput() : restoreInput(options.config, family);
      process.stdout.write(`# ${tool} --noflush\n${input}`);
    }
    return 0;
  }

  try {
    for (const family of families) {
      await applyCapture(options.config, family, { remove: options.remove });
    }
  } catch (err) {
    if (!(err instanceof CaptureError)) throw err;
    log.error(err.message);
    return 1;
  }
  const c = options.config;
  const ipFamilies = families.map((f) => `IPv${f}`);
  if (options.remove) log.info('removed capture rules', { ipFamilies });
  else {
    log.info('capturing TCP', {
      ipFamilies,
      inboundPort: c.inboundPort,
      outboundPort: c.outboundPort,
      proxyUid: c.proxyUid,
      proxyGid: c.proxyGid,
    });
  }
  return 0;
}
