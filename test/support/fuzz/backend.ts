// The fuzz test's backend: the echo server (HTTP/1.1 and h2c on one port), printing one line per request it
// receives (`req METHOD URL`) so the test can count them and look for requests that should never arrive.
// Usage: node test/support/fuzz/backend.ts PORT
import { startEchoServer } from '../../../images/echo/echo-server.ts';

const port = Number(process.argv[2]);
const server = await startEchoServer({
  name: 'fuzz-backend',
  host: '0.0.0.0',
  port,
  onRequest: (method, url) => process.stdout.write(`req ${JSON.stringify(method)} ${JSON.stringify(url)}\n`),
});
process.stdout.write(`fuzz-backend listening on ${server.port}\n`);
