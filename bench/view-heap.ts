/**
 * The V8 heap a sidecar's configuration keeps live, at a mesh's scale (ADR 0016: is a heap limit safe for a
 * large mesh?). The objects in one namespace's scope (as the controller streams them: config-fanout's mesh of
 * BENCH_SERVICES Services, each with an EndpointSlice, 2 Pods and a route) kept in a map, as
 * ControllerConfigSource does, and the view built from them; then a second view built while the first is
 * still held, as a reload does. Heap used after a full GC, against the empty process.
 *
 * Run: npm run bench:view-heap   (env: BENCH_SERVICES=1000 BENCH_NAMESPACES=100; one
 * scale per process, so that nothing of another is left in the heap)
 */
import { inScope, stripObject } from '../protocol/config-scope.ts';
import type { K8sObject } from '../mesh-model/k8s-objects.ts';
import { buildProxyView } from '../mesh-model/proxy-view.ts';
import { benchMesh, NAMESPACES, SERVICES, TD } from './config-bench-routes.ts';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');
const heapMb = (): number => {
  gc();
  return process.memoryUsage().heapUsed / 2 ** 20;
};

const empty = heapMb();
// The snapshot as parsed from the stream: fresh objects, not shared with the generator's.
const scoped = JSON.parse(
  JSON.stringify(
    benchMesh()
      .map((o) => stripObject(o)!)
      .filter((o) => inScope(o, 'ns-1')),
  ),
) as K8sObject[];
const objects = new Map(scoped.map((o, i) => [String(i), o]));
scoped.length = 0;
const withObjects = heapMb();
const view = buildProxyView([...objects.values()], 'ns-1', TD);
const withView = heapMb();
const next = buildProxyView([...objects.values()], 'ns-1', TD);
const reloading = heapMb();
console.log(
  `${SERVICES} Services in ${NAMESPACES} namespaces (${objects.size} objects in scope): live heap ` +
    `objects ${(withObjects - empty).toFixed(1)} MB, + view ${(withView - withObjects).toFixed(1)} MB ` +
    `(total ${(withView - empty).toFixed(1)}), during a reload (two views) ${(reloading - empty).toFixed(1)} MB; ` +
    `views ${view.byDestination.size}/${next.byDestination.size} destinations`,
);
