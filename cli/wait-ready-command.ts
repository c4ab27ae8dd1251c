// `sluice wait-ready`: returns once the local proxy's /ready answers 200. The injector makes it the classic
// sidecar's postStart hook on clusters without native sidecars: kubelet starts the app containers only
// after the hook returns, so the app never runs before its traffic can flow.
import http from 'node:http';
import { parseArgs } from 'node:util';
import { parseFlags, UsageError } from '../lib/usage-error.ts';
import { jsonLogger } from '../lib/json-log.ts';

const USAGE = `usage: sluice wait-ready [--port N] [--timeout-seconds N]
  --port N             the proxy's admin port, default 15021
  --timeout-seconds N  give up (exit 1) after this long, default 120`;

function probe(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/ready', timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

function positiveInteger(text: string | undefined, fallback: number, flag: string, max: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > max)
    throw new UsageError(`--${flag} must be 1-${max}, got '${text}'`);
  return n;
}

export async function main(args: string[]): Promise<number> {
  const { values } = parseFlags(() =>
    parseArgs({
      args,
      options: {
        port: { type: 'string' },
        'timeout-seconds': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }),
  );
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const log = jsonLogger('wait-ready');
  const port = positiveInteger(values.port, 15021, 'port', 65535);
  const timeoutSeconds = positiveInteger(values['timeout-seconds'], 120, 'timeout-seconds', 86400);
  const deadline = Date.now() + timeoutSeconds * 1000;
  while (!(await probe(port))) {
    if (Date.now() > deadline) {
      log.error('the proxy was not ready in time', { adminPort: port, timeoutSeconds });
      return 1;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  log.info('the proxy is ready', { adminPort: port });
  return 0;
}
