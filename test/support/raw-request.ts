/**
 * Test fixture run inside netns pods: connects to HOST PORT, sends PAYLOAD (JSON string) and prints, as one
 * JSON line, whether it connected, whether the server closed the connection and what it sent. A guard (not a measurement) ends a
 * connection that stays open: it reports `closed: false`.
 *
 *   node test/support/raw-request.ts HOST PORT PAYLOAD [GUARD-MS]
 */
import { connect } from 'node:net';

const [host = '', port = '', payload = '""', guard = '10000'] = process.argv.slice(2);
const socket = connect({ host, port: Number(port) });
const chunks: Buffer[] = [];
let connected = false;
const report = (result: Record<string, unknown>): void => {
  const received = Buffer.concat(chunks).toString();
  process.stdout.write(`${JSON.stringify({ ...result, connected, received })}\n`);
  process.exit(0);
};
const timer = setTimeout(() => report({ closed: false }), Number(guard));
socket.on('connect', () => {
  connected = true;
  socket.write(JSON.parse(payload) as string);
});
socket.on('data', (chunk: Buffer) => chunks.push(chunk));
socket.on('close', () => {
  clearTimeout(timer);
  report({ closed: true });
});
socket.on('error', (err: NodeJS.ErrnoException) => {
  clearTimeout(timer);
  report({ closed: true, error: err.code ?? err.message });
});
