import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { sniff } from './protocol-sniff.ts';
import { pipeSockets } from './tcp-pipe.ts';

/**
 * Relays a connection the detector called opaque because the client sent nothing in time (a server-first
 * protocol, or a slow client). Until the upstream says something, the client's first bytes are still looked
 * at: an HTTP request goes to `onHttp` (the upstream connection is dropped unused) instead of being relayed
 * raw with whatever headers it carries. Once the upstream has spoken, it is a server-first protocol and the
 * bytes flow as they are.
 */
export function relayUnlessHttp(
  client: net.Socket,
  upstream: Duplex,
  onHttp: (protocol: 'http1' | 'h2c') => void,
  /** The TCP idle timeout: how long a connection where neither side says anything is kept. */
  idleTimeoutMs = 60 * 60 * 1000,
  /** Called when the bytes start flowing as they are (not when the client turned out to speak HTTP). */
  onRelay?: () => void,
): void {
  const spoke = new AbortController();
  let closed = false;
  const onFirst = (chunk: Buffer): void => {
    upstream.pause();
    upstream.unshift(chunk);
    spoke.abort();
  };
  const onGone = (): void => {
    closed = true;
    spoke.abort();
  };
  upstream.once('data', onFirst);
  upstream.once('error', onGone);
  upstream.once('close', onGone);
  void sniff(client, idleTimeoutMs > 0 ? idleTimeoutMs : 2 ** 31 - 1, { signal: spoke.signal }).then(
    ({ protocol }) => {
      upstream.off('data', onFirst);
      upstream.off('error', onGone);
      upstream.off('close', onGone);
      if (closed) return void client.destroy();
      if (!spoke.signal.aborted && (protocol === 'http1' || protocol === 'h2c')) {
        upstream.destroy();
        return onHttp(protocol);
      }
      onRelay?.();
      pipeSockets(client, upstream, undefined, idleTimeoutMs);
    },
  );
}
