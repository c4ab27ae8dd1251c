/**
 * A hostile client run inside a netns pod (its traffic captured like an app's): raw TCP, byte by byte.
 *
 *   node test/support/raw-attacker.ts '<json plan>'
 *   plan: { host, port, send: string, trickle?: string, everyMs?: number, connections?: number }
 *   - send: written at once; trickle: then written every everyMs until the server closes;
 *   - connections: open this many connections first (held, sending nothing) and report which of them the
 *     server closed by the time it closed the last one (the one past a cap).
 *   output: { data: what the server sent, closedAfterMs, heldClosed?: number }
 */
import net from 'node:net';

interface Plan {
  host: string;
  port: number;
  send: string;
  trickle?: string;
  everyMs?: number;
  connections?: number;
}

const plan = JSON.parse(process.argv[2] ?? '{}') as Plan;

function open(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: plan.host, port: plan.port }, () => resolve(s));
    s.once('error', reject);
  });
}

const held: net.Socket[] = [];
let heldClosed = 0;
for (let i = 0; i < (plan.connections ?? 0); i++) {
  const s = await open();
  s.on('error', () => undefined);
  s.on('close', () => heldClosed++);
  held.push(s);
}

const socket = await open();
const t0 = performance.now();
let data = '';
socket.on('data', (d: Buffer) => (data += d.toString('latin1')));
socket.on('error', () => undefined);
if (plan.send) socket.write(plan.send);
const timer = plan.trickle
  ? setInterval(() => socket.writable && socket.write(plan.trickle!), plan.everyMs ?? 200)
  : undefined;
await new Promise((resolve) => socket.once('close', resolve));
clearInterval(timer);
const result = {
  data,
  closedAfterMs: Math.round(performance.now() - t0),
  ...(plan.connections ? { heldClosed } : {}),
};
for (const s of held) s.destroy();
process.stdout.write(JSON.stringify(result));
