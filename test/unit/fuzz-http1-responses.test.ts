// Fuzzes the upstream HTTP/1.1 response parser (sidecar/http1-response-parser.ts) as a hostile app would:
// valid responses of every framing, split at random, must parse the same whole or in pieces; mutated ones
// (bytes flipped, inserted, dropped, headers duplicated) must either be refused with a ResponseParseError or
// parse the same however they are split, and an accepted body is never longer than the bytes sent.
import assert from 'node:assert/strict';
import { envCount, fuzzSeed, Prng } from '../support/fuzz/prng.ts';
import { ResponseParseError, ResponseParser } from '../../sidecar/http1-response-parser.ts';

const seed = fuzzSeed();
const cases = envCount('SLUICE_FUZZ_RESPONSES', 2000);

interface Outcome {
  events: string[];
  error: string | undefined;
}

function run(bytes: Buffer, cuts: number[], method: string): Outcome {
  const parser = new ResponseParser(512);
  const events: string[] = [];
  let body = '';
  parser.start(method, {
    head: (status, headers) => events.push(`head ${status} ${JSON.stringify(headers)}`),
    body: (chunk) => void (body += chunk.toString('latin1')),
    end: (trailers) => events.push(`body ${body}`, `end ${JSON.stringify(trailers ?? null)}`),
  });
  let at = 0;
  try {
    for (const cut of [...cuts, bytes.length]) {
      parser.execute(bytes.subarray(at, cut));
      at = cut;
    }
    parser.finish();
  } catch (err) {
    if (!(err instanceof ResponseParseError)) throw err;
    return { events, error: err.message };
  }
  return { events, error: undefined };
}

const NAMES = ['content-type', 'x-a', 'Set-Cookie', 'etag', 'Connection', 'Keep-Alive', 'Content-Length'];

function validResponse(r: Prng): { bytes: Buffer; method: string } {
  const method = r.chance(0.1) ? 'HEAD' : r.pick(['GET', 'POST']);
  let text = '';
  if (r.chance(0.1)) text += 'HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n';
  const status = r.pick([200, 200, 201, 204, 304, 404, 500]);
  text += `HTTP/1.${r.chance(0.9) ? 1 : 0} ${status}${r.chance(0.8) ? ' Reason' : ''}\r\n`;
  for (let i = r.int(0, 4); i > 0; i--)
    text += `${r.pick(NAMES.slice(0, 4))}:${r.chance(0.5) ? ' ' : ''}${r.string(r.int(0, 12), 'abc XYZ-=;,')}\r\n`;
  const body = r.string(r.int(0, 40), 'abcdef\r\n0123');
  const framing = status === 204 || status === 304 ? 'none' : r.pick(['length', 'chunked', 'close']);
  if (framing === 'length' || (framing === 'none' && status === 304 && r.chance(0.3)))
    text += `Content-Length: ${body.length}\r\n`;
  if (framing === 'chunked' && !text.startsWith('HTTP/1.0', text.lastIndexOf('HTTP/1.')))
    text += 'Transfer-Encoding: chunked\r\n';
  if (r.chance(0.2)) text += 'Keep-Alive: timeout=5\r\n';
  text += '\r\n';
  if (method !== 'HEAD' && framing !== 'none') {
    if (text.includes('Transfer-Encoding')) {
      let left = body;
      while (left.length > 0) {
        const n = r.int(1, left.length);
        text += `${n.toString(16)}${r.chance(0.2) ? ';ext=1' : ''}\r\n${left.slice(0, n)}\r\n`;
        left = left.slice(n);
      }
      text += `0\r\n${r.chance(0.3) ? 'grpc-status: 0\r\n' : ''}\r\n`;
    } else text += body;
  }
  return { bytes: Buffer.from(text, 'latin1'), method };
}

function mutate(r: Prng, bytes: Buffer): Buffer {
  const out = [...bytes];
  for (let i = r.int(1, 3); i > 0; i--) {
    const at = r.int(0, out.length);
    switch (r.int(0, 3)) {
      case 0:
        out.splice(at, 1);
        break;
      case 1:
        out.splice(at, 0, r.pick([0, 9, 10, 13, 32, 44, 48, 58, 59, 127, 255, r.int(0, 255)]));
        break;
      case 2:
        if (at < out.length) out[at] = r.int(0, 255);
        break;
      default: {
        const extra = r.pick([
          'Content-Length: 3\r\n',
          'Transfer-Encoding: chunked\r\n',
          'Transfer-Encoding: gzip\r\n',
          ' folded\r\n',
          'Connection: close\r\n',
        ]);
        const line = bytes.indexOf('\r\n');
        if (line > 0) out.splice(line + 2, 0, ...Buffer.from(extra, 'latin1'));
      }
    }
  }
  return Buffer.from(out);
}

function cutsFor(r: Prng, length: number): number[] {
  const cuts: number[] = [];
  for (let i = r.int(0, 4); i > 0; i--) cuts.push(r.int(0, length));
  return cuts.sort((a, b) => a - b);
}

describe(`fuzz: upstream HTTP/1.1 responses (seed ${seed}, ${cases} cases)`, () => {
  it('valid responses parse the same whole or split anywhere', () => {
    const r = new Prng(seed);
    for (let i = 0; i < cases; i++) {
      const { bytes, method } = validResponse(r);
      const whole = run(bytes, [], method);
      assert.equal(whole.error, undefined, `case ${i}: ${JSON.stringify(bytes.toString('latin1'))}`);
      assert.deepEqual(run(bytes, cutsFor(r, bytes.length), method), whole, `case ${i}`);
    }
  });

  it('mutated responses are refused, or parse the same however split, never past the bytes sent', () => {
    const r = new Prng(seed ^ 0x9e3779b9);
    let refused = 0;
    for (let i = 0; i < cases; i++) {
      const { bytes: valid, method } = validResponse(r);
      const bytes = mutate(r, valid);
      const whole = run(bytes, [], method);
      const split = run(bytes, cutsFor(r, bytes.length), method);
      const shown = JSON.stringify(bytes.toString('latin1'));
      assert.deepEqual(split.events, whole.events, `case ${i}: ${shown}`);
      assert.equal(split.error === undefined, whole.error === undefined, `case ${i}: ${shown}`);
      if (whole.error !== undefined) refused++;
      const body = whole.events.find((e) => e.startsWith('body '));
      if (body) assert.ok(body.length - 5 <= bytes.length, `case ${i}`);
    }
    assert.ok(refused > cases / 4, `only ${refused} of ${cases} mutated responses refused`);
  });
});
