import { clusterDown } from './cluster-down.ts';
import { clusterStatus } from './cluster-status.ts';
import { clusterUp, rebuildImages } from './cluster-up.ts';
import { startComponent, stopComponent, STOPPABLE } from './daemon-control.ts';
import { ClusterError } from './errors.ts';
import { clusterPaths } from './paths.ts';
import { Progress } from './progress.ts';

const USAGE = `usage: node cluster/main.ts up|down|status|images|stop NAME|start NAME  (NAME: ${STOPPABLE.join(', ')})`;

async function main(command: string | undefined, name: string | undefined): Promise<number> {
  const progress = new Progress();
  const started = performance.now();
  switch (command) {
    case 'up':
      await clusterUp(progress);
      process.stderr.write(
        `\ncluster ready in ${((performance.now() - started) / 1000).toFixed(0)} s\n` +
          `  export KUBECONFIG=${clusterPaths().kubeconfig}\n  kubectl get nodes\n`,
      );
      return 0;
    case 'down':
      await clusterDown(progress);
      return 0;
    case 'status':
      return clusterStatus();
    case 'images':
      await rebuildImages(progress);
      return 0;
    case 'stop':
    case 'start':
      if (name === undefined) break;
      await progress.step(`${command} ${name}`, () =>
        command === 'stop' ? stopComponent(name) : startComponent(name),
      );
      return 0;
  }
  process.stderr.write(`${USAGE}\n`);
  return 2;
}

// `cluster:status | head` closes the pipe early: that is not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error;
});

try {
  process.exitCode = await main(process.argv[2], process.argv[3]);
} catch (error) {
  if (!(error instanceof ClusterError)) throw error;
  process.stderr.write(`cluster: ${error.message}\n`);
  process.exitCode = 1;
}
