// v1.6.1 waits (up to 300 s, then fails its setup) for ready pods in the gateway tests' backend namespaces
// even when only mesh profiles run, and nothing creates them then (fixed upstream in v1.6.3, #4934). The
// suite is run unmodified, so a mesh-only run gets those two namespaces with one idle pod each beforehand,
// and they are removed afterwards.

export const GATEWAY_BACKEND_NAMESPACES = [
  'gateway-conformance-app-backend',
  'gateway-conformance-web-backend',
] as const;

const LABEL = { 'app.kubernetes.io/managed-by': 'sluice-conformance' };

/** The namespaces and their pods (the cluster's pause image: always there, and ready as soon as it runs). */
export function placeholderObjects(pauseImage: string): object[] {
  return GATEWAY_BACKEND_NAMESPACES.flatMap((namespace) => [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace, labels: LABEL } },
    {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'mesh-only-placeholder', namespace, labels: LABEL },
      spec: {
        terminationGracePeriodSeconds: 0,
        automountServiceAccountToken: false,
        containers: [{ name: 'pause', image: pauseImage, imagePullPolicy: 'Never' }],
      },
    },
  ]);
}
