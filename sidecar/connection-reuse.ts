import diagnosticsChannel from 'node:diagnostics_channel';

/**
 * Which connection an HTTP/1.1 attempt went out on, as far as retries need it: whether that connection had
 * carried a request before, and when this request's headers were written. undici tells a dispatch handler
 * neither; its `undici:client:sendHeaders` diagnostics message names the socket, and it is published in the
 * same synchronous step as the handler's onRequestStart, so the attempt that just started is the one sent.
 */
export interface AttemptConnection {
  reused: boolean | undefined;
  writtenAt: number | undefined;
}

const requestsBySocket = new WeakMap<object, number>();
let starting: AttemptConnection | undefined;
let subscribed = false;

function onSendHeaders(message: unknown): void {
  const socket = (message as { socket?: object } | undefined)?.socket;
  if (!socket) return;
  const before = requestsBySocket.get(socket) ?? 0;
  requestsBySocket.set(socket, before + 1);
  if (starting) {
    starting.reused = before > 0;
    starting.writtenAt = performance.now();
    starting = undefined;
  }
}

/** Called from onRequestStart: the next request undici writes is this attempt's. */
export function attemptStarting(attempt: AttemptConnection): void {
  if (!subscribed) {
    diagnosticsChannel.subscribe('undici:client:sendHeaders', onSendHeaders);
    subscribed = true;
  }
  starting = attempt;
}
