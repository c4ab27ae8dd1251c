import { clusterFiles } from './components.ts';
import { clusterComponents } from './control-plane.ts';
import { findDaemons, isAlive } from './daemons.ts';
import { kubectl } from './kubectl.ts';
import { clusterPaths } from './paths.ts';
import { readState } from './state.ts';

/** Prints each component's state and the node's; returns 0 when everything is up and Ready. */
export async function clusterStatus(out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const paths = clusterPaths();
  const state = readState(paths.stateDir);
  if (!state?.binaries) {
    out.write('cluster: not running (run `npm run cluster:up`)\n');
    return 1;
  }
  const daemons = findDaemons();
  let healthy = true;
  const bin = state.binaries;
  for (const component of clusterComponents(bin, clusterFiles(paths), state.nodeIp)) {
    const pids = (daemons.get(component.spec.name) ?? []).filter(isAlive);
    const ready = pids.length > 0 && (await component.ready());
    healthy &&= ready;
    const what = pids.length === 0 ? 'not running' : ready ? 'ready' : 'running, not ready';
    out.write(`${component.spec.name.padEnd(24)} ${what}${pids.length ? ` (pid ${pids.join(', ')})` : ''}\n`);
  }
  if (healthy) {
    const nodes = await kubectl(paths, ['get', 'nodes', '-o', 'wide']).catch((e: unknown) => ({
      stdout: String(e),
    }));
    const pods = await kubectl(paths, ['get', 'pods', '-A']).catch((e: unknown) => ({ stdout: String(e) }));
    out.write(`\n${nodes.stdout}\n${pods.stdout}`);
    healthy = /\sReady\s/.test(nodes.stdout);
  }
  out.write(`\nkubeconfig: ${paths.kubeconfig}\nlogs:       ${paths.logDir}\n`);
  return healthy ? 0 : 1;
}
