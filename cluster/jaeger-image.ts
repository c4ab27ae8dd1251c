// The Jaeger image of the local cluster: the binary built from Go modules (jaeger-build.ts, cached; a cold
// build takes 25–35 min on two cores) put into an image FROM scratch and imported into containerd, as the
// conformance suite's echo images are. Nothing is pulled.
import { join } from 'node:path';
import { clusterFiles } from './components.ts';
import { ClusterError } from './errors.ts';
import { goBuild } from './go-build.ts';
import { buildFileImages, importImages } from './images.ts';
import { JAEGER_BUILD } from './jaeger-build.ts';
import type { ClusterPaths } from './paths.ts';
import type { Progress } from './progress.ts';
import { readState } from './state.ts';

/** As examples/observability/jaeger.yaml names it. */
export const JAEGER_IMAGE = 'sluice-jaeger:dev';

/** Builds (or reuses) the binary and the image, and imports it into the running local cluster. */
export async function loadJaegerImage(options: { paths: ClusterPaths; progress: Progress }): Promise<void> {
  const { paths, progress } = options;
  const state = readState(paths.stateDir);
  if (!state?.binaries) throw new ClusterError('the local cluster is not running: run `npm run cluster:up`');
  const binDir = await goBuild(JAEGER_BUILD, { paths, progress });
  const images = await buildFileImages(
    [
      {
        name: JAEGER_IMAGE,
        dockerfile: 'images/jaeger/Dockerfile',
        files: [{ source: join(binDir, 'jaeger'), target: 'jaeger', mode: 0o755 }],
      },
    ],
    { paths, progress, ociRuntime: state.binaries.runc },
  );
  await importImages(images, {
    ctr: join(state.binaries.containerd, 'ctr'),
    address: clusterFiles(paths).containerdSocket,
    progress,
  });
}
