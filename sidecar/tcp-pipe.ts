import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

const IDLE_TIMEOUT_MS = 60 * 60 * 1000; // Envoy's tcp_proxy default; --tcp-idle-timeout-ms changes it

/**
 * Joins two sockets byte for byte, half-close aware (one side ending its writes does not cut the other
 * direction). Any error or full close on one side tears down both.
 */
export function pipeSockets(
  a: Duplex,
  b: Duplex,
  onClose?: () => void,
  idleTimeoutMs = IDLE_TIMEOUT_MS,
): void {
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    a.destroy();
    b.destroy();
    onClose?.();
  };
  for (const s of [a, b]) {
    s.on('error', close);
    s.on('close', close);
    if (idleTimeoutMs > 0 && 'setTimeout' in s && typeof s.setTimeout === 'function')
      (s as Socket).setTimeout(idleTimeoutMs, close);
  }
  a.pipe(b);
  b.pipe(a);
  a.resume();
}
