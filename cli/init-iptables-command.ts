/** `sluice init-iptables`: the init container that turns on transparent capture in a pod (see init-iptables.ts). */
import { networkInterfaces } from 'node:os';
import {
  defaultCaptureConfig,
  parseInitIptablesArgs,
  type IpFamily,
  type Ipv6Mode,
} from '../protocol/capture-config.ts';
import {
  applyCapture,
  CaptureError,
  hasRoutableIpv6,
  restoreInput,
  removalInput,
} from '../sidecar/init-iptables.ts';
import { jsonLogger } from '../lib/json-log.ts';

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
