import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { safeReaddir } from './cleanup.ts';
import { clusterFiles } from './components.ts';
import { removeRun } from './cluster-up.ts';
import { requireRoot } from './host.ts';
import { clusterPaths } from './paths.ts';
import type { Progress } from './progress.ts';
import { readState } from './state.ts';

/** Stops the cluster and removes everything it made on the host. Keeps the logs and the build caches. */
export async function clusterDown(progress: Progress): Promise<void> {
  requireRoot();
  const paths = clusterPaths();
  const state = readState(paths.stateDir);
  await progress.step('stopping the cluster and cleaning up the host', async () => {
    const r = await removeRun(paths, clusterFiles(paths), state);
    progress.detail(
      `stopped ${r.processes} processes and ${r.podProcesses} pod processes; removed ${r.mounts} mounts, ` +
        `${r.cgroups} cgroups, ${r.iptablesRules} iptables rules${r.links.length ? `, link ${r.links.join(', ')}` : ''}`,
    );
  });
  for (const entry of safeReaddir(paths.stateDir)) {
    if (entry !== 'logs') rmSync(join(paths.stateDir, entry), { recursive: true, force: true });
  }
  progress.detail(`logs kept in ${paths.logDir}`);
}
