import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { X509Certificate, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { webcrypto } from 'node:crypto';
import {
  generateKeyPair,
  importPrivateKeyPem,
  privateKeyToPem,
  publicKeyToPem,
  SIGNING_ALGORITHM,
} from '../pki/keys.ts';
import { x509 } from '../pki/x509-lib.ts';
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
  readonly cert: x509.X509Certificate;
  readonly key: webcrypto.CryptoKey;
}

function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return bytes.toString('hex');
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
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: 'CN=sluice-cluster-ca',
      notBefore: new Date(now - 3600_000),
      notAfter: new Date(now + CA_DAYS * DAY_MS),
      keys,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    writeFileSync(keyFile, await privateKeyToPem(keys.privateKey), { mode: 0o600 });
    writeFileSync(certFile, cert.toString('pem') + '\n');
  }
  const certPem = readFileSync(certFile, 'utf8');
  const key = await importPrivateKeyPem(readFileSync(keyFile, 'utf8'), 'cluster CA key');
  return { certPem, cert: new x509.X509Certificate(certPem), key: key.privateKey };
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
  const usages: string[] = [];
  if (spec.server) usages.push(x509.ExtendedKeyUsage.serverAuth);
  if (spec.client) usages.push(x509.ExtendedKeyUsage.clientAuth);
  const names = [
    ...(spec.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(spec.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: subject(spec),
    issuer: ca.cert.subject,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + LEAF_DAYS * DAY_MS),
    publicKey: keys.publicKey,
    signingKey: ca.key,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
        true,
      ),
      new x509.ExtendedKeyUsageExtension(usages),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
      ...(names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names)] : []),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: await privateKeyToPem(keys.privateKey) };
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
