/**
 * Whether the peer of a TCP connection has sent its FIN, asked of the kernel (getsockopt TCP_INFO) rather than
 * of the socket's readable side: a reader that stopped reading (nghttp2 after it ended a session, see
 * http-servers.ts) never sees the end of the stream, but the kernel's TCP state still says it came.
 */
import type { Socket } from 'node:net';
import { loadGetsockopt, socketFd } from './original-dst.ts';

const IPPROTO_TCP = 6;
const TCP_INFO = 11;
/** Linux TCP states (include/net/tcp_states.h) in which the peer's FIN has been received. */
const PEER_FIN_STATES = new Set([
  6, // TIME_WAIT
  7, // CLOSE
  8, // CLOSE_WAIT
  9, // LAST_ACK
  11, // CLOSING
]);

// tcpi_state is the first byte of struct tcp_info; the kernel copies at most the length asked for.
const infoBuffer = Buffer.alloc(8);
const lengthBuffer = Buffer.alloc(4);

/** The TCP socket under `socket` (a TLS socket wraps one), if any. */
function tcpSocket(socket: Socket): Socket | undefined {
  if (socketFd(socket) !== undefined) return socket;
  const parent = (socket as { _parent?: Socket | null })._parent;
  return parent && socketFd(parent) !== undefined ? parent : undefined;
}

/**
 * True when the kernel has the peer's FIN for this connection (read or not), false when it has not, undefined
 * when that cannot be known (no file descriptor, not Linux).
 */
export function peerHasSentFin(socket: Socket): boolean | undefined {
  const tcp = tcpSocket(socket);
  const fd = tcp === undefined ? undefined : socketFd(tcp);
  const call = loadGetsockopt();
  if (fd === undefined || call === null) return undefined;
  lengthBuffer.writeUInt32LE(infoBuffer.length, 0);
  if (call(fd, IPPROTO_TCP, TCP_INFO, infoBuffer, lengthBuffer) !== 0) return undefined;
  return PEER_FIN_STATES.has(infoBuffer[0]!);
}
