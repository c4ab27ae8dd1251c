// A proxy's admin endpoints (/config_dump, /metrics) answer on the pod's loopback only: the demo reads them
// from inside the proxy's container, with the node binary the image has.
import type { DemoCluster } from './demo-cluster.ts';

const ADMIN_PORT = 15021;

export async function proxyAdminGet(
  k: DemoCluster,
  namespace: string,
  pod: string,
  container: string,
  path: string,
): Promise<string> {
  const script = `fetch('http://127.0.0.1:${ADMIN_PORT}${path}').then((r) => r.text()).then((t) => process.stdout.write(t))`;
  const { stdout } = await k.kubectl(
    ['-n', namespace, 'exec', pod, '-c', container, '--', 'node', '-e', script],
    {
      timeoutMs: 20_000,
    },
  );
  return stdout;
}
