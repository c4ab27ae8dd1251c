import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUILDS } from './builds.ts';
import { cleanupHost } from './cleanup.ts';
import { CLUSTER } from './cluster-config.ts';
import { ensureClusterPki } from './cluster-pki.ts';
import * as components from './components.ts';
import type { ClusterBinaries, ClusterFiles } from './components.ts';
import { clusterComponents } from './control-plane.ts';
import { findDaemons, isAlive, logFile, startDaemon, waitUntil } from './daemons.ts';
import { goBuild } from './go-build.ts';
import { applySysctls, detectNodeIp, hasSysResourceCapability, requireRoot, restoreSysctls } from './host.ts';
import { ensureHostPackages } from './host-packages.ts';
import { buildImages, importImages } from './images.ts';
import { kubeconfigFor } from './kubeconfig.ts';
import { kubectl, kubectlPath } from './kubectl.ts';
import { ClusterError } from './errors.ts';
import { clusterPaths, REPO_DIR, type ClusterPaths } from './paths.ts';
import type { Progress } from './progress.ts';
import { readState, writeState, type ClusterState } from './state.ts';

const KUBECONFIG_USERS = ['controller-manager', 'scheduler', 'kube-proxy', 'kubelet-client'];

async function buildBinaries(paths: ClusterPaths, progress: Progress): Promise<ClusterBinaries> {
  const dirs: Record<string, string> = {};
  for (const build of Object.values(BUILDS)) {
    dirs[build.name] = await progress.step(`binaries: ${build.name}`, () =>
      goBuild(build, { paths, progress }),
    );
  }
  return {
    kubernetes: dirs.kubernetes!,
    etcd: dirs.etcd!,
    containerd: dirs.containerd!,
    coredns: dirs.coredns!,
    cniDir: '/usr/lib/cni',
    runc: join(dirs.runc!, 'runc'),
  };
}

function writeConfiguration(paths: ClusterPaths, files: ClusterFiles, bin: ClusterBinaries): void {
  const server = `https://127.0.0.1:${CLUSTER.apiServerPort}`;
  mkdirSync(files.kubeconfigDir, { recursive: true, mode: 0o700 });
  for (const user of KUBECONFIG_USERS) {
    writeFileSync(files.kubeconfigOf(user), kubeconfigFor(paths.pkiDir, user, server), { mode: 0o600 });
  }
  writeFileSync(paths.kubeconfig, kubeconfigFor(paths.pkiDir, 'admin', server), { mode: 0o600 });
  mkdirSync(files.configDir, { recursive: true });
  writeFileSync(
    files.containerdConfig,
    components.containerdConfigToml(bin, files, { restrictOomScoreAdj: !hasSysResourceCapability() }),
  );
  writeFileSync(files.kubeletConfig, components.kubeletConfigYaml(files));
  writeFileSync(files.kubeProxyConfig, components.kubeProxyConfigYaml(files));
  mkdirSync(files.cniConfDir, { recursive: true });
  writeFileSync(join(files.cniConfDir, '10-sluice.conflist'), components.cniConfList(files));
  mkdirSync(join(paths.stateDir, 'bin'), { recursive: true });
  rmSync(kubectlPath(paths), { force: true });
  symlinkSync(join(bin.kubernetes, 'kubectl'), kubectlPath(paths));
}

/** CoreDNS answers cluster names only, unless SLUICE_CLUSTER_DNS_UPSTREAM names a resolver to forward to. */
function corednsManifest(): string {
  const text = readFileSync(join(REPO_DIR, 'cluster', 'manifests', 'coredns.yaml'), 'utf8');
  const upstream = process.env.SLUICE_CLUSTER_DNS_UPSTREAM;
  return upstream ? text.replace('# upstream', `forward . ${upstream}`) : text;
}

async function ensureImages(
  paths: ClusterPaths,
  files: ClusterFiles,
  bin: ClusterBinaries,
  progress: Progress,
) {
  const images = await buildImages({
    paths,
    progress,
    corednsBinary: join(bin.coredns, 'coredns'),
    ociRuntime: bin.runc,
  });
  await importImages(images, { ctr: join(bin.containerd, 'ctr'), address: files.containerdSocket, progress });
}

/** Everything of a cluster is running and answering its health check. */
async function runningHealthy(paths: ClusterPaths, files: ClusterFiles, state: ClusterState | undefined) {
  if (!state?.binaries) return false;
  const bin = state.binaries;
  const daemons = findDaemons();
  for (const component of clusterComponents(bin, files, state.nodeIp)) {
    if (!(daemons.get(component.spec.name) ?? []).some(isAlive)) return false;
    if (!(await component.ready())) return false;
  }
  return true;
}

/** Removes a previous run's processes, mounts, rules and data (keeps logs, certificates and caches). */
export async function removeRun(paths: ClusterPaths, files: ClusterFiles, state: ClusterState | undefined) {
  const kubeProxy = state?.binaries ? join(state.binaries.kubernetes, 'kube-proxy') : undefined;
  const report = await cleanupHost({
    ...paths,
    kubeProxy,
    kubeProxyConfig: files.kubeProxyConfig,
    podLogsDir: files.podLogsDir,
  });
  restoreSysctls(paths.dataDir);
  rmSync(paths.dataDir, { recursive: true, force: true });
  rmSync(paths.runDir, { recursive: true, force: true });
  rmSync(join(paths.stateDir, 'state.json'), { force: true });
  return report;
}

export async function clusterUp(progress: Progress): Promise<void> {
  requireRoot();
  const paths = clusterPaths();
  const files = components.clusterFiles(paths);
  await progress.step('host packages', async () => {
    const installed = await ensureHostPackages('cluster');
    if (installed.length > 0) progress.detail(`installed ${installed.join(' ')}`);
  });
  const previous = readState(paths.stateDir);
  if (previous?.binaries && (await runningHealthy(paths, files, previous))) {
    progress.detail('the cluster is already running: reusing it');
    const bin = previous.binaries;
    await progress.step('images', () => ensureImages(paths, files, bin, progress));
    return;
  }
  if (previous || findDaemons().size > 0 || existsSync(paths.dataDir)) {
    await progress.step('removing what is left of the previous run', async () => {
      const report = await removeRun(paths, files, previous);
      progress.detail(
        `${report.processes} processes, ${report.podProcesses} pod processes, ${report.mounts} mounts, ${report.iptablesRules} iptables rules`,
      );
    });
  }
  const bin = await buildBinaries(paths, progress);
  const nodeIp = await detectNodeIp();
  progress.detail(`node ${CLUSTER.nodeName} at ${nodeIp}`);
  await progress.step('certificates and configuration', async () => {
    const issued = await ensureClusterPki(paths.pkiDir, nodeIp);
    if (issued.length > 0) progress.detail(`issued ${issued.join(', ')}`);
    writeConfiguration(paths, files, bin);
  });
  await applySysctls(paths.dataDir);
  writeState(paths.stateDir, {
    nodeIp,
    binaries: bin,
    startedAt: new Date().toISOString(),
  });
  for (const component of clusterComponents(bin, files, nodeIp)) {
    const { name } = component.spec;
    await progress.step(`start ${name}`, async () => {
      const pid = startDaemon(component.spec, paths.logDir);
      await waitUntil(name, component.ready, {
        timeoutMs: component.timeoutMs,
        pid,
        log: logFile(paths.logDir, name),
      });
    });
    if (name === 'containerd') await progress.step('images', () => ensureImages(paths, files, bin, progress));
  }
  await progress.step(`node ${CLUSTER.nodeName} Ready`, async () => {
    const node = `node/${CLUSTER.nodeName}`;
    await waitUntil('node registration', async () => (await kubectl(paths, ['get', node])).code === 0, {
      timeoutMs: 60_000,
      log: logFile(paths.logDir, 'kubelet'),
    });
    await kubectl(paths, ['wait', '--for=condition=Ready', node, '--timeout=120s'], { timeoutMs: 130_000 });
  });
  await progress.step('CoreDNS', async () => {
    await kubectl(paths, ['apply', '-f', '-'], { input: corednsManifest() });
    await kubectl(paths, ['-n', 'kube-system', 'rollout', 'status', 'deployment/coredns', '--timeout=120s'], {
      timeoutMs: 130_000,
    });
  });
}

/** `cluster:images`: rebuilds the images whose inputs changed and loads them into the running cluster. */
export async function rebuildImages(progress: Progress): Promise<void> {
  requireRoot();
  const paths = clusterPaths();
  const state = readState(paths.stateDir);
  if (!state?.binaries) throw new ClusterError('the cluster is not running: run `npm run cluster:up`');
  await ensureImages(paths, components.clusterFiles(paths), state.binaries, progress);
}
