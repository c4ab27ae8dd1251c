// The import directions of README "Layout" hold: ESLint rejects a wrong one, and the sidecar's processes
// never load @peculiar/x509 (ADR 0001), Node's bundled undici (ADR 0016) nor @opentelemetry/api (its types
// only: sidecar/tracing/span-record.ts), checked on the modules Node actually loads.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import tseslint from 'typescript-eslint';
import { layoutRules } from '../../eslint.layout.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

describe('layout: import directions', () => {
  const eslint = new ESLint({
    cwd: repoRoot,
    overrideConfigFile: true,
    overrideConfig: [{ files: ['**/*.ts'], languageOptions: { parser: tseslint.parser } }, ...layoutRules],
  });

  async function problems(file: string, source: string): Promise<string[]> {
    const [result] = await eslint.lintText(source, { filePath: `${repoRoot}${file}` });
    return (result?.messages ?? []).map((m) => `${m.ruleId ?? 'parse'}: ${m.message}`);
  }

  const wrong: [string, string][] = [
    ['sidecar/probe.ts', "import { ConfigHub } from '../controller/config-hub.ts';"],
    ['sidecar/probe.ts', "import { x509 } from '../pki/x509-lib.ts';"],
    ['sidecar/probe.ts', "import * as x509 from '@peculiar/x509';"],
    ['injector/probe.ts', "export { main } from '../cli/proxy-command.ts';"],
    ['controller/probe.ts', "import type { Proxy } from '../sidecar/proxy.ts';"],
    ['lib/kube/probe.ts', "import { UsageError } from '../../cli/main.ts';"],
    ['lib/probe.ts', "import { CONFIG_PORT } from '../protocol/config-protocol.ts';"],
    ['pki/probe.ts', "import { UsageError } from '../cli/main.ts';"],
    ['mesh-model/probe.ts', "import { jsonLogger } from '../controller/config-hub.ts';"],
    ['protocol/probe.ts', "import { ConfigHub } from '../controller/config-hub.ts';"],
    ['demo/probe.ts', "import { x } from '../controller/route-status.ts';"],
    ['images/echo/probe.ts', "import { freePort } from '../../test/support/free-port.ts';"],
    ['cli/probe.ts', "import { eventually } from '../test/support/kube.ts';"],
  ];
  for (const [file, source] of wrong) {
    it(`rejects ${file}: ${source}`, async () => {
      const found = await problems(file, source);
      assert.equal(found.length, 1, found.join('\n'));
      assert.match(found[0]!, /^no-restricted-imports: /);
    });
  }

  const right: [string, string][] = [
    [
      'sidecar/probe.ts',
      "import { CONFIG_PORT } from '../protocol/config-protocol.ts';\nimport './proxy.ts';",
    ],
    ['sidecar/probe.ts', "import { createCsr } from '../pki/create-csr.ts';"],
    ['controller/probe.ts', "import { KubeApi } from '../lib/kube/kube-api.ts';\nimport '../pki/ca.ts';"],
    ['lib/kube/probe.ts', "import { UsageError } from '../usage-error.ts';"],
    ['cli/probe.ts', "import { main } from '../sidecar/proxy.ts';\nimport '../controller/controller.ts';"],
    ['images/toolbox/probe.ts', "import { grpcCall } from '../echo/echo-server.ts';"],
  ];
  for (const [file, source] of right) {
    it(`accepts ${file}: ${source.replace('\n', ' ')}`, async () => {
      assert.deepEqual(await problems(file, source), []);
    });
  }

  it('is part of the project ESLint configuration', async () => {
    const config = (await new ESLint({ cwd: repoRoot }).calculateConfigForFile('sidecar/proxy.ts')) as {
      rules: Record<string, unknown>;
    };
    assert.ok(config.rules['no-restricted-imports'], 'eslint.config.js does not use eslint.layout.js');
  });
});

/**
 * The module URLs a `sluice ARGS` process loaded (all of them: its static graph is loaded before it runs),
 * then Node's own modules it loaded as `node:internal/...`.
 */
function loadedModules(args: string[]): string[] {
  const hook = [
    "import { registerHooks } from 'node:module';",
    "import { writeSync } from 'node:fs';",
    'const seen = [];',
    'registerHooks({ load(url, context, next) { seen.push(url); return next(url, context); } });',
    "const internal = () => process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => 'node:' + m.slice(13));",
    "process.on('exit', () => writeSync(2, '\\nLOADED ' + JSON.stringify([...seen, ...internal()]) + '\\n'));",
  ].join('\n');
  const run = spawnSync(
    process.execPath,
    ['--import', `data:text/javascript,${encodeURIComponent(hook)}`, 'bin/sluice.js', ...args],
    { cwd: repoRoot, encoding: 'utf8' },
  );
  const line = run.stderr.split('\n').find((l) => l.startsWith('LOADED '));
  assert.ok(line, `no module list from sluice ${args.join(' ')}: ${run.stderr}`);
  return JSON.parse(line.slice('LOADED '.length)) as string[];
}

describe('layout: the sidecar never loads @peculiar/x509', function () {
  this.timeout(30_000);
  const peculiar = (urls: string[]): string[] =>
    urls.filter((url) => url.includes('/node_modules/@peculiar/'));

  for (const command of ['proxy', 'init-iptables', 'wait-ready']) {
    it(`sluice ${command}`, () => {
      const urls = loadedModules([command, '--help']);
      assert.ok(
        urls.some((url) => url.endsWith(`/cli/${command}-command.ts`)),
        `${command}-command.ts not loaded`,
      );
      assert.deepEqual(peculiar(urls), []);
    });
  }

  it('while the probe does see it where it is loaded (sluice ca)', () => {
    assert.notDeepEqual(peculiar(loadedModules(['ca', '--help'])), []);
  });
});

// Importing node:http (not requiring it) reads its lazy WebSocket getters, which load Node's bundled undici:
// about 3 MB of an idle sidecar's RSS (sidecar/node-http.ts).
describe("layout: the sidecar does not load Node's bundled undici", function () {
  this.timeout(30_000);
  const bundled = (urls: string[]): string[] =>
    urls.filter((url) => url === 'node:internal/deps/undici/undici');

  it('sluice proxy', () => {
    assert.deepEqual(bundled(loadedModules(['proxy', '--help'])), []);
  });

  it('while the probe does see it where node:http is imported', () => {
    const hookless = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        "await import('node:http'); console.log(process.moduleLoadList.includes('NativeModule internal/deps/undici/undici'))",
      ],
      { encoding: 'utf8' },
    );
    assert.equal(hookless.stdout.trim(), 'true');
  });
});

// Tracing uses only @opentelemetry/api's types; its two enums' values are Sluice's own constants.
describe('layout: the sidecar does not load @opentelemetry/api', function () {
  this.timeout(30_000);
  const api = (urls: string[]): string[] =>
    urls.filter((url) => url.includes('/node_modules/@opentelemetry/'));

  it('sluice proxy', () => {
    assert.deepEqual(api(loadedModules(['proxy', '--help'])), []);
  });
});
