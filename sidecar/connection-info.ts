import type { Socket } from 'node:net';

/** What a listener learned about a connection, attached to its socket for the HTTP handlers. */
export interface ConnectionInfo {
  /** Pre-NAT destination (outbound: the Service VIP; inbound: the pod's address and app port). */
  address: string;
  port: number;
  /** Inbound mTLS only: the verified SPIFFE ID of the calling workload. */
  peerIdentity: string | undefined;
}

// A symbol property rather than a WeakMap: HTTP/2 requests expose their socket through a Proxy that
// forwards property reads to the real socket but is not the same object.
const INFO = Symbol('sluice.connection');

export function setConnectionInfo(socket: Socket, info: ConnectionInfo): void {
  (socket as unknown as Record<symbol, ConnectionInfo>)[INFO] = info;
}

export function connectionInfo(socket: Socket | null | undefined): ConnectionInfo | undefined {
  return socket ? (socket as unknown as Record<symbol, ConnectionInfo | undefined>)[INFO] : undefined;
}

/**
 * The info of a request's connection. An HTTP/2 request's `socket` is a Proxy Node makes per stream, each
 * read through its handler (about 1 µs a request): the info is read once per session and kept on it.
 */
export function requestConnectionInfo(req: {
  readonly socket: Socket | null;
  readonly stream?: { readonly session?: object };
}): ConnectionInfo | undefined {
  const session = req.stream?.session as
    (Record<symbol, ConnectionInfo | undefined> & { socket?: Socket }) | undefined;
  if (req.stream === undefined || session === undefined) return connectionInfo(req.socket);
  return (session[INFO] ??= connectionInfo(session.socket));
}
