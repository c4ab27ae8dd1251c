/**
 * Test fixture run inside netns pods: connects to HOST PORT (optionally from a bound source address), prints
 * whatever the server sends, and exits 0; on failure prints "ERROR <code>" and exits 3.
 *
 *   node test/support/probe-client.ts HOST PORT [SOURCE-ADDRESS]
 */
import { connect } from 'node:net';

const [host = '', port = '', localAddress] = process.argv.slice(2);
const socket = connect({ host, port: Number(port), ...(localAddress ? { localAddress } : {}) });
let received = '';
socket.setEncoding('utf8');
socket.setTimeout(3000, () => socket.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
socket.on('data', (chunk: string) => (received += chunk));
socket.on('end', () => {
  process.stdout.write(received);
  process.exit(0);
});
socket.on('error', (err: NodeJS.ErrnoException) => {
  process.stdout.write(`ERROR ${err.code ?? err.message}\n`);
  process.exit(3);
});
