/**
 * Test fixture run inside netns pods: TCP listeners that answer every connection with one JSON line saying which
 * listener took it and what SO_ORIGINAL_DST reports, then close.
 *
 *   node test/support/report-server.ts LABEL=PORT | LABEL=HOST:PORT ...
 *
 * Without a host a listener binds [::] (dual stack). Prints "ready" once every listener is bound.
 */
import { createServer, type AddressInfo } from 'node:net';
import { originalDestination } from '../../sidecar/original-dst.ts';

export interface Report {
  label: string;
  original: { address: string; port: number; family: 4 | 6 } | null;
  local: string;
  remote: string;
}

const specs = process.argv.slice(2).map((arg) => {
  const match = /^([\w-]+)=(?:(.+):)?(\d+)$/.exec(arg);
  if (!match) throw new Error(`bad listener '${arg}' (want LABEL=PORT or LABEL=HOST:PORT)`);
  return { label: match[1]!, host: (match[2] ?? '::').replace(/^\[|\]$/g, ''), port: Number(match[3]) };
});

await Promise.all(
  specs.map(
    ({ label, host, port }) =>
      new Promise<void>((resolve, reject) => {
        const server = createServer((socket) => {
          socket.on('error', () => undefined);
          const report: Report = {
            label,
            original: originalDestination(socket) ?? null,
            local: `${socket.localAddress}:${socket.localPort}`,
            remote: `${socket.remoteAddress}:${socket.remotePort}`,
          };
          socket.end(`${JSON.stringify(report)}\n`);
        });
        server.once('error', reject);
        server.listen({ host, port, ipv6Only: false }, () => {
          const bound = server.address() as AddressInfo;
          process.stderr.write(`${label} listening on ${bound.address}:${bound.port}\n`);
          resolve();
        });
      }),
  ),
);
process.stdout.write('ready\n');
process.on('SIGTERM', () => process.exit(0));
