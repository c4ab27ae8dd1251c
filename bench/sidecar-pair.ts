// The meshed shape both netns benchmarks measure: client and server pods, a Service at `vip` in front of each
// server's app, and every sidecar started from the compiled build.
import { APP_PORT, type MeshFixture, type MeshPod } from '../test/support/mesh-fixture.ts';
import { podObject, serviceWithEndpoints } from '../test/support/mesh-manifests.ts';
import { podRef } from '../test/support/mesh-pods.ts';

export interface SidecarPair {
  client: MeshPod;
  server: MeshPod;
  /** The Service's name and ClusterIP. */
  service: string;
  vip: string;
}

export async function startSidecarPairs(mesh: MeshFixture, pairs: SidecarPair[]): Promise<void> {
  mesh.writeManifests(
    pairs.flatMap(({ client, server, service, vip }) => [
      podObject(podRef(client)),
      podObject(podRef(server)),
      ...serviceWithEndpoints(
        server.spec.namespace,
        service,
        vip,
        [[80, APP_PORT, 'http']],
        [podRef(server)],
      ),
    ]),
  );
  await mesh.startSidecars({ compiled: true });
}

/**
 * A sidecar's idle memory releases logged since `since` (ms since the epoch): "before→after MB in ms", the
 * one after start-up marked "start".
 */
export const releasesSince = (p: MeshPod, since: number): string[] =>
  p.sidecarLog
    .filter(
      (r) =>
        /^idle after (load|start), memory released$/.test(String(r.msg)) &&
        Date.parse(String(r.time)) >= since,
    )
    .map(
      (r) =>
        `${String(r.msg).includes('start') ? 'start ' : ''}${String(r.rssMb)}→${String(r.afterMb)} MB in ${String(r.ms)} ms`,
    );
