/**
 * Entry point of the sluice-echo image: the test echo server (images/echo/echo-server.ts) on one or more
 * ports. Flags win over environment variables:
 *   --name NAME    / ECHO_NAME    reported as `name` and x-echo-name (default: the pod name)
 *   --ports LIST   / ECHO_PORTS   comma-separated ports (default 8080)
 *   --host HOST    / ECHO_HOST    listen address (default 0.0.0.0)
 *   --upstream URL / ECHO_UPSTREAM call URL + the request's path first and embed its answer (a front end)
 *   --shutdown-delay-seconds N / ECHO_SHUTDOWN_DELAY_SECONDS  keep serving N s after SIGTERM (default 0)
 *   --on-sigterm drain / ECHO_ON_SIGTERM  at SIGTERM stop accepting and close keep-alive connections first
 *                                         (EchoServer.drain), then wait the delay; default: keep serving
 * After the delay it stops accepting and exits once the requests in flight are answered (2 s at most).
 * The pod name (POD_NAME, else HOSTNAME, which Kubernetes sets to it) is reported as `pod` in every reply.
 */
import { parseArgs } from 'node:util';
import { startEchoServer } from './echo-server.ts';
import type { EchoServer } from './echo-server.ts';

const USAGE =
  'usage: echo [--name NAME] [--ports PORT[,PORT...]] [--host HOST] [--upstream URL] [--shutdown-delay-seconds N] [--on-sigterm serve|drain]';

interface EchoSettings {
  name: string;
  pod: string | undefined;
  ports: number[];
  host: string;
  upstream: string | undefined;
  shutdownDelaySeconds: number;
  drainOnSigterm: boolean;
}

/** Settings from flags and environment; a string is the error to print. */
export function echoSettings(argv: string[], env: NodeJS.ProcessEnv): EchoSettings | string {
  let values: {
    name?: string | undefined;
    ports?: string | undefined;
    host?: string | undefined;
    upstream?: string | undefined;
    'shutdown-delay-seconds'?: string | undefined;
    'on-sigterm'?: string | undefined;
  };
  try {
    values = parseArgs({
      args: argv,
      options: {
        name: { type: 'string' },
        ports: { type: 'string' },
        host: { type: 'string' },
        upstream: { type: 'string' },
        'shutdown-delay-seconds': { type: 'string' },
        'on-sigterm': { type: 'string' },
      },
      strict: true,
    }).values;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  const pod = nonEmpty(env.POD_NAME) ?? nonEmpty(env.HOSTNAME);
  const name = nonEmpty(values.name) ?? nonEmpty(env.ECHO_NAME) ?? pod ?? 'echo';
  const portList = nonEmpty(values.ports) ?? nonEmpty(env.ECHO_PORTS) ?? '8080';
  const ports: number[] = [];
  for (const word of portList.split(',')) {
    const port = /^\d{1,5}$/.test(word.trim()) ? Number(word.trim()) : NaN;
    if (!(port >= 1 && port <= 65535)) return `bad port '${word}' in '${portList}'`;
    if (!ports.includes(port)) ports.push(port);
  }
  const upstream = nonEmpty(values.upstream) ?? nonEmpty(env.ECHO_UPSTREAM);
  if (upstream !== undefined && !/^http:\/\/[^/]+/.test(upstream)) return `bad upstream '${upstream}'`;
  const delayText =
    nonEmpty(values['shutdown-delay-seconds']) ?? nonEmpty(env.ECHO_SHUTDOWN_DELAY_SECONDS) ?? '0';
  const shutdownDelaySeconds = /^\d{1,4}$/.test(delayText) ? Number(delayText) : NaN;
  if (Number.isNaN(shutdownDelaySeconds)) return `bad shutdown delay '${delayText}'`;
  const onSigterm = nonEmpty(values['on-sigterm']) ?? nonEmpty(env.ECHO_ON_SIGTERM) ?? 'serve';
  if (onSigterm !== 'serve' && onSigterm !== 'drain')
    return `bad --on-sigterm '${onSigterm}' (serve or drain)`;
  return {
    shutdownDelaySeconds,
    drainOnSigterm: onSigterm === 'drain',
    name,
    pod,
    ports,
    host: nonEmpty(values.host) ?? nonEmpty(env.ECHO_HOST) ?? '0.0.0.0',
    upstream,
  };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

async function main(): Promise<number> {
  const settings = echoSettings(process.argv.slice(2), process.env);
  if (typeof settings === 'string') {
    process.stderr.write(`echo: ${settings}\n${USAGE}\n`);
    return 2;
  }
  const servers: EchoServer[] = [];
  try {
    for (const port of settings.ports) {
      servers.push(
        await startEchoServer({
          name: settings.name,
          pod: settings.pod,
          port,
          host: settings.host,
          ...(settings.upstream === undefined ? {} : { upstream: settings.upstream }),
        }),
      );
    }
  } catch (err) {
    process.stderr.write(`echo: cannot listen: ${err instanceof Error ? err.message : String(err)}\n`);
    await Promise.all(servers.map((server) => server.close()));
    return 1;
  }
  const where = servers.map((server) => `${server.host}:${server.port}`).join(', ');
  process.stdout.write(`echo ${settings.name} (pod ${settings.pod ?? '-'}) listening on ${where}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  if (settings.drainOnSigterm) for (const server of servers) server.drain();
  if (settings.shutdownDelaySeconds > 0) {
    process.stdout.write(`echo: SIGTERM, serving ${settings.shutdownDelaySeconds} s more\n`);
    await new Promise((resolve) => setTimeout(resolve, settings.shutdownDelaySeconds * 1000));
  }
  // A graceful exit, as most servers do: no new connections, the requests in flight (2 s at most) finish.
  for (const server of servers) server.drain();
  await Promise.all(servers.map((server) => server.idle(2000)));
  await Promise.all(servers.map((server) => server.close()));
  return 0;
}

if (import.meta.main) {
  process.exitCode = await main();
}
