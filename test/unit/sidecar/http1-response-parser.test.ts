import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { ResponseParseError, ResponseParser } from '../../../sidecar/http1-response-parser.ts';

/** What a parser made of `parts` (fed in order): the events, or the error it refused them with. */
export function parse(
  parts: (string | Buffer)[],
  method = 'GET',
  eof = false,
): {
  status?: number;
  headers?: IncomingHttpHeaders;
  body: string;
  ended: boolean;
  trailers?: IncomingHttpHeaders;
  keepAlive: boolean;
  hintMs?: number;
  error?: string;
} {
  const parser = new ResponseParser(1024);
  const out: ReturnType<typeof parse> = { body: '', ended: false, keepAlive: false };
  parser.start(method, {
    head: (status, headers) => Object.assign(out, { status, headers }),
    body: (chunk) => void (out.body += chunk.toString('latin1')),
    end: (trailers) => Object.assign(out, { ended: true, ...(trailers ? { trailers } : {}) }),
  });
  try {
    for (const p of parts) parser.execute(typeof p === 'string' ? Buffer.from(p, 'latin1') : p);
    if (eof) parser.finish();
  } catch (err) {
    if (!(err instanceof ResponseParseError)) throw err;
    out.error = err.message;
  }
  out.keepAlive = parser.keepAlive;
  if (parser.keepAliveHintMs !== undefined) out.hintMs = parser.keepAliveHintMs;
  return out;
}

const ok = (text: string, method = 'GET'): ReturnType<typeof parse> => {
  const r = parse([text], method);
  assert.equal(r.error, undefined, text);
  assert.ok(r.ended, `ended: ${JSON.stringify(text)}`);
  return r;
};

const refused = (text: string, why: RegExp, method = 'GET', eof = false): void => {
  const r = parse([text], method, eof);
  assert.match(r.error ?? '(accepted)', why, JSON.stringify(text));
  assert.equal(r.ended, false, `not ended: ${JSON.stringify(text)}`);
};

describe('HTTP/1.1 response parser (strict)', () => {
  it('reads a Content-Length response, duplicates as arrays, keep-alive and its hint', () => {
    const r = ok(
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: a\r\nset-cookie: b\r\nKeep-Alive: timeout=5\r\n\r\nhello',
    );
    assert.equal(r.status, 200);
    assert.equal(r.body, 'hello');
    assert.deepEqual(r.headers?.['set-cookie'], ['a', 'b']);
    assert.equal(r.keepAlive, true);
    assert.equal(r.hintMs, 5000);
  });

  it('reads chunked bodies split anywhere, with extensions and trailers', () => {
    const text =
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\ngrpc-status: 0\r\n\r\n';
    for (let i = 1; i < text.length; i++) {
      const r = parse([text.slice(0, i), text.slice(i)]);
      assert.equal(r.error, undefined, `split at ${i}`);
      assert.equal(r.body, 'hello!');
      assert.deepEqual(r.trailers, { 'grpc-status': '0' });
    }
  });

  it('reads a response fed one byte per read (a trickled head is kept as read, joined once complete)', () => {
    const text =
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n5\r\nhello\r\n0\r\ngrpc-status: 0\r\nx: y\r\n\r\n';
    const bytes = (t: string): Buffer[] => [...Buffer.from(t, 'latin1')].map((b) => Buffer.of(b));
    const r = parse(bytes(text));
    assert.equal(r.error, undefined);
    assert.equal(r.headers?.['x-a'], 'b');
    assert.equal(r.body, 'hello');
    assert.deepEqual(r.trailers, { 'grpc-status': '0', x: 'y' });
    assert.match(
      parse(['HTTP/1.1 200 OK\r\n', ...bytes(`X: ${'a'.repeat(2000)}`)]).error ?? '',
      /head too large/,
    );
  });

  it('skips 102/103 interim responses; HEAD, 204 and 304 have no body', () => {
    const r = ok(
      'HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n',
    );
    assert.equal(r.status, 200);
    assert.equal(ok('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n', 'HEAD').body, '');
    assert.equal(ok('HTTP/1.1 204 No Content\r\n\r\n').status, 204);
    assert.equal(ok('HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n').status, 304);
  });

  it('interim heads count together against the head limit: endless 103s are refused', () => {
    const hint = 'HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n';
    const final = 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n';
    assert.equal(ok(hint.repeat(10) + final).status, 200);
    assert.match(parse([hint.repeat(40) + final]).error ?? '', /head too large/);
    // Also when they come a read at a time, and with the final head pending.
    assert.match(parse([...Array<string>(40).fill(hint), final]).error ?? '', /head too large/);
    assert.match(
      parse([hint.repeat(30), `HTTP/1.1 200 OK\r\nX: ${'a'.repeat(200)}`]).error ?? '',
      /head too large/,
    );
  });

  it('a body without length is delimited by the close and never reused', () => {
    const r = parse(['HTTP/1.1 200 OK\r\n\r\nsome', ' more'], 'GET', true);
    assert.equal(r.error, undefined);
    assert.equal(r.body, 'some more');
    assert.equal(r.ended, true);
    assert.equal(r.keepAlive, false);
    assert.equal(ok('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n').keepAlive, false);
    assert.equal(ok('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n').keepAlive, false);
  });

  it('refuses what could be framed two ways', () => {
    const cases: [string, RegExp][] = [
      ['HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab', /differing Content-Length/],
      ['HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nab', /differing Content-Length/],
      ['HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\na', /bad Content-Length/],
      ['HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', /both/],
      ['HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', /transfer coding/],
      [
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
        /transfer coding/,
      ],
      ['HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n', /transfer coding/],
      ['HTTP/1.1 200 OK\r\nFoo: a\r\n b\r\nContent-Length: 0\r\n\r\n', /bad header line/],
      ['HTTP/1.1 200 OK\r\nFoo : a\r\nContent-Length: 0\r\n\r\n', /bad header line/],
      ['HTTP/1.1 200 OK\r\nFoo: a\rb\r\nContent-Length: 0\r\n\r\n', /bad header value/],
      ['HTTP/1.1 200 OK\r\nFoo: a\0b\r\nContent-Length: 0\r\n\r\n', /bad header value/],
      ['HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n', /bad (status line|reason)/],
      ['HTTP/1.1 200 OK\r\nA: b\nContent-Length: 0\r\n\r\n', /bad header/],
      ['HTTP/1.1 20 OK\r\n\r\n', /bad status/],
      ['HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n', /bad status line/],
      ['HTTP/1.1 200OK\r\nContent-Length: 0\r\n\r\n', /bad status line/],
      ['HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', /unexpected 100/],
      ['HTTP/1.1 101 Switching\r\nUpgrade: x\r\n\r\n', /unexpected 101/],
      ['HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n', /204/],
      ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n', /bad chunk size/],
      [
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0000000000001\r\na\r\n0\r\n\r\n',
        /bad chunk size/,
      ],
      ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\na\r\n0\r\n\r\n', /bad chunk size/],
      ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\na\r\n0\r\n\r\n', /without CRLF/],
      ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n', /not followed by CRLF/],
      [`HTTP/1.1 200 OK\r\nX: ${'a'.repeat(1100)}\r\n\r\n`, /head too large/],
    ];
    for (const [text, why] of cases) refused(text, why);
  });

  it('bytes after a complete response are refused (the connection closes), in the same read or later', () => {
    for (const parts of [
      ['HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab'],
      ['HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na', 'b'],
      ['HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\n\r\n'],
    ]) {
      const r = parse(parts);
      assert.equal(r.ended, true);
      assert.match(r.error ?? '', /bytes after a complete response/);
    }
  });

  it('a head over the limit is refused before its end arrives', () => {
    const r = parse(['HTTP/1.1 200 OK\r\n', `X: ${'a'.repeat(2000)}`]);
    assert.match(r.error ?? '', /head too large/);
  });

  it('a connection closed before the end of a delimited response is an error', () => {
    refused('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel', /closed mid-body/, 'GET', true);
    refused('HTTP/1.1 200 OK\r\nContent', /closed before a response/, 'GET', true);
  });

  it('bytes with no request outstanding are refused', () => {
    const parser = new ResponseParser(1024);
    assert.throws(() => parser.execute(Buffer.from('HTTP/1.1 200 OK\r\n\r\n')), ResponseParseError);
  });
});
