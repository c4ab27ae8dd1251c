import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import type { webcrypto } from 'node:crypto';
import { generateKeyPair, importPrivateKeyPem, privateKeyToPem, publicKeyToPem } from '../pki/keys.ts';
import {
  issueCertificate,
  issuerOf,
  selfSignedCaCertificate,
  type ExtendedKeyUsage,
} from '../pki/certificates.ts';
import { CLUSTER } from './cluster-config.ts';

/** A certificate the cluster needs: who it names and what it may be used for. */
export interface CertSpec {
  readonly file: string;
  readonly commonName: string;
  readonly organization?: string;
  readonly server?: boolean;
  readonly client?: boolean;
  readonly dnsNames?: readonly string[];
  readonly ips?: readonly string[];
}

const DAY_MS = 24 * 3600 * 1000;
const CA_DAYS = 3650;
const LEAF_DAYS = 365;
/** Leaves closer than this to expiry are re-issued at the next `cluster:up`. */
const RENEW_BEFORE_MS = 30 * DAY_MS;

/** Every certificate of the cluster, with its subject and SANs. Pure, so the list is easy to read and test. */
export function clusterCertSpecs(nodeIp: string): CertSpec[] {
  const node = CLUSTER.nodeName;
  const apiNames = ['kubernetes', 'kubernetes.default', 'kubernetes.default.svc'];
  return [
    {
      file: 'apiserver',
      commonName: 'kube-apiserver',
      server: true,
      dnsNames: [...apiNames, `kubernetes.default.svc.${CLUSTER.clusterDomain}`, 'localhost', node],
      ips: [CLUSTER.apiServiceIp, '127.0.0.1', nodeIp],
    },
    {
      file: 'apiserver-kubelet-client',
      commonName: 'kube-apiserver-kubelet-client',
      organization: 'system:masters',
      client: true,
    },
    { file: 'admin', commonName: 'sluice-admin', organization: 'system:masters', client: true },
    { file: 'controller-manager', commonName: 'system:kube-controller-manager', client: true },
    { file: 'scheduler', commonName: 'system:kube-scheduler', client: true },
    { file: 'kube-proxy', commonName: 'system:kube-proxy', client: true },
    { file: 'kubelet-client', commonName: `system:node:${node}`, organization: 'system:nodes', client: true },
    {
      file: 'kubelet',
      commonName: node,
      server: true,
      dnsNames: [node, 'localhost'],
      ips: [nodeIp, '127.0.0.1'],
    },
  ];
}

interface LoadedCa {
  readonly certPem: string;
  readonly key: webcrypto.CryptoKey;
}

function subject(spec: { commonName: string; organization?: string }): string {
  return spec.organization ? `CN=${spec.commonName}, O=${spec.organization}` : `CN=${spec.commonName}`;
}

async function ensureCa(dir: string): Promise<LoadedCa> {
  const certFile = join(dir, 'ca.crt');
  const keyFile = join(dir, 'ca.key');
  if (!existsSync(certFile) || !existsSync(keyFile)) {
    const keys = await generateKeyPair();
    const now = Date.now();
    const caPem = await selfSignedCaCertificate({
      name: 'CN=sluice-cluster-ca',
      keys,
      notBefore: new Date(now - 3600_000),
      notAfter: new Date(now + CA_DAYS * DAY_MS),
    });
    writeFileSync(keyFile, await privateKeyToPem(keys.privateKey), { mode: 0o600 });
    writeFileSync(certFile, caPem);
  }
  const certPem = readFileSync(certFile, 'utf8');
  const key = await importPrivateKeyPem(readFileSync(keyFile, 'utf8'), 'cluster CA key');
  return { certPem, key: key.privateKey };
}

/** True when an existing leaf still fits its spec (same SANs, signed by this CA) and is not about to expire. */
function leafIsCurrent(certFile: string, spec: CertSpec, caPem: string): boolean {
  if (!existsSync(certFile)) return false;
  const cert = new X509Certificate(readFileSync(certFile));
  if (!cert.verify(new X509Certificate(caPem).publicKey)) return false;
  if (Date.parse(cert.validTo) - Date.now() < RENEW_BEFORE_MS) return false;
  const wanted = [
    ...(spec.dnsNames ?? []).map((n) => `DNS:${n}`),
    ...(spec.ips ?? []).map((ip) => `IP Address:${ip}`),
  ];
  const actual = (cert.subjectAltName ?? '').split(', ').filter((s) => s !== '');
  return wanted.length === actual.length && wanted.every((name) => actual.includes(name));
}

async function issueLeaf(ca: LoadedCa, spec: CertSpec): Promise<{ certPem: string; keyPem: string }> {
  const keys = await generateKeyPair();
  const now = Date.now();
  const usages: ExtendedKeyUsage[] = [];
  if (spec.server) usages.push('serverAuth');
  if (spec.client) usages.push('clientAuth');
  const certPem = await issueCertificate({
    subject: subject(spec),
    issuer: issuerOf(ca.certPem, ca.key),
    publicKey: keys.publicKey,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + LEAF_DAYS * DAY_MS),
    extendedKeyUsages: usages,
    keyEncipherment: true,
    subjectAltNames: [
      ...(spec.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
      ...(spec.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
    ],
  });
  return { certPem, keyPem: await privateKeyToPem(keys.privateKey) };
}

/**
 * Creates what is missing or stale under `dir`: the cluster CA, every leaf of `clusterCertSpecs`, and the
 * service-account signing key pair. Existing valid files are kept, so a second `up` changes nothing.
 */
export async function ensureClusterPki(dir: string, nodeIp: string): Promise<string[]> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = await ensureCa(dir);
  const issued: string[] = [];
  for (const spec of clusterCertSpecs(nodeIp)) {
    const certFile = join(dir, `${spec.file}.crt`);
    if (leafIsCurrent(certFile, spec, ca.certPem)) continue;
    const leaf = await issueLeaf(ca, spec);
    writeFileSync(join(dir, `${spec.file}.key`), leaf.keyPem, { mode: 0o600 });
    writeFileSync(certFile, leaf.certPem);
    issued.push(spec.file);
  }
  if (!existsSync(join(dir, 'sa.key'))) {
    const keys = await generateKeyPair();
    writeFileSync(join(dir, 'sa.key'), await privateKeyToPem(keys.privateKey), { mode: 0o600 });
    writeFileSync(join(dir, 'sa.pub'), await publicKeyToPem(keys.publicKey));
    issued.push('sa');
  }
  return issued;
}
