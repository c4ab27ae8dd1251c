/**
 * Self-loop guard: a connection whose original destination is one of the proxy's own listener ports on one of
 * the pod's own addresses would be forwarded back into the proxy, which forwards it again, and so on (each
 * round opens two more sockets). Both listeners refuse such connections before doing anything else.
 */
import { isIPv4 } from 'node:net';
import { networkInterfaces } from 'node:os';

/** One text form per address: IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes `a.b.c.d`, IPv6 lower case. */
export function normalizeAddress(address: string): string {
  const lower = address.toLowerCase().replace(/%.*$/, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  return mapped ? mapped[1]! : lower;
}

function isLoopback(address: string): boolean {
  return address === '::1' || (isIPv4(address) && address.startsWith('127.'));
}

/** The addresses of the pod's interfaces (normalised), read when asked: cheap, and only asked for own ports. */
export function podAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((list) =>
    (list ?? []).map((a) => normalizeAddress(a.address)),
  );
}

export interface SelfLoopCheck {
  /** Ports the proxy listens on (outbound, inbound, admin and any other). */
  ownPorts: ReadonlySet<number>;
  /** The pod's own addresses; defaults to its interfaces' addresses. */
  localAddresses?: () => Iterable<string>;
}

/**
 * True when `destination` (the pre-NAT destination, or the local address when the connection was not
 * redirected) is the proxy itself: one of its ports on loopback, on the accepting socket's local address or on
 * any address of the pod.
 */
export function isSelfLoop(
  destination: { address: string; port: number },
  socketLocalAddress: string | undefined,
  check: SelfLoopCheck,
): boolean {
  if (!check.ownPorts.has(destination.port)) return false;
  const address = normalizeAddress(destination.address);
  if (isLoopback(address) || address === '::' || address === '0.0.0.0') return true;
  if (socketLocalAddress !== undefined && normalizeAddress(socketLocalAddress) === address) return true;
  for (const own of (check.localAddresses ?? podAddresses)()) {
    if (normalizeAddress(own) === address) return true;
  }
  return false;
}

/**
 * `has(address)`: is it one of the pod's addresses? The list is read once and again only when an address is
 * not in it (addresses rarely change, and a miss is what needs the current answer).
 */
export function podAddressSet(read: () => string[] = podAddresses): { has(address: string): boolean } {
  let known = new Set(read());
  return {
    has(address) {
      const wanted = normalizeAddress(address);
      if (known.has(wanted)) return true;
      known = new Set(read());
      return known.has(wanted);
    },
  };
}
