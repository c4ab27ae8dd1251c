// Generated HTTP/1.1 requests for the listener fuzz test: well-formed ones, malformed ones (request line,
// headers, framing) and smuggling attempts. A smuggling attempt hides `GET /smuggled/<id>` where a strict
// parser either rejects the request or sees those bytes as body; a backend that receives a request for
// /smuggled/ was reached by bytes a strict parser would never have parsed as a request.
import type { Prng } from './prng.ts';

export const SMUGGLED_PREFIX = '/smuggled/';

export interface FuzzRequest {
  bytes: Buffer;
  /** Well-formed: a strict parser accepts it and the proxy should forward it and answer. */
  valid: boolean;
  /** Contains a smuggled request (see above); nothing may follow it on the connection. */
  smuggling: boolean;
  /** The request is cut short: the peer waits for more bytes until the client closes. */
  incomplete: boolean;
  kind: string;
  /** Valid requests: `METHOD target` as the app must receive it (after the sidecar's normalisation). */
  expected?: string;
}

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']; // no HEAD: the driver's response parser does not track methods
const ODD_METHODS = [
  'M-SEARCH',
  'get',
  'G ET',
  'GET\0',
  'PROPFIND',
  'CONNECT',
  'TRACE',
  'X'.repeat(40),
  'PRI',
  '\x16\x03',
];
const CONTROL = ['\0', '\r', '\n', '\x01', '\x7f', '\x0b', '\x0c', '\t', '\x1b'];

function id(r: Prng): string {
  return r.string(10, 'abcdefghijklmnopqrstuvwxyz0123456789');
}

function target(r: Prng, kind: string, rid: string): string {
  const base = `/fuzz/${kind}/${rid}`;
  switch (r.int(0, 9)) {
    case 0:
      return `${base}?q=${r.string(r.int(0, 20), 'ab%=&;+')}`;
    case 1:
      return `${base}/${r.pick(['..', '.', '%2e%2e', '%2F', '//', '%00', 'admin'])}`;
    default:
      return base;
  }
}

/**
 * A target a client may send and the sidecar must forward (docs/security.md, "Request normalisation
 * before matching"), with what the app receives: dot segments that stay below the root, escapes of
 * unreserved characters (decoded) and of others (hex uppercased), "//" (kept: no --merge-slashes), a query
 * with any escapes (never touched). Never %2F, %5C, escaped or raw control characters, "\\", "#" or a
 * malformed escape in the path: those get 400 by design. The request id stays the path's third segment.
 */
function wellFormedTarget(r: Prng, rid: string): { sent: string; expected: string } {
  const base = `/fuzz/v/${rid}`;
  const query = r.chance(0.2) ? `?q=${r.string(r.int(0, 20), 'ab%=&;+/?')}` : '';
  const forms: [string, string][] = [
    [base, base],
    [`/fuzz/v/./${rid}`, base],
    [`/fuzz/v/junk/../${rid}`, base],
    [`/fuzz/v/%2e%2E/v/${rid}`, base],
    [`/fuzz/%76/${rid}`, base],
    [`${base}/.`, `${base}/`],
    [`${base}/x/..`, `${base}/`],
    [`${base}//admin`, `${base}//admin`],
    [`${base}/%c3%a9%7e%41`, `${base}/%C3%A9~A`],
    [`${base}/a~b_c-d.e!$&'()*+,;=:@`, `${base}/a~b_c-d.e!$&'()*+,;=:@`],
  ];
  const [path, expected] = r.chance(0.5) ? forms[0]! : r.pick(forms);
  return { sent: path + query, expected: expected + query };
}

function crlf(lines: string[]): string {
  return lines.map((l) => `${l}\r\n`).join('') + '\r\n';
}

function valid(r: Prng): FuzzRequest {
  const rid = id(r);
  const method = r.pick(METHODS);
  const headers = ['Host: fuzz', ...(r.chance(0.3) ? [`X-Fuzz: ${r.string(r.int(0, 30), 'abc -_=;')}`] : [])];
  if (r.chance(0.1)) headers.push('x-sluice-peer-identity: spiffe://cluster.local/ns/shop/sa/forged');
  let body = '';
  if (method === 'POST' || method === 'PUT' || method === 'PATCH') {
    body = r.string(r.int(0, 200), 'abcdefgh\r\n ');
    if (r.chance(0.4)) {
      headers.push('Transfer-Encoding: chunked');
      const size = body.length.toString(16);
      body = body.length === 0 ? '0\r\n\r\n' : `${size}\r\n${body}\r\n0\r\n\r\n`;
    } else headers.push(`Content-Length: ${body.length}`);
  }
  const t = wellFormedTarget(r, rid);
  return {
    bytes: Buffer.from(`${method} ${t.sent} HTTP/1.1\r\n${crlf(headers)}${body}`, 'latin1'),
    valid: true,
    smuggling: false,
    incomplete: false,
    kind: 'valid',
    expected: `${method} ${t.expected}`,
  };
}

/** A request to /smuggled/<id>, written so that it is only a request to a parser that mis-frames. */
function smuggled(r: Prng, rid: string): string {
  return `GET ${SMUGGLED_PREFIX}${rid} HTTP/1.1\r\nHost: fuzz\r\n\r\n`;
}

// Header lines that a lenient or confused parser reads as "chunked" or "length 0" while a strict one
// rejects them (or reads an innocent header and frames by the Content-Length that follows).
const AMBIGUOUS = [
  'Transfer-Encoding: chunked',
  'Transfer-Encoding : chunked',
  'Transfer-Encoding: xchunked',
  'Transfer-Encoding: chunked, identity',
  'Transfer-Encoding: identity, chunked',
  'Transfer-Encoding:\x0bchunked',
  'Transfer-Encoding: chunked\0',
  'Transfer\0-Encoding: chunked',
  'X-Pad: a\nTransfer-Encoding: chunked',
  'X-Pad: a\rTransfer-Encoding: chunked',
  ' Transfer-Encoding: chunked',
  '\tTransfer-Encoding: chunked',
  'Content-Length: 0',
  'Content-Length: +0',
  'Content-Length:0x0',
  'X-Pad: a\nContent-Length: 0',
  'Transfer-Encoding: \u00a0chunked',
  'Transfer-encoding: CHUNKED',
  'Transfer_Encoding: chunked',
  'Content_Length: 0',
];

function smugglingAttempt(r: Prng): FuzzRequest {
  const rid = id(r);
  const inner = smuggled(r, rid);
  if (r.chance(0.6)) {
    // Framed by Content-Length covering "0\r\n\r\n" + the inner request, with an ambiguous header.
    const body = `0\r\n\r\n${inner}`;
    const amb = r.pick(AMBIGUOUS);
    const cl = `Content-Length: ${body.length}`;
    const lines = r.chance(0.5) ? ['Host: fuzz', amb, cl] : ['Host: fuzz', cl, amb];
    return {
      bytes: Buffer.from(`POST ${target(r, 's', rid)} HTTP/1.1\r\n${crlf(lines)}${body}`, 'latin1'),
      valid: false,
      smuggling: true,
      incomplete: false,
      kind: `smuggle-header`,
    };
  }
  // Chunked, with a chunk-size token that, if accepted at all, covers the inner request as data.
  const hex = inner.length.toString(16);
  const size = r.pick([
    `${hex};ext=1`,
    `000${hex}`,
    `${hex} `,
    ` ${hex}`,
    `0x${hex}`,
    `-${hex}`,
    `${hex}\0`,
    `1${hex.padStart(16, '0')}`,
    'f'.repeat(17),
    `${hex};${'a'.repeat(r.int(100, 5000))}`,
    `${hex}\n`,
  ]);
  const te = r.pick([
    'Transfer-Encoding: chunked',
    'Transfer-Encoding: chunked',
    'Transfer-Encoding:chunked',
  ]);
  return {
    bytes: Buffer.from(
      `POST ${target(r, 's', rid)} HTTP/1.1\r\n${crlf(['Host: fuzz', te])}${size}\r\n${inner}\r\n0\r\n\r\n`,
      'latin1',
    ),
    valid: false,
    smuggling: true,
    incomplete: false,
    kind: 'smuggle-chunk',
  };
}

function malformed(r: Prng): FuzzRequest {
  const rid = id(r);
  const kind = r.pick([
    'method',
    'version',
    'target',
    'header-name',
    'header-value',
    'obs-fold',
    'bare-lf',
    'long-line',
    'many-headers',
    'big-headers',
    'garbage',
    'truncated',
    'cl-bad',
    'leading-crlf',
    'absolute-form',
    'connect',
    'expect',
  ]);
  let method = r.pick(METHODS);
  let tgt = target(r, 'x', rid);
  let version = 'HTTP/1.1';
  const headers = ['Host: fuzz'];
  let body = '';
  let prefix = '';
  let eol = '\r\n';
  let incomplete = false;
  switch (kind) {
    case 'method':
      method = r.pick(ODD_METHODS);
      break;
    case 'version':
      version = r.pick([
        'HTTP/1.2',
        'HTTP/2.0',
        'HTTP/0.9',
        'http/1.1',
        'HTTP/1.1x',
        'HTTP/11',
        '',
        'HTTP/1.1 ',
        'HTTP/9.9',
      ]);
      break;
    case 'target':
      tgt = r.pick([
        `${tgt} x`,
        `*`,
        '',
        tgt.replace('/', r.pick(CONTROL)),
        `${tgt}#frag`,
        'fuzz',
        `//${tgt}`,
      ]);
      break;
    case 'header-name':
      headers.push(
        `${r.pick(['X Fuzz', 'X:Fuzz', 'X-Fuzz\0', '', ':', 'Ä', 'X\x7f', '(x)', 'X-F\tuzz'])}: v`,
      );
      break;
    case 'header-value':
      headers.push(`X-Fuzz: a${r.pick(CONTROL)}b`);
      break;
    case 'obs-fold':
      headers.push('X-Fuzz: a', r.pick([' folded', '\tfolded', '  ']));
      break;
    case 'bare-lf':
      eol = r.pick(['\n', '\r', '\n\r']);
      break;
    case 'long-line':
      tgt = `/fuzz/x/${rid}/${'a'.repeat(r.pick([8_000, 70_000, 100_000]))}`;
      break;
    case 'many-headers':
      for (let i = 0, n = r.pick([99, 101, 200, 2000]); i < n; i++) headers.push(`X-H${i}: ${i}`);
      break;
    case 'big-headers':
      headers.push(`X-Big: ${'b'.repeat(r.pick([60_000, 63_000, 70_000]))}`);
      break;
    case 'garbage':
      return {
        bytes: Buffer.concat([r.bytes(r.int(1, 300)), Buffer.from('\r\n\r\n')]),
        valid: false,
        smuggling: false,
        incomplete: false,
        kind,
      };
    case 'truncated': {
      const full = valid(r).bytes;
      return {
        bytes: full.subarray(0, r.int(1, Math.max(1, full.length - 1))),
        valid: false,
        smuggling: false,
        incomplete: true,
        kind,
      };
    }
    case 'cl-bad':
      method = 'POST';
      body = 'abc';
      headers.push(
        r.pick(
          [
            'Content-Length: -1',
            'Content-Length: 1e3',
            'Content-Length: 99999999999999999999',
            'Content-Length: 3, 4',
            'Content-Length: 3 3',
            'Content-Length:',
          ].concat(['Content-Length: 10']),
        ),
      );
      incomplete = headers.at(-1) === 'Content-Length: 10';
      break;
    case 'leading-crlf':
      prefix = r.pick(['\r\n', '\r\n\r\n', '\n']);
      break;
    case 'absolute-form':
      tgt = r.pick([
        `http://other${tgt}`,
        `http://fuzz:80${tgt}`,
        `https://x@evil${tgt}`,
        `http://[::1]${tgt}`,
      ]);
      break;
    case 'connect':
      method = 'CONNECT';
      tgt = r.pick(['127.0.0.1:15000', 'fuzz:80', '[::1]:22', '10.96.0.1:443']);
      break;
    case 'expect':
      method = 'POST';
      headers.push(r.pick(['Expect: 100-continue', 'Expect: 200-ok']), 'Content-Length: 3');
      body = 'abc';
      break;
  }
  const text =
    `${prefix}${method} ${tgt} ${version}`.trimEnd() +
    eol +
    headers.map((h) => h + eol).join('') +
    eol +
    body;
  return { bytes: Buffer.from(text, 'latin1'), valid: false, smuggling: false, incomplete, kind };
}

/**
 * The requests of one connection: a few to a few dozen, pipelined. Smuggling attempts and cut-short
 * requests come last (nothing can follow them). `clean` connections carry only valid requests.
 */
export function connectionRequests(r: Prng, max: number, clean: boolean): FuzzRequest[] {
  const n = r.int(1, max);
  const out: FuzzRequest[] = [];
  for (let i = 0; i < n; i++) {
    if (clean) {
      out.push(valid(r));
      continue;
    }
    const roll = r.next();
    const req = roll < 0.45 ? valid(r) : roll < 0.65 ? smugglingAttempt(r) : malformed(r);
    out.push(req);
    if (req.smuggling || req.incomplete) break;
  }
  return out;
}
