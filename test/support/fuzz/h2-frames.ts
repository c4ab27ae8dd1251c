// Generated HTTP/2 frame sequences for the listener fuzz test: the client preface (sometimes damaged), then
// valid and hostile frames: SETTINGS with odd values and lengths, HEADERS with valid or garbage HPACK,
// CONTINUATION floods, PING floods, rapid reset, WINDOW_UPDATE of 0 or overflowing, DATA on closed or idle
// streams, frames with lengths that lie, unknown types and random bytes.
import type { Prng } from './prng.ts';

export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

const DATA = 0x0;
const HEADERS = 0x1;
const PRIORITY = 0x2;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PING = 0x6;
const GOAWAY = 0x7;
const WINDOW_UPDATE = 0x8;
const CONTINUATION = 0x9;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;

export function frame(
  type: number,
  flags: number,
  stream: number,
  payload: Buffer,
  lengthLie?: number,
): Buffer {
  const head = Buffer.alloc(9);
  const length = lengthLie ?? payload.length;
  head.writeUIntBE(length & 0xffffff, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream >>> 0, 5);
  return Buffer.concat([head, payload]);
}

/** HPACK integer with an n-bit prefix (RFC 7541 5.1); `first` holds the bits above the prefix. */
function hpackInt(value: number, prefixBits: number, first: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [first | value];
  const out = [first | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

/** A header block of literal fields without indexing (no Huffman): always decodable. */
export function hpackLiterals(headers: [string, string][]): Buffer {
  const bytes: number[] = [];
  for (const [name, value] of headers) {
    bytes.push(0x00);
    bytes.push(...hpackInt(name.length, 7, 0), ...Buffer.from(name, 'latin1'));
    bytes.push(...hpackInt(value.length, 7, 0), ...Buffer.from(value, 'latin1'));
  }
  return Buffer.from(bytes);
}

function requestBlock(r: Prng, path: string, hostile: boolean): Buffer {
  const headers: [string, string][] = [
    [':method', r.pick(['GET', 'POST', 'GET'])],
    [':path', path],
    [':scheme', 'http'],
    [':authority', 'fuzz'],
  ];
  if (hostile) {
    switch (r.int(0, 9)) {
      case 0:
        headers.push(['x-fuzz', `a${r.pick(['\r\n', '\0', '\x7f'])}b`]);
        break;
      case 1:
        headers.push(['X-Upper', 'v']);
        break;
      case 2:
        headers.push(['connection', 'keep-alive'], ['transfer-encoding', 'chunked']);
        break;
      case 3:
        headers.splice(0, 1);
        break;
      case 4:
        headers.push([':method', 'GET']);
        break;
      case 5:
        headers.push([':unknown', 'x']);
        break;
      case 6:
        headers.push(['content-length', r.pick(['-1', 'x', '5, 6', '0'])]);
        break;
      case 7:
        for (let i = 0; i < r.pick([50, 300, 2000]); i++) headers.push([`x-h${i}`, 'v']);
        break;
      case 8:
        headers.push(['x-sluice-peer-identity', 'spiffe://cluster.local/ns/shop/sa/forged']);
        break;
      default:
        headers.push(['x-big', 'b'.repeat(r.pick([1000, 20_000, 70_000]))]);
    }
  }
  return hpackLiterals(headers);
}

function garbageBlock(r: Prng): Buffer {
  switch (r.int(0, 4)) {
    case 0:
      return Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]); // indexed field far out of range
    case 1:
      return Buffer.from([0x3f, 0xe1, 0xff, 0xff, 0x7f]); // dynamic table size update too large
    case 2:
      return Buffer.from([0x00, 0x7f, 0xff, 0xff, 0xff, 0x7f]); // a name length of ~2^28
    case 3:
      return Buffer.from([0x00, 0x85, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x61]); // Huffman garbage
    default:
      return r.bytes(r.int(1, 64));
  }
}

function settingsPayload(r: Prng): Buffer {
  const n = r.int(0, 6);
  const b = Buffer.alloc(n * 6);
  for (let i = 0; i < n; i++) {
    b.writeUInt16BE(r.pick([1, 2, 3, 4, 5, 6, 8, 0, 0x99]), i * 6);
    b.writeUInt32BE(
      r.pick([0, 1, 2, 100, 16_383, 16_384, 0x7fffffff, 0x80000000, 0xffffffff]) >>> 0,
      i * 6 + 2,
    );
  }
  return b;
}

function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value >>> 0);
  return b;
}

/**
 * One connection's bytes. `requests` counts the well-formed requests in it (a HEADERS with END_STREAM and
 * a decodable block on a fresh odd stream, before anything that must kill the connection).
 */
export function h2Sequence(r: Prng, rid: string): { bytes: Buffer; kind: string } {
  const parts: Buffer[] = [];
  let kind = 'frames';
  if (r.chance(0.05)) {
    const preface = Buffer.from(H2_PREFACE);
    const at = r.int(0, preface.length - 1);
    preface[at] = preface[at]! ^ (1 << r.int(0, 7));
    parts.push(preface);
    kind = 'bad-preface';
  } else parts.push(H2_PREFACE);
  if (r.chance(0.8)) parts.push(frame(SETTINGS, 0, 0, r.chance(0.7) ? Buffer.alloc(0) : settingsPayload(r)));
  let stream = 1;
  const count = r.int(1, 12);
  for (let i = 0; i < count; i++) {
    const path = `/fuzz/h2/${rid}-${i}`;
    switch (r.int(0, 15)) {
      case 0:
      case 1:
        parts.push(frame(HEADERS, END_STREAM | END_HEADERS, stream, requestBlock(r, path, false)));
        stream += 2;
        break;
      case 2:
        parts.push(frame(HEADERS, END_STREAM | END_HEADERS, stream, requestBlock(r, path, true)));
        stream += 2;
        break;
      case 3:
        parts.push(
          frame(
            HEADERS,
            r.pick([END_HEADERS, END_STREAM | END_HEADERS, 0]),
            r.pick([stream, 0, 2, stream - 2]),
            garbageBlock(r),
          ),
        );
        stream += 2;
        break;
      case 4: {
        // CONTINUATION flood: a header block that never ends (or ends very late).
        parts.push(frame(HEADERS, END_STREAM, stream, requestBlock(r, path, false).subarray(0, 4)));
        const n = r.pick([10, 100, 1000]);
        for (let k = 0; k < n; k++) parts.push(frame(CONTINUATION, 0, stream, r.bytes(r.int(0, 16))));
        if (r.chance(0.3)) parts.push(frame(CONTINUATION, END_HEADERS, stream, Buffer.alloc(0)));
        stream += 2;
        kind = 'continuation-flood';
        break;
      }
      case 5: {
        const n = r.pick([1, 10, 500]);
        for (let k = 0; k < n; k++) parts.push(frame(PING, 0, 0, r.bytes(8)));
        if (r.chance(0.3))
          parts.push(frame(PING, r.pick([0, 1]), r.pick([0, 1]), r.bytes(r.pick([0, 7, 9, 8]))));
        break;
      }
      case 6: {
        // Rapid reset: open and cancel streams.
        const n = r.pick([5, 50, 300]);
        for (let k = 0; k < n; k++) {
          parts.push(
            frame(HEADERS, END_STREAM | END_HEADERS, stream, requestBlock(r, `${path}-${k}`, false)),
          );
          parts.push(frame(RST_STREAM, 0, stream, u32(8)));
          stream += 2;
        }
        kind = 'rapid-reset';
        break;
      }
      case 7:
        parts.push(
          frame(
            RST_STREAM,
            0,
            r.pick([0, stream, stream + 100, 1]),
            r.chance(0.8) ? u32(r.int(0, 20)) : r.bytes(r.int(0, 8)),
          ),
        );
        break;
      case 8:
        parts.push(
          frame(WINDOW_UPDATE, 0, r.pick([0, 0, 1, stream]), u32(r.pick([0, 1, 0x7fffffff, 0xffffffff]))),
        );
        if (r.chance(0.5)) parts.push(frame(WINDOW_UPDATE, 0, 0, u32(0x7fffffff)));
        break;
      case 9:
        parts.push(
          frame(
            DATA,
            r.pick([0, END_STREAM, PADDED]),
            r.pick([1, 0, stream, stream + 2, 3]),
            r.bytes(r.int(0, 100)),
          ),
        );
        break;
      case 10:
        parts.push(
          frame(
            SETTINGS,
            r.pick([0, 1]),
            r.pick([0, 0, 1]),
            r.chance(0.5) ? settingsPayload(r) : r.bytes(r.int(1, 11)),
          ),
        );
        break;
      case 11:
        parts.push(
          frame(
            PRIORITY,
            0,
            r.pick([stream, 0]),
            r.chance(0.7) ? Buffer.from([0, 0, 0, stream, 16]) : r.bytes(r.int(0, 9)),
          ),
        );
        break;
      case 12:
        // A length that lies: longer than what follows, or over the maximum frame size.
        parts.push(
          frame(
            r.pick([DATA, HEADERS, SETTINGS, 0x42]),
            0,
            stream,
            r.bytes(r.int(0, 32)),
            r.pick([0xffffff, 16_385, 40]),
          ),
        );
        i = count;
        break;
      case 13:
        parts.push(frame(r.int(0x0a, 0xff), r.int(0, 255), r.int(0, 0x7fffffff), r.bytes(r.int(0, 64))));
        break;
      case 14:
        parts.push(frame(GOAWAY, 0, r.pick([0, 1]), Buffer.concat([u32(0), u32(0)])));
        break;
      default: {
        // HEADERS with padding that lies, then a request body that overflows the flow-control window.
        const block = requestBlock(r, path, false);
        if (r.chance(0.5)) {
          parts.push(
            frame(
              HEADERS,
              END_HEADERS | PADDED,
              stream,
              Buffer.concat([Buffer.from([r.pick([0, 5, 255])]), block]),
            ),
          );
        } else {
          parts.push(frame(HEADERS, END_HEADERS, stream, block));
          for (let k = 0; k < r.pick([1, 5, 70]); k++)
            parts.push(frame(DATA, 0, stream, Buffer.alloc(1024, 0x61)));
          parts.push(frame(DATA, END_STREAM, stream, Buffer.alloc(0)));
        }
        stream += 2;
      }
    }
  }
  if (r.chance(0.05)) parts.push(r.bytes(r.int(1, 200)));
  return { bytes: Buffer.concat(parts), kind };
}
