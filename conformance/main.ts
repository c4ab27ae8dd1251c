// `npm run conformance [-- --profiles=MESH-HTTP,MESH-GRPC,GATEWAY-HTTP,GATEWAY-GRPC] [--run-test=Name]
// [--verbose]`: the unmodified upstream Gateway API conformance suite against the local cluster with
// Sluice installed. The script brings the cluster up first (node cluster/main.ts up).
import { spawn } from 'node:child_process';
import { appendFileSync, createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { PAUSE_IMAGE } from '../cluster/components.ts';
import { ClusterError } from '../cluster/errors.ts';
import { GATEWAY_API_VERSION } from '../cluster/gateway-api.ts';
import { goBuild } from '../cluster/go-build.ts';
import { kubectl } from '../cluster/kubectl.ts';
import { clusterPaths, REPO_DIR, type ClusterPaths } from '../cluster/paths.ts';
import { Progress } from '../cluster/progress.ts';
import { localCluster } from '../demo/demo-cluster.ts';
import { installGatewayApi, installSluice } from '../demo/install-sluice.ts';
import { CONFORMANCE_BUILDS, SUITE_VERSION } from './builds.ts';
import { loadEchoImages, suiteModuleDir } from './images.ts';
import { GATEWAY_BACKEND_NAMESPACES, placeholderObjects } from './mesh-only-workaround.ts';
import {
  isGatewayProfile,
  MESH_PROFILES,
  parseProfiles,
  supportedFeatures,
  type Profile,
} from './profiles.ts';
import { countLines, ResultCollector, summary } from './test-output.ts';

const USAGE =
  'usage: npm run conformance [-- --profiles=MESH-HTTP,MESH-GRPC,GATEWAY-HTTP,GATEWAY-GRPC] [--run-test=Name] [--verbose]';
const GATEWAY_CLASS = 'sluice';
const INJECT_LABEL = 'sluice.dev/inject=enabled';
const MESH_NAMESPACES = ['gateway-conformance-mesh', 'gateway-conformance-mesh-consumer'];
const FAILED_TEST_LINES = 60;

interface Options {
  profiles: Profile[];
  runTest: string | undefined;
  verbose: boolean;
}

function options(argv: readonly string[]): Options {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      profiles: { type: 'string', default: MESH_PROFILES.join(',') },
      'run-test': { type: 'string' },
      verbose: { type: 'boolean', default: false },
    },
  });
  return { profiles: parseProfiles(values.profiles), runTest: values['run-test'], verbose: values.verbose };
}

const k = (paths: ClusterPaths, args: readonly string[], timeoutMs = 60_000) =>
  kubectl(paths, args, { timeoutMs });

async function gatewayClassExists(paths: ClusterPaths): Promise<boolean> {
  const { stdout } = await k(paths, [
    'get',
    'gatewayclass',
    GATEWAY_CLASS,
    '-o',
    'name',
    '--ignore-not-found',
  ]);
  return stdout.trim() !== '';
}

/** The CRDs' channel (standard or experimental), as the suite writes it into the report. */
async function crdChannel(paths: ClusterPaths): Promise<string> {
  const { stdout } = await k(paths, [
    'get',
    'crd',
    'httproutes.gateway.networking.k8s.io',
    '-o',
    'jsonpath={.metadata.annotations.gateway\\.networking\\.k8s\\.io/channel}',
  ]);
  return stdout.trim() || 'standard';
}

function implementationVersion(): string {
  const pkg = JSON.parse(readFileSync(join(REPO_DIR, 'package.json'), 'utf8')) as { version: string };
  return `v${pkg.version}`;
}

/** conformance/reports/<suite version>/sluice/<channel>-<version>-default-<mesh|gateway|…>-report.yaml */
export function reportPath(channel: string, version: string, profiles: readonly Profile[]): string {
  const kinds = [...new Set(profiles.map((p) => (isGatewayProfile(p) ? 'gateway' : 'mesh')))].join('-and-');
  return join(
    REPO_DIR,
    'conformance',
    'reports',
    SUITE_VERSION,
    'sluice',
    `${channel}-${version}-default-${kinds}-report.yaml`,
  );
}

async function prepareMeshOnlyRun(paths: ClusterPaths, progress: Progress): Promise<void> {
  await progress.step(
    `placeholder pods in ${GATEWAY_BACKEND_NAMESPACES.join(', ')} (v1.6.1 waits for them)`,
    async () => {
      const list = { apiVersion: 'v1', kind: 'List', items: placeholderObjects(PAUSE_IMAGE) };
      await kubectl(paths, ['apply', '-f', '-'], { input: JSON.stringify(list) });
      for (const namespace of GATEWAY_BACKEND_NAMESPACES) {
        await k(
          paths,
          ['-n', namespace, 'wait', '--for=condition=Ready', 'pod/mesh-only-placeholder', '--timeout=120s'],
          130_000,
        );
      }
    },
  );
}

async function removePlaceholders(paths: ClusterPaths): Promise<void> {
  await k(paths, [
    'delete',
    'namespace',
    ...GATEWAY_BACKEND_NAMESPACES,
    '--ignore-not-found',
    '--wait=false',
  ]);
}

/** A previous run's namespaces may still be terminating: the suite cannot create its objects in them. */
async function waitForLeftovers(paths: ClusterPaths, progress: Progress): Promise<void> {
  const { stdout } = await k(paths, [
    'get',
    'namespace',
    ...MESH_NAMESPACES,
    '-o',
    'name',
    '--ignore-not-found',
  ]);
  if (stdout.trim() === '') return;
  await progress.step('waiting for the previous run’s namespaces to go', async () => {
    await k(
      paths,
      ['delete', 'namespace', ...MESH_NAMESPACES, '--ignore-not-found', '--wait=true', '--timeout=180s'],
      190_000,
    );
  });
}

function suiteArgs(opts: Options, reportFile: string, version: string): string[] {
  const args = [
    '-test.run=^TestConformance$',
    '-test.v',
    '-test.timeout=90m',
    `--conformance-profiles=${opts.profiles.join(',')}`,
    `--supported-features=${supportedFeatures(opts.profiles).join(',')}`,
    `--namespace-labels=${INJECT_LABEL}`,
    `--report-output=${reportFile}`,
    '--organization=sluice',
    '--project=sluice',
    '--url=https://sluice.dev',
    `--version=${version}`,
    '--contact=https://sluice.dev (see the README)',
    '--mode=default',
  ];
  if (opts.profiles.some(isGatewayProfile)) args.push(`--gateway-class=${GATEWAY_CLASS}`);
  if (opts.runTest !== undefined) args.push(`--run-test=${opts.runTest}`);
  return args;
}

/** Runs the suite binary: its output to a log file, results and failed tests' output to us. */
async function runSuite(
  binary: string,
  args: readonly string[],
  paths: ClusterPaths,
  verbose: boolean,
): Promise<{ collector: ResultCollector; code: number | null; logFile: string }> {
  mkdirSync(paths.logDir, { recursive: true });
  const logFile = join(paths.logDir, 'conformance.log');
  const log = createWriteStream(logFile);
  log.write(`$ ${binary} ${args.join(' ')}\n`);
  const collector = new ResultCollector();
  const child = spawn(binary, args, {
    cwd: dirname(binary),
    env: { ...process.env, KUBECONFIG: paths.kubeconfig },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let current: string[] = [];
  const onLine = (line: string): void => {
    log.write(`${line}\n`);
    if (verbose) process.stdout.write(`${line}\n`);
    current.push(line);
    if (current.length > 2000) current = current.slice(-FAILED_TEST_LINES);
    const result = collector.line(line);
    if (result === undefined) return;
    if (result.outcome !== 'skip' && !verbose) {
      process.stdout.write(
        `  ${result.outcome === 'pass' ? '✓' : '✗'} ${result.name} (${result.seconds.toFixed(1)} s)\n`,
      );
    }
    if (result.outcome === 'fail' && !verbose) {
      process.stdout.write(
        current
          .slice(-FAILED_TEST_LINES)
          .map((l) => `      ${l}\n`)
          .join(''),
      );
    }
    current = [];
  };
  createInterface({ input: child.stdout }).on('line', onLine);
  createInterface({ input: child.stderr }).on('line', onLine);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  await new Promise<void>((resolve) => log.end(resolve));
  if (collector.root === 'fail' && !verbose && collector.tests.length === 0) {
    // The suite failed before its first test (setup): show why.
    process.stdout.write(
      current
        .slice(-FAILED_TEST_LINES)
        .map((l) => `      ${l}\n`)
        .join(''),
    );
  }
  return { collector, code, logFile };
}

async function main(argv: readonly string[]): Promise<number> {
  const opts = options(argv);
  const paths = clusterPaths();
  const progress = new Progress();
  const started = performance.now();
  const cluster = localCluster();

  const gatewayProfiles = opts.profiles.filter(isGatewayProfile);
  const build = (spec: (typeof CONFORMANCE_BUILDS)[keyof typeof CONFORMANCE_BUILDS]) =>
    progress.step(`build ${spec.name}`, () => goBuild(spec, { paths, progress }));
  const suiteDir = await build(CONFORMANCE_BUILDS.suite);
  const istioEcho = await build(CONFORMANCE_BUILDS.istioEcho);
  const echoBasic = gatewayProfiles.length > 0 ? await build(CONFORMANCE_BUILDS.echoBasic) : undefined;
  const moduleDir = await suiteModuleDir(CONFORMANCE_BUILDS.suite.moduleDir);
  await progress.step('echo images', async () => {
    const names = await loadEchoImages({ istioEcho, echoBasic }, { paths, progress, suiteDir: moduleDir });
    progress.detail(names.join(', '));
  });

  await installGatewayApi(cluster, progress, 'sluice-conformance');
  await installSluice(cluster, progress);
  if (gatewayProfiles.length > 0 && !(await gatewayClassExists(paths))) {
    throw new ClusterError(
      `${gatewayProfiles.join(', ')} need${gatewayProfiles.length === 1 ? 's' : ''} the GatewayClass ${GATEWAY_CLASS}, which this cluster does not have ` +
        `after kubectl apply -k manifests/: look at kubectl get gatewayclass ${GATEWAY_CLASS} -o yaml`,
    );
  }

  await waitForLeftovers(paths, progress);

  const meshOnly = gatewayProfiles.length === 0;
  if (meshOnly) await prepareMeshOnlyRun(paths, progress);
  const version = implementationVersion();
  const reportFile = reportPath(await crdChannel(paths), version, opts.profiles);
  mkdirSync(dirname(reportFile), { recursive: true });

  const suiteStarted = performance.now();
  process.stdout.write(
    `• conformance ${SUITE_VERSION} (CRDs ${GATEWAY_API_VERSION}): ${opts.profiles.join(', ')}\n`,
  );
  let outcome;
  try {
    outcome = await runSuite(
      join(suiteDir, CONFORMANCE_BUILDS.suite.binaries[0]),
      suiteArgs(opts, reportFile, version),
      paths,
      opts.verbose,
    );
  } finally {
    if (meshOnly) await removePlaceholders(paths);
  }
  const { collector, code, logFile } = outcome;
  const suiteSeconds = (performance.now() - suiteStarted) / 1000;

  const counts = process.env.SLUICE_TEST_COUNTS;
  if (counts) {
    const lines = countLines(process.env.SLUICE_TEST_SUITE ?? 'conformance', collector.tests);
    if (lines.length > 0) appendFileSync(counts, lines.map((l) => `${l}\n`).join(''));
  }
  const passed = code === 0 && collector.root === 'pass' && collector.count('fail') === 0;
  process.stdout.write(
    `\nconformance: ${summary(collector, suiteSeconds)} (the suite; ` +
      `${((performance.now() - started) / 1000).toFixed(0)} s in all)\n` +
      `  report: ${relative(REPO_DIR, reportFile)}\n  log: ${logFile}\n`,
  );
  return passed ? 0 : 1;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  if (
    error instanceof ClusterError ||
    (error as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION'
  ) {
    process.stderr.write(`conformance: ${(error as Error).message}\n${USAGE}\n`);
    process.exitCode = 1;
  } else {
    throw error;
  }
}
