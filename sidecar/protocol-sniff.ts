import type { Socket } from 'node:net';

export type SniffedProtocol = 'http1' | 'h2c' | 'tls' | 'tcp';

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const HTTP_VERSION = Buffer.from('HTTP/');
/** Bytes read before giving up on telling; a plausible HTTP request line that is longer is HTTP. */
const MAX_SNIFF_BYTES = 4096;

// RFC 9110 tchar: what a method may be made of (not only the methods Node knows: another server may accept more).
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
  TCHAR[c.charCodeAt(0)] = 1;

/**
 * HTTP/1.x request line: optional empty lines (parsers skip them), a token method, a space, a request
 * target, a space and `HTTP/`. Undefined while the bytes are a prefix of one.
 */
function requestLine(head: Buffer): 'http1' | 'tcp' | undefined {
  let i = 0;
  while (i < head.length && (head[i] === 0x0d || head[i] === 0x0a)) i++;
  const method = i;
  while (i < head.length && TCHAR[head[i]!] === 1) i++;
  if (i === head.length) return undefined;
  if (i === method || head[i] !== 0x20) return 'tcp';
  const target = ++i;
  while (i < head.length && head[i]! > 0x20 && head[i] !== 0x7f) i++;
  if (i === head.length) return undefined;
  if (i === target || head[i] !== 0x20) return 'tcp';
  i++;
  for (let k = 0; k < HTTP_VERSION.length; k++, i++) {
    if (i === head.length) return undefined;
    if (head[i] !== HTTP_VERSION[k]) return 'tcp';
  }
  return 'http1';
}

/**
 * Classifies the first bytes a client sent. Returns undefined while more bytes are needed to tell.
 * HTTP/1.x is recognised by its request line, h2c by the full connection preface, TLS by a handshake
 * record header. `httpPort`: the port is declared HTTP, so nothing is opaque; what is neither h2c nor TLS
 * (which the inbound side must see, for mesh mTLS) goes to the HTTP/1.1 parser, which answers garbage with 400.
 */
export function classify(head: Buffer, httpPort = false): SniffedProtocol | undefined {
  if (head.length === 0) return undefined;
  if (head[0] === 0x16) {
    if (head.length < 3) return undefined;
    return head[1] === 0x03 ? 'tls' : httpPort ? 'http1' : 'tcp';
  }
  const n = Math.min(head.length, H2_PREFACE.length);
  if (head.subarray(0, n).equals(H2_PREFACE.subarray(0, n)))
    return n === H2_PREFACE.length ? 'h2c' : undefined;
  if (httpPort) return 'http1';
  return requestLine(head);
}

/**
 * Reads from a fresh socket until the protocol is known or `timeoutMs` passes. The bytes read are pushed
 * back, so the next reader sees the whole stream. A client that sent nothing is opaque TCP (server-first
 * protocols), except on an HTTP port; one that stalls or stops in the middle of what may be an HTTP request
 * is HTTP: a request is never relayed raw because it was slow.
 */
export function sniff(
  socket: Socket,
  timeoutMs: number,
  options: { httpPort?: boolean; signal?: AbortSignal } = {},
): Promise<{ protocol: SniffedProtocol; head: Buffer }> {
  const httpPort = options.httpPort ?? false;
  return new Promise((resolve) => {
    let done = false;
    let head: Buffer = Buffer.alloc(0);
    const finish = (protocol: SniffedProtocol): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onEnd);
      socket.pause();
      if (head.length > 0) socket.unshift(head);
      resolve({ protocol, head });
    };
    const undecided = (): SniffedProtocol =>
      classify(head, httpPort) ?? (head.length === 0 && !httpPort ? 'tcp' : 'http1');
    const onData = (chunk: Buffer): void => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const protocol = classify(head, httpPort);
      // A TLS ClientHello is read whole, so the inbound side can look at its ALPN list.
      if (protocol === 'tls' && clientHelloAlpn(head) === undefined && head.length < 16_389) return;
      if (protocol !== undefined) finish(protocol);
      else if (head.length >= MAX_SNIFF_BYTES) finish('http1');
    };
    const onEnd = (): void => finish(undecided());
    // Aborted: whatever was read so far is handed on as it is (opaque).
    const onAbort = (): void => finish('tcp');
    options.signal?.addEventListener('abort', onAbort);
    const timer = setTimeout(() => finish(undecided()), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onEnd);
    socket.resume(); // a socket an earlier sniff paused stays paused otherwise
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
