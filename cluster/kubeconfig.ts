import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { CLUSTER } from './cluster-config.ts';

const b64 = (file: string): string => readFileSync(file).toString('base64');

/** A kubeconfig for one client certificate of `pkiDir`, with the certificates embedded. */
export function kubeconfigFor(pkiDir: string, certName: string, server: string): string {
  const context = `${certName}@${CLUSTER.name}`;
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: CLUSTER.name,
        cluster: { server, 'certificate-authority-data': b64(join(pkiDir, 'ca.crt')) },
      },
    ],
    users: [
      {
        name: certName,
        user: {
          'client-certificate-data': b64(join(pkiDir, `${certName}.crt`)),
          'client-key-data': b64(join(pkiDir, `${certName}.key`)),
        },
      },
    ],
    contexts: [{ name: context, context: { cluster: CLUSTER.name, user: certName } }],
    'current-context': context,
  });
}
