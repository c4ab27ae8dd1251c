// `npm test`'s pretest: installs the Debian packages the netns integration tests and `sluice init-iptables`
// need (cluster/host-packages.ts lists them), or says in one line which are missing.
import { ensureHostPackages, HOST_REQUIREMENTS } from '../cluster/host-packages.ts';

try {
  const installed = await ensureHostPackages('tests');
  const needed = [
    ...new Set(HOST_REQUIREMENTS.filter((r) => r.neededBy.includes('tests')).map((r) => r.pkg)),
  ];
  process.stdout.write(
    installed.length > 0
      ? `install-host-deps: installed ${installed.join(' ')}\n`
      : `install-host-deps: ${needed.join(', ')} present\n`,
  );
} catch (error) {
  process.stderr.write(`install-host-deps: ${(error as Error).message}\n`);
  process.exitCode = 1;
}
