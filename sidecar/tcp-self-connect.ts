/**
 * TCP self-connect guard. Connecting to a loopback port nobody listens on can, rarely, succeed: when the
 * kernel picks the destination port itself as the ephemeral source port (both in 32768–60999), the SYN
 * meets itself (simultaneous open) and the socket is connected to itself. A request written there comes
 * back as its own response ("Expected HTTP/") instead of a refusal; an inbound sidecar reaching a
 * restarting app on a high port would answer 502 and not retry. Such a connection is refused instead:
 * nothing listened, no byte reached an app, and the refusal is retried like any other.
 */
import type { Socket } from 'node:net';

/** Whether `socket` is connected to itself (source and destination the same address and port). */
export function isSelfConnected(socket: Socket): boolean {
  return socket.localPort === socket.remotePort && socket.localAddress === socket.remoteAddress;
}

/** The error a self-connected socket is refused with: what connecting there should have given. */
export function selfConnectRefusal(socket: Socket): NodeJS.ErrnoException {
  const where = `${socket.remoteAddress}:${socket.remotePort}`;
  const err = new Error(`connect ECONNREFUSED ${where} (connected to itself: nothing listens there)`);
  return Object.assign(err, { code: 'ECONNREFUSED', syscall: 'connect' });
}

/**
 * Destroys a plain relay's `socket` with that error if, once connected, it is connected to itself; before
 * its other 'connect' listeners run. Not for a socket a native consumer (an HTTP/2 session) takes over on
 * 'connect': that one must not be destroyed under it.
 */
export function refuseSelfConnect(socket: Socket): Socket {
  socket.prependOnceListener('connect', () => {
    if (isSelfConnected(socket)) socket.destroy(selfConnectRefusal(socket));
  });
  return socket;
}
