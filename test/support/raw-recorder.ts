/**
 * Test fixture run inside netns pods: a stand-in HTTP app that records the exact bytes it receives. For every
 * chunk it prints one JSON line `{"conn":N,"data":"<latin1>"}`; once a connection's header block is complete it
 * answers `200 ok` and closes. Prints "ready" once listening.
 *
 *   node test/support/raw-recorder.ts PORT
 */
import { createServer } from 'node:net';

const port = Number(process.argv[2]);
let connections = 0;
const server = createServer((socket) => {
  const conn = ++connections;
  let received = '';
  socket.on('error', () => undefined);
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => {
    process.stdout.write(`${JSON.stringify({ conn, data: chunk })}\n`);
    const before = received.length;
    received += chunk;
    if (before < received.length && received.includes('\r\n\r\n') && !socket.writableEnded)
      socket.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
  });
});
server.listen(port, '::', () => process.stdout.write('ready\n'));
