import type { Socket } from 'node:net';

export type SniffedProtocol = 'http1' | 'h2c' | 'tls' | 'tcp';

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const METHOD = /^[A-Z]{3,10} $/;

/**
 * Classifies the first bytes a client sent. Returns undefined while more bytes are needed to tell.
 * HTTP/1.x is recognised by a method token followed by a space (the request line), h2c by the full
 * connection preface, TLS by a handshake record header.
 */
export function classify(head: Buffer): SniffedProtocol | undefined {
  if (head.length === 0) return undefined;
  if (head[0] === 0x16) {
    if (head.length < 3) return undefined;
    return head[1] === 0x03 ? 'tls' : 'tcp';
  }
  const n = Math.min(head.length, H2_PREFACE.length);
  if (head.subarray(0, n).equals(H2_PREFACE.subarray(0, n)))
    return n === H2_PREFACE.length ? 'h2c' : undefined;
  const space = head.indexOf(0x20);
  if (space === -1) return head.length < 11 && /^[A-Z]*$/.test(head.toString('latin1')) ? undefined : 'tcp';
  return METHOD.test(head.toString('latin1', 0, space + 1)) ? 'http1' : 'tcp';
}

/**
 * Reads from a fresh socket until the protocol is known or `timeoutMs` passes (server-first protocols send
 * nothing: they are opaque TCP). The bytes read are pushed back, so the next reader sees the whole stream.
 */
export function sniff(
  socket: Socket,
  timeoutMs: number,
): Promise<{ protocol: SniffedProtocol; head: Buffer }> {
  return new Promise((resolve) => {
    let head: Buffer = Buffer.alloc(0);
    const finish = (protocol: SniffedProtocol): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onEnd);
      socket.pause();
      if (head.length > 0) socket.unshift(head);
      resolve({ protocol, head });
    };
    const onData = (chunk: Buffer): void => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const protocol = classify(head);
      // A TLS ClientHello is read whole, so the inbound side can look at its ALPN list.
      if (protocol === 'tls' && clientHelloAlpn(head) === undefined && head.length < 16_389) return;
      if (protocol !== undefined) finish(protocol);
      else if (head.length >= 4096) finish('tcp');
    };
    const onEnd = (): void => finish('tcp');
    const timer = setTimeout(() => finish('tcp'), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onEnd);
  });
}

/**
 * ALPN protocol names offered in a TLS ClientHello, or undefined when `head` is not a complete ClientHello
 * record. Used to tell a peer sidecar's mTLS (offers the mesh ALPN) from a workload's own TLS without
 * terminating it. Bounds-checked throughout: a malformed hello yields undefined, never a throw.
 */
export function clientHelloAlpn(head: Buffer): string[] | undefined {
  if (head.length < 5 || head[0] !== 0x16) return undefined;
  const recordEnd = 5 + head.readUInt16BE(3);
  if (head.length < recordEnd || head[5] !== 0x01) return undefined;
  let p = 5 + 4 + 2 + 32; // handshake header, legacy_version, random
  const need = (n: number): boolean => p + n <= recordEnd;
  if (!need(1)) return undefined;
  p += 1 + head[p]!; // session id
  if (!need(2)) return undefined;
  p += 2 + head.readUInt16BE(p); // cipher suites
  if (!need(1)) return undefined;
  p += 1 + head[p]!; // compression methods
  if (!need(2)) return [];
  const extensionsEnd = p + 2 + head.readUInt16BE(p);
  p += 2;
  if (extensionsEnd > recordEnd) return undefined;
  while (p + 4 <= extensionsEnd) {
    const type = head.readUInt16BE(p);
    const len = head.readUInt16BE(p + 2);
    p += 4;
    if (p + len > extensionsEnd) return undefined;
    if (type === 16) {
      const names: string[] = [];
      let q = p + 2;
      const end = p + len;
      while (q < end) {
        const n = head[q]!;
        if (q + 1 + n > end) return undefined;
        names.push(head.toString('latin1', q + 1, q + 1 + n));
        q += 1 + n;
      }
      return names;
    }
    p += len;
  }
  return [];
}
