import type { Socket } from 'node:net';

const IDLE_TIMEOUT_MS = 60 * 60 * 1000;

/**
 * Joins two sockets byte for byte, half-close aware (one side ending its writes does not cut the other
 * direction). Any error or full close on one side tears down both.
 */
export function pipeSockets(a: Socket, b: Socket, onClose?: () => void): void {
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
    s.setTimeout(IDLE_TIMEOUT_MS, close);
  }
  a.pipe(b);
  b.pipe(a);
  a.resume();
}
