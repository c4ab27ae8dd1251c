/**
 * Test fixture run inside netns pods, playing an attacker: sends exact bytes over TCP (or, with "tls", over
 * TLS with a given certificate and ALPN list) and prints what came back as JSON `{"response": "<latin1>"}`, or
 * `{"error": "<code>"}`. A chunk's `delayMs` is part of the attack (a client that is slow on purpose).
 * "h2" sends one HTTP/2 request (prior knowledge) with the given headers and prints `{"status": N}`.
 *
 *   node test/support/raw-client.ts '<json plan>'
 */
import net from 'node:net';
import tls from 'node:tls';
import http2 from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';

interface Plan {
  kind?: 'raw' | 'h2';
  host: string;
  port: number;
  /** `waitFor`: write only once the response so far contains this (a server-first protocol's greeting). */
  chunks?: { delayMs?: number; waitFor?: string; data: string }[];
  tls?: { cert: string; key: string; ca: string; alpn: string[] };
  headers?: Record<string, string | string[]>;
}

const plan = JSON.parse(process.argv[2]!) as Plan;
let printed = false;
const print = (out: unknown): void => {
  if (!printed) process.stdout.write(`${JSON.stringify(out)}\n`);
  printed = true;
};
setTimeout(() => {
  print({ error: 'client timeout' });
  process.exit(0);
}, 30_000).unref();

if (plan.kind === 'h2') {
  const session = http2.connect(`http://${plan.host}:${plan.port}`);
  session.on('error', (err: NodeJS.ErrnoException) => print({ error: err.code ?? err.message }));
  const req = session.request({ ':path': '/h2', ...plan.headers });
  let body = '';
  let status: number | undefined;
  req.setEncoding('utf8').on('data', (d: string) => (body += d));
  req.on('response', (h) => (status = h[':status']));
  req.on('end', () => {
    print({ status, response: body });
    session.close();
  });
  req.on('error', (err: NodeJS.ErrnoException) => {
    print({ error: err.code ?? err.message });
    session.destroy();
  });
  req.end();
} else {
  const socket = plan.tls
    ? tls.connect({
        host: plan.host,
        port: plan.port,
        cert: plan.tls.cert,
        key: plan.tls.key,
        ca: plan.tls.ca,
        ALPNProtocols: plan.tls.alpn,
        minVersion: 'TLSv1.3',
        checkServerIdentity: () => undefined,
      })
    : net.connect({ host: plan.host, port: plan.port });
  let response = '';
  socket.setEncoding('latin1');
  socket.on('data', (d: string) => (response += d));
  socket.on('close', () => print({ response }));
  socket.on('error', (err: NodeJS.ErrnoException) => {
    if (response === '') print({ error: err.code ?? err.message });
  });
  const write = async (): Promise<void> => {
    for (const chunk of plan.chunks ?? []) {
      if (chunk.delayMs) await sleep(chunk.delayMs);
      const wanted = chunk.waitFor;
      if (wanted !== undefined && !response.includes(wanted))
        await new Promise<void>((resolve) => {
          const check = (): void => {
            if (!response.includes(wanted)) return;
            socket.off('data', check);
            resolve();
          };
          socket.on('data', check);
        });
      socket.write(Buffer.from(chunk.data, 'latin1'));
    }
  };
  socket.once(plan.tls ? 'secureConnect' : 'connect', () => void write());
}
