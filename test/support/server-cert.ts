// A TLS server certificate for a host name, issued by a test CA (the mesh CA code, with a DNS SAN), for
// gateway listeners in tests.
import { X509Certificate } from 'node:crypto';
import { issueWorkloadCert, type CertificateAuthority } from '../../pki/ca.ts';
import { generateKeyPair, privateKeyToPem } from '../../pki/keys.ts';
import type { K8sObject } from '../../mesh-model/k8s-objects.ts';

export interface ServerCert {
  cert: string;
  key: string;
  serial: string;
}

export async function serverCert(ca: CertificateAuthority, host: string): Promise<ServerCert> {
  const keys = await generateKeyPair();
  const cert = await issueWorkloadCert({
    ca,
    spiffeId: `spiffe://${ca.trustDomain}/ns/test/sa/certs`,
    publicKey: keys.publicKey,
    dnsNames: [host],
  });
  return {
    cert,
    key: await privateKeyToPem(keys.privateKey),
    serial: new X509Certificate(cert).serialNumber,
  };
}

/** A kubernetes.io/tls Secret holding `pem`. */
export function tlsSecret(namespace: string, name: string, pem: ServerCert): K8sObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace },
    type: 'kubernetes.io/tls',
    data: {
      'tls.crt': Buffer.from(pem.cert).toString('base64'),
      'tls.key': Buffer.from(pem.key).toString('base64'),
    },
  } as K8sObject;
}
