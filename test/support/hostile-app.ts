/**
 * A hostile or buggy HTTP/1.1 app, run inside a netns pod behind its sidecar: raw TCP, keep-alive, every
 * answer tagged with the caller named in the request path (`/<case>/<caller>`), misframed as the case says.
 *
 *   node test/support/hostile-app.ts <port>
 *   stdout: one line per connection closed: `closed <connection number> after <requests> requests`
 *
 * A lenient parser in front of it would hand the tag of one caller to another (a smuggled second response);
 * the test checks that no caller ever reads another's tag.
 */
import net from 'node:net';

const port = Number(process.argv[2]);
const tag = (caller: string): string => `caller:${caller};`;

/** A complete, well-framed response carrying `caller`'s tag: what a lenient parser would misdeliver. */
const valid = (caller: string, extra = ''): string =>
  `HTTP/1.1 200 OK\r\ncontent-length: ${tag(caller).length}\r\n${extra}\r\n${tag(caller)}`;

const chunked = (size: string, caller: string): string =>
  `HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n${size}\r\n${tag(caller)}\r\n0\r\n\r\n`;

/** How each case answers one request (`write` more, `end` the connection, `destroy` it). */
type Answer = (caller: string, socket: net.Socket, state: { early?: string }) => void;

const CASES: Record<string, Answer> = {
  good: (c, s) => s.write(valid(c)),
  // Smuggling: each one hides a second response a lenient parser would keep for the next request.
  'cl-te': (c, s) =>
    s.write(`HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n${valid(c)}`),
  'two-cl': (c, s) =>
    s.write(`HTTP/1.1 200 OK\r\ncontent-length: 0\r\ncontent-length: ${valid(c).length}\r\n\r\n${valid(c)}`),
  'te-chunked-identity': (c, s) =>
    s.write(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n${valid(c)}`),
  'obs-fold': (c, s) =>
    s.write(
      `HTTP/1.1 200 OK\r\nx-pad: a\r\n transfer-encoding: chunked\r\ncontent-length: 0\r\n\r\n${valid(c)}`,
    ),
  'chunk-sign': (c, s) => s.write(chunked(`+${tag(c).length.toString(16)}`, c)),
  'chunk-0x': (c, s) => s.write(chunked(`0x${tag(c).length.toString(16)}`, c)),
  'chunk-overlong': (c, s) => s.write(chunked(tag(c).length.toString(16).padStart(20, '0'), c)),
  appended: (c, s) => s.write(valid(c) + valid(c)),
  // Answers, then (once the connection is idle in the pool) sends a response no one asked for.
  unsolicited: (c, s) => {
    s.write(valid(c));
    setTimeout(() => s.writable && s.write(valid(c)), 300);
  },
  // Slow and huge.
  trickle: (c, s) => trickle(s, valid(c), 5),
  'trickle-long': (c, s) => trickle(s, valid(c, `x-pad: ${'p'.repeat(400)}\r\n`), 10),
  'huge-head': (c, s) => s.write(valid(c, `x-pad: ${'h'.repeat(70 * 1024)}\r\n`)),
  'endless-103': (c, s) => {
    const hint = `HTTP/1.1 103 Early Hints\r\nlink: </${tag(c)}>; rel=preload\r\n\r\n`;
    const timer = setInterval(() => (s.writable ? s.write(hint.repeat(20)) : clearInterval(timer)), 2);
  },
  'stall-body': (c, s) => s.write(`HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n${tag(c)}`),
  // Answers at the head, the body unread; a buggy app then takes the rest of the body for requests, and
  // answers them as the first caller's.
  early: (c, s, state) => {
    state.early = c;
    s.write('HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n');
  },
  // The upstream closing part way.
  'close-mid-head': (_c, s) => s.end('HTTP/1.1 200 OK\r\ncontent-le'),
  'close-mid-body': (c, s) => s.end(`HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n${tag(c)}`),
  'close-after-head': (_c, s) => s.end('HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n'),
};

function trickle(s: net.Socket, text: string, everyMs: number): void {
  let i = 0;
  const timer = setInterval(() => {
    if (!s.writable || i >= text.length) return clearInterval(timer);
    s.write(text[i++]!);
  }, everyMs);
}

let connections = 0;
net
  .createServer((socket) => {
    const n = ++connections;
    let requests = 0;
    let buf = '';
    let bodyLeft = 0;
    const state: { early?: string } = {};
    socket.on('error', () => undefined);
    socket.on('close', () => console.log(`closed ${n} after ${requests} requests`));
    socket.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (;;) {
        if (state.early !== undefined) {
          // Whatever follows an early answer is taken for a request and answered as the first caller's.
          if (buf.length === 0) return;
          buf = '';
          socket.write(valid(state.early));
          continue;
        }
        if (bodyLeft > 0) {
          const n = Math.min(bodyLeft, buf.length);
          bodyLeft -= n;
          buf = buf.slice(n);
          if (bodyLeft > 0) return;
        }
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        requests++;
        const length = /\r\ncontent-length: *(\d+)/i.exec(head);
        bodyLeft = length ? Number(length[1]) : 0;
        const [, kase = '', caller = ''] = head.split(' ')[1]!.split('/');
        const answer = CASES[kase];
        if (!answer) return void socket.destroy();
        const hasBody = bodyLeft > 0 || /\r\ntransfer-encoding:/i.test(head);
        // Early (answered before the body is read) only when there is a body; else a good answer.
        (kase === 'early' && !hasBody ? CASES.good! : answer)(caller, socket, state);
      }
    });
  })
  .listen(port, '::');
