/**
 * The destination a connection was addressed to before the pod's nat rules (init-iptables.ts) redirected it to
 * the proxy, read with getsockopt(SO_ORIGINAL_DST) through koffi (prebuilt FFI, no native build step).
 *
 * IPv4 connections (including IPv4-mapped ones accepted on a dual-stack `::` listener) are asked at SOL_IP,
 * native IPv6 ones at SOL_IPV6 with IP6T_SO_ORIGINAL_DST. The kernel answers from the connection's conntrack
 * entry, so a connection that was not NATed reports its own local address, and one without a conntrack entry
 * gets ENOENT (→ undefined).
 */
import type { Socket } from 'node:net';
import koffi from 'koffi';

export interface OriginalDestination {
  address: string;
  port: number;
  family: 4 | 6;
}

const SOL_IP = 0;
const SOL_IPV6 = 41;
const SO_ORIGINAL_DST = 80; // IP6T_SO_ORIGINAL_DST has the same number
const AF_INET = 2;
const AF_INET6 = 10;
const SOCKADDR_IN6_SIZE = 28;

export type GetSockOpt = (fd: number, level: number, name: number, value: Buffer, length: Buffer) => number;

let getsockopt: GetSockOpt | null | undefined;
// One call at a time (JavaScript is single-threaded and the call is synchronous), so the buffers are shared.
const addressBuffer = Buffer.alloc(SOCKADDR_IN6_SIZE);
const lengthBuffer = Buffer.alloc(4);

/** libc's getsockopt through koffi, or null where there is none (not Linux/glibc). */
export function loadGetsockopt(): GetSockOpt | null {
  if (getsockopt === undefined) {
    try {
      const libc = koffi.load(process.platform === 'linux' ? 'libc.so.6' : 'libc');
      getsockopt = libc.func(
        'int getsockopt(int fd, int level, int optname, void *optval, void *optlen)',
      ) as GetSockOpt;
    } catch {
      getsockopt = null; // not Linux/glibc: capture cannot work here, callers see `undefined`
    }
  }
  return getsockopt;
}

/** The file descriptor behind a connected net.Socket, if libuv exposes one (TCP sockets on Unix do). */
export function socketFd(socket: Socket): number | undefined {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/**
 * The pre-NAT destination of an accepted connection, or undefined when it cannot be known (socket closed, no
 * conntrack entry, not Linux).
 */
export function originalDestination(socket: Socket): OriginalDestination | undefined {
  const fd = socketFd(socket);
  if (fd === undefined) return undefined;
  const local = socket.localAddress;
  const nativeIpv6 = local !== undefined && local.includes(':') && !local.toLowerCase().startsWith('::ffff:');
  return (
    query(fd, nativeIpv6 ? SOL_IPV6 : SOL_IP) ??
    // The local address can be missing on a socket that is closing; then the other family is worth a try.
    (local === undefined ? query(fd, SOL_IPV6) : undefined)
  );
}

function query(fd: number, level: number): OriginalDestination | undefined {
  const call = loadGetsockopt();
  if (call === null) return undefined;
  lengthBuffer.writeUInt32LE(SOCKADDR_IN6_SIZE, 0);
  if (call(fd, level, SO_ORIGINAL_DST, addressBuffer, lengthBuffer) !== 0) return undefined;
  return decodeSockaddr(addressBuffer, lengthBuffer.readUInt32LE(0));
}

/** Decodes a Linux sockaddr_in / sockaddr_in6 (family in host order, port and address in network order). */
export function decodeSockaddr(buffer: Buffer, length: number): OriginalDestination | undefined {
  if (length < 2) return undefined;
  const family = buffer.readUInt16LE(0);
  if (family === AF_INET && length >= 8) {
    return {
      address: `${buffer[4]}.${buffer[5]}.${buffer[6]}.${buffer[7]}`,
      port: buffer.readUInt16BE(2),
      family: 4,
    };
  }
  if (family === AF_INET6 && length >= 24) {
    const groups: string[] = [];
    for (let offset = 8; offset < 24; offset += 2) groups.push(buffer.readUInt16BE(offset).toString(16));
    return { address: compressIpv6(groups), port: buffer.readUInt16BE(2), family: 6 };
  }
  return undefined;
}

/** RFC 5952 text form: the longest run (≥2) of zero groups becomes '::'. */
function compressIpv6(groups: string[]): string {
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < groups.length;) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === '0') j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (bestStart < 0) return groups.join(':');
  const head = groups.slice(0, bestStart).join(':');
  const tail = groups.slice(bestStart + bestLength).join(':');
  return `${head}::${tail}`;
}
