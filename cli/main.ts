import { UsageError } from '../lib/usage-error.ts';

type CommandMain = (args: string[]) => Promise<number | undefined>;

// Each role lives in its own module, loaded only when its command runs (keeps `route explain` fast).
const commands: Record<string, { summary: string; load: () => Promise<CommandMain> }> = {
  route: {
    summary: 'explain or test routing decisions offline (route explain | route test)',
    load: async () => (await import('./route-command.ts')).main,
  },
  proxy: {
    summary: 'run the sidecar / gateway proxy',
    load: async () => (await import('./proxy-command.ts')).main,
  },
  'init-iptables': {
    summary: "program the pod's nat table to capture traffic (init container)",
    load: async () => (await import('./init-iptables-command.ts')).main,
  },
  'wait-ready': {
    summary: "wait until the local proxy is ready (a classic sidecar's postStart hook)",
    load: async () => (await import('./wait-ready-command.ts')).main,
  },
  injector: {
    summary: 'run the sidecar injector (mutating admission webhook)',
    load: async () => (await import('./injector-command.ts')).main,
  },
  controller: {
    summary: 'run the control plane: config stream to sidecars, route status, mesh CA',
    load: async () => (await import('./controller-command.ts')).main,
  },
  ca: {
    summary: 'development CA: create a CA and issue SPIFFE workload certificates',
    load: async () => (await import('./ca-command.ts')).main,
  },
};

function usage(): string {
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(15)} ${c.summary}`);
  return `usage: sluice COMMAND [ARGS]\n\ncommands:\n${lines.join('\n')}\n`;
}

async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) throw new UsageError(`unknown command '${name}' (try 'sluice --help')`);
  return (await (await command.load())(rest)) ?? 0;
}

try {
  process.exitCode = await run(process.argv.slice(2));
} catch (err) {
  if (err instanceof UsageError) {
    process.stderr.write(`sluice: ${err.message}\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(
      `sluice: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exitCode = 1;
  }
}
