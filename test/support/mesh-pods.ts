// The pods of a MeshFixture as the manifests describe them (mesh-manifests.ts PodRef).
import type { MeshFixture, MeshPod, MeshPodSpec } from './mesh-fixture.ts';
import type { PodRef } from './mesh-manifests.ts';

/** A fixture pod as podObject / serviceWithEndpoints take it. */
export function podRef(pod: MeshPod): PodRef {
  const { name, namespace, serviceAccount, meshed } = pod.spec;
  return { name, namespace, ip: pod.ip, serviceAccount, meshed };
}

/** Adds the pods one after the other in `namespace`; their references, in the same order. */
export async function addPods(
  mesh: MeshFixture,
  namespace: string,
  specs: readonly Omit<MeshPodSpec, 'namespace'>[],
): Promise<PodRef[]> {
  const refs: PodRef[] = [];
  for (const spec of specs) refs.push(podRef(await mesh.addPod({ ...spec, namespace })));
  return refs;
}
