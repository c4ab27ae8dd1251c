// A strict, incremental HTTP/1.1 response parser for upstream connections (ADR 0024). Pure: bytes in, events
// out. Anything a lenient parser would have to guess at is an error, so a response can never be framed two
// ways: the server sidecar's pool to its app carries many callers' requests on the same connections.
import type { IncomingHttpHeaders } from 'node:http';

/** A response the parser refuses: the connection is closed, the request answered 502 (or its response cut). */
export class ResponseParseError extends Error {
  readonly code = 'ERR_UPSTREAM_PARSE';
}

/** What a parser hands on, in order: one head, its body's chunks, its end (trailers of a chunked body). */
export interface ResponseEvents {
  head(status: number, headers: IncomingHttpHeaders): void;
  body(chunk: Buffer): void;
  end(trailers: IncomingHttpHeaders | undefined): void;
}

// The parser's states (numbers, for a cheap switch).
const IDLE = 0; // no request outstanding: any byte is an error
const HEAD = 1;
const LENGTH = 2;
const CHUNK_SIZE = 3;
const CHUNK_DATA = 4;
const CHUNK_DATA_END = 5;
const TRAILERS = 6;
const UNTIL_CLOSE = 7; // delimited by the connection's close
const DONE = 8;

/** Hex digits a chunk size may have (2^48 bytes): more is refused rather than parsed into an imprecise number. */
const MAX_CHUNK_SIZE_DIGITS = 12;
/** Bytes a chunk-size line (size and extensions) may take. */
const MAX_CHUNK_LINE = 1024;

// RFC 9110 §5.6.2 tchar, and field-value bytes (VCHAR, SP, HTAB, obs-text): per byte, 1 when allowed.
const TOKEN = new Uint8Array(256);
const VALUE = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TOKEN[c.charCodeAt(0)] = 1;
for (let i = 0; i < 256; i++) {
  if ((i >= 48 && i <= 57) || (i >= 65 && i <= 90) || (i >= 97 && i <= 122)) TOKEN[i] = 1;
  if (i === 9 || (i >= 32 && i !== 127)) VALUE[i] = 1;
}

/** A method or header name: one or more tchar. */
export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (!TOKEN[s.charCodeAt(i)]) return false;
  return true;
}

/** A header value that cannot end its line early: no CR, LF, NUL or other control byte. */
export function isFieldValue(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 255 || !VALUE[c]) return false;
  }
  return true;
}

const fail = (why: string): never => {
  throw new ResponseParseError(`invalid upstream response: ${why}`);
};

const EMPTY = Buffer.alloc(0);

/**
 * One connection's parser: start() for each request written, then execute() with every chunk read and
 * finish() at the connection's end. Events go to the `ResponseEvents` given to start(). Throws a
 * ResponseParseError on anything invalid or ambiguous, after which the connection must be closed.
 */
export class ResponseParser {
  /** After a head: whether the connection may carry another request once this response ends. */
  keepAlive = false;
  /** The upstream's Keep-Alive timeout hint (ms) from the last head, if it gave one. */
  keepAliveHintMs: number | undefined;
  readonly #maxHeadBytes: number;
  #state: number = IDLE;
  #events: ResponseEvents | undefined;
  #bodyless = false;
  /**
   * Bytes of a head, chunk-size line or trailer section not yet complete, as read (joined once the section
   * can be complete: a head trickled a byte per read is not copied again at every read).
   */
  #pending: Buffer[] | undefined;
  #pendingBytes = 0;
  /** The last (up to 3) pending bytes: with a read's first 3, where a head's end may straddle two reads. */
  #pendingTail = EMPTY;
  #remaining = 0;
  /** Bytes of interim (1xx) heads already read for this request: they count against the head limit. */
  #interimBytes = 0;

  constructor(maxHeadBytes: number) {
    this.#maxHeadBytes = maxHeadBytes;
  }

  /** A request was written (`method`: HEAD responses have no body): its response comes next. */
  start(method: string, events: ResponseEvents): void {
    if (this.#state !== IDLE) fail('a request started before the previous response ended');
    this.#events = events;
    this.#bodyless = method === 'HEAD';
    this.#state = HEAD;
    this.#interimBytes = 0;
    this.keepAlive = false;
    this.keepAliveHintMs = undefined;
  }

  /** The response ended and nothing followed: ready for the next start(). */
  get idle(): boolean {
    return this.#state === IDLE;
  }

  /** Whether the response's head has been handed on. */
  get headDone(): boolean {
    return this.#state !== HEAD && this.#state !== IDLE;
  }

  execute(chunk: Buffer): void {
    let buf = chunk;
    let at = 0;
    while (at < buf.length) {
      if (this.#state === DONE) this.#done();
      switch (this.#state) {
        case IDLE:
        case DONE:
          return fail('bytes after a complete response');
        case LENGTH: {
          const n = Math.min(this.#remaining, buf.length - at);
          this.#remaining -= n;
          const data = at === 0 && n === buf.length ? buf : buf.subarray(at, at + n);
          at += n;
          if (this.#remaining === 0) this.#state = DONE;
          this.#events!.body(data);
          break;
        }
        case CHUNK_DATA: {
          const n = Math.min(this.#remaining, buf.length - at);
          this.#remaining -= n;
          const data = buf.subarray(at, at + n);
          at += n;
          if (this.#remaining === 0) this.#state = CHUNK_DATA_END;
          this.#events!.body(data);
          break;
        }
        case UNTIL_CLOSE:
          this.#events!.body(at === 0 ? buf : buf.subarray(at));
          at = buf.length;
          break;
        default: {
          // Line-oriented states: the head, a chunk-size line, the CRLF after chunk data, trailers.
          if (this.#pending) {
            if (!this.#mayEndSection(buf, at)) return this.#hold(buf.subarray(at));
            buf = Buffer.concat([...this.#pending, buf.subarray(at)]);
            at = 0;
            this.#pending = undefined;
            this.#pendingBytes = 0;
            this.#pendingTail = EMPTY;
          }
          const next = this.#lines(buf, at);
          if (next < 0) return this.#hold(buf.subarray(at));
          at = next;
        }
      }
    }
    if (this.#state === DONE) this.#done();
  }

  /**
   * The connection ended (the peer's FIN): the end of a response delimited by it. Throws when a response
   * was under way otherwise; returns whether one was (false: an idle connection closed).
   */
  finish(): boolean {
    if (this.#state === IDLE) return false;
    if (this.#state === UNTIL_CLOSE) {
      this.#state = DONE;
      this.#done();
      return true;
    }
    return fail(this.headDone ? 'connection closed mid-body' : 'connection closed before a response');
  }

  #done(): void {
    this.#state = IDLE;
    const events = this.#events!;
    this.#events = undefined;
    events.end(this.#trailers);
    this.#trailers = undefined;
  }

  #trailers: IncomingHttpHeaders | undefined;

  #hold(bytes: Buffer): void {
    (this.#pending ??= []).push(bytes);
    this.#pendingBytes += bytes.length;
    this.#pendingTail = Buffer.concat([this.#pendingTail, bytes]).subarray(-3);
    const limit =
      this.#state === CHUNK_SIZE || this.#state === CHUNK_DATA_END
        ? MAX_CHUNK_LINE
        : this.#maxHeadBytes - (this.#state === HEAD ? this.#interimBytes : 0);
    if (this.#pendingBytes > limit)
      fail(this.#state === HEAD || this.#state === TRAILERS ? 'head too large' : 'chunk size line too long');
  }

  /** Whether the pending head or trailer section may end in `buf` from `at` (other lines are short). */
  #mayEndSection(buf: Buffer, at: number): boolean {
    if ((this.#state !== HEAD && this.#state !== TRAILERS) || this.#pendingBytes < 4) return true;
    const seam = Buffer.concat([this.#pendingTail, buf.subarray(at, at + 3)]);
    return seam.includes('\r\n\r\n', 0, 'latin1') || buf.includes('\r\n\r\n', at, 'latin1');
  }

  /** Parses what `buf` from `at` completes in a line-oriented state; -1 when more bytes are needed. */
  #lines(buf: Buffer, at: number): number {
    switch (this.#state) {
      case HEAD:
      case TRAILERS: {
        // A trailer section may be empty: its CRLF alone.
        if (this.#state === TRAILERS && buf.length - at >= 2 && buf[at] === 13 && buf[at + 1] === 10) {
          this.#state = DONE;
          return at + 2;
        }
        const end = buf.indexOf('\r\n\r\n', at, 'latin1');
        if (end < 0) return -1;
        const interim = this.#state === HEAD ? this.#interimBytes : 0;
        if (end + 4 - at + interim > this.#maxHeadBytes) fail('head too large');
        const text = buf.toString('latin1', at, end + 2);
        if (this.#state === HEAD) this.#head(text);
        else this.#trailers = parseFields(text, 0, {});
        if (this.#state === TRAILERS) this.#state = DONE;
        return end + 4;
      }
      case CHUNK_DATA_END:
        if (buf.length - at < 2) return -1;
        if (buf[at] !== 13 || buf[at + 1] !== 10) fail('chunk data not followed by CRLF');
        this.#state = CHUNK_SIZE;
        return at + 2;
      case CHUNK_SIZE: {
        const end = buf.indexOf(10, at);
        if (end < 0) return -1;
        if (end - at > MAX_CHUNK_LINE) fail('chunk size line too long');
        if (end === at || buf[end - 1] !== 13) fail('chunk size line without CRLF');
        let size = 0;
        let i = at;
        for (; i < end - 1; i++) {
          const d = hexValue(buf[i]!);
          if (d < 0) break;
          size = size * 16 + d;
        }
        if (i === at || i - at > MAX_CHUNK_SIZE_DIGITS) fail('bad chunk size');
        if (i < end - 1) {
          // Extensions are ignored, but must be well formed enough to never hide a CR or LF.
          if (buf[i] !== 59 /* ; */) fail('bad chunk size');
          for (let j = i; j < end - 1; j++) if (!VALUE[buf[j]!]) fail('bad chunk extension');
        }
        if (size === 0) this.#state = TRAILERS;
        else {
          this.#remaining = size;
          this.#state = CHUNK_DATA;
        }
        return end + 1;
      }
      default:
        return fail('internal state');
    }
  }

  #head(text: string): void {
    // status-line = HTTP-version SP 3DIGIT SP [ reason-phrase ] (the SP before an empty reason optional)
    const lineEnd = text.indexOf('\r\n');
    if (
      lineEnd < 12 ||
      !text.startsWith('HTTP/1.') ||
      (text.charCodeAt(7) !== 49 && text.charCodeAt(7) !== 48) ||
      text.charCodeAt(8) !== 32 ||
      (lineEnd > 12 && text.charCodeAt(12) !== 32)
    )
      fail('bad status line');
    let status = 0;
    for (let i = 9; i < 12; i++) {
      const d = text.charCodeAt(i) - 48;
      if (d < 0 || d > 9) fail('bad status code');
      status = status * 10 + d;
    }
    if (status < 100) fail('bad status code');
    for (let i = 13; i < lineEnd; i++) if (!VALUE[text.charCodeAt(i)]) fail('bad reason phrase');
    const http10 = text.charCodeAt(7) === 48;
    const headers = parseFields(text, lineEnd + 2, {});
    if (status < 200) {
      // 100 was never asked for (Expect is not forwarded) and 101 never offered (no Upgrade through a pool);
      // other interim responses (102, 103) are read and dropped: the final response follows.
      if (status === 100 || status === 101) fail(`unexpected ${status} response`);
      // Endless interim heads would hold the connection and its caller: together they get one head's limit.
      this.#interimBytes += text.length + 2;
      return;
    }
    const te = headers['transfer-encoding'];
    const cl = headers['content-length'];
    let length = -1;
    if (te !== undefined) {
      if (cl !== undefined) fail('both Content-Length and Transfer-Encoding');
      if (typeof te !== 'string' || te.toLowerCase() !== 'chunked')
        fail('a transfer coding other than chunked');
      if (http10) fail('Transfer-Encoding in an HTTP/1.0 response');
    } else if (cl !== undefined) {
      length = contentLength(cl);
    }
    const connection = headers.connection;
    const close = connection !== undefined && hasToken(connection, 'close');
    this.keepAlive = !close && (!http10 || (connection !== undefined && hasToken(connection, 'keep-alive')));
    this.keepAliveHintMs = keepAliveHint(headers['keep-alive']);
    const events = this.#events!;
    if (this.#bodyless || status === 204 || status === 304) {
      // No body whatever the head says; a 204 that declares one is ambiguous.
      if (status === 204 && (te !== undefined || length > 0)) fail('a 204 response with a body');
      if (status === 304 && te !== undefined) fail('a 304 response with a body');
      this.#state = DONE;
    } else if (te !== undefined) this.#state = CHUNK_SIZE;
    else if (length >= 0) {
      this.#remaining = length;
      this.#state = length === 0 ? DONE : LENGTH;
    } else {
      this.#state = UNTIL_CLOSE;
      this.keepAlive = false;
    }
    events.head(status, headers);
  }
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** The field lines of `text` from `at` (each ending CRLF, the last one included), lower-cased names. */
function parseFields(text: string, at: number, into: IncomingHttpHeaders): IncomingHttpHeaders {
  const fields = into as Record<string, string | string[]>;
  while (at < text.length) {
    const end = text.indexOf('\r\n', at);
    let colon = at;
    while (colon < end && TOKEN[text.charCodeAt(colon)]) colon++;
    // Also refuses obs-fold (a line starting with SP or HTAB) and whitespace before the colon.
    if (colon === at || colon === end || text.charCodeAt(colon) !== 58) fail('bad header line');
    let from = colon + 1;
    let to = end;
    while (from < to && isOws(text.charCodeAt(from))) from++;
    while (to > from && isOws(text.charCodeAt(to - 1))) to--;
    for (let i = from; i < to; i++) if (!VALUE[text.charCodeAt(i)]) fail('bad header value');
    const name = text.slice(at, colon).toLowerCase();
    const value = text.slice(from, to);
    const prior = fields[name];
    if (prior === undefined) fields[name] = value;
    else if (typeof prior === 'string') fields[name] = [prior, value];
    else prior.push(value);
    at = end + 2;
  }
  return into;
}

const isOws = (c: number): boolean => c === 32 || c === 9;

/** Content-Length: digits only; repeated (as lines or a list) only with one value. */
function contentLength(raw: string | string[]): number {
  const values = typeof raw === 'string' ? [raw] : raw;
  let n = -1;
  for (const v of values)
    for (const part of v.split(',')) {
      const digits = part.trim();
      if (!/^\d{1,15}$/.test(digits)) fail('bad Content-Length');
      const m = Number(digits);
      if (n >= 0 && m !== n) fail('differing Content-Length values');
      n = m;
    }
  return n;
}

function hasToken(raw: string | string[], token: string): boolean {
  const list = typeof raw === 'string' ? raw : raw.join(',');
  for (const part of list.split(',')) if (part.trim().toLowerCase() === token) return true;
  return false;
}

function keepAliveHint(raw: string | string[] | undefined): number | undefined {
  if (typeof raw !== 'string') return undefined;
  const m = /(?:^|[,;\s])timeout\s*=\s*(\d{1,9})(?:$|[,;\s])/i.exec(raw);
  return m ? Number(m[1]) * 1000 : undefined;
}
