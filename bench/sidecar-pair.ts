// The meshed shape both netns benchmarks measure: a client and a server pod, Service `server` at `vip` in
// front of the server's app, and both sidecars started from the compiled build.
import { APP_PORT, type MeshFixture, type MeshPod } from '../test/support/mesh-fixture.ts';
import { podObject, serviceWithEndpoints } from '../test/support/mesh-manifests.ts';
import { podRef } from '../test/support/mesh-pods.ts';

export async function startSidecarPair(
  mesh: MeshFixture,
  client: MeshPod,
  server: MeshPod,
  vip: string,
): Promise<void> {
  mesh.writeManifests([
    podObject(podRef(client)),
    podObject(podRef(server)),
    ...serviceWithEndpoints(server.spec.namespace, 'server', vip, [[80, APP_PORT, 'http']], [podRef(server)]),
  ]);
  await mesh.startSidecars({ compiled: true });
}
