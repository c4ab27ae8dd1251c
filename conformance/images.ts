// The test servers the suite's manifests name (echo-advanced for the mesh tests, echo-basic for the gateway
// tests), built here FROM scratch out of Go binaries, tagged exactly as the manifests name them and
// imported into the local cluster's containerd: nothing is pulled.
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { clusterFiles } from '../cluster/components.ts';
import { ClusterError } from '../cluster/errors.ts';
import { run } from '../cluster/exec.ts';
import { buildFileImages, importImages, type ContextFile, type FileImageSpec } from '../cluster/images.ts';
import type { ClusterPaths } from '../cluster/paths.ts';
import type { Progress } from '../cluster/progress.ts';
import { readState } from '../cluster/state.ts';
import { issueCertificate, issuerOf, selfSignedCaCertificate } from '../pki/certificates.ts';
import { generateKeyPair, privateKeyToPem } from '../pki/keys.ts';
import { SUITE_MODULE } from './builds.ts';

/** Every container image a manifest file names (several YAML documents). */
export function imagesIn(manifests: string): string[] {
  const found = new Set<string>();
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (const item of node) visit(item);
    } else if (node !== null && typeof node === 'object') {
      for (const [key, value] of Object.entries(node)) {
        if (key === 'image' && typeof value === 'string') found.add(value);
        else visit(value);
      }
    }
  };
  for (const doc of parseAllDocuments(manifests)) visit(doc.toJS());
  return [...found].sort();
}

/**
 * The images of `repository` (e.g. 'echo-basic', matched as the last path part) among `images`: every tag
 * the manifests use (v1.6.1's base manifests name echo-basic with two tags).
 */
export function imagesNamed(images: readonly string[], repository: string): string[] {
  const matches = images.filter(
    (image) =>
      image
        .replace(/[:@].*$/, '')
        .split('/')
        .pop() === repository,
  );
  if (matches.length === 0) {
    throw new ClusterError(`the suite's manifests name no ${repository} image: ${images.join(', ')}`);
  }
  return matches;
}

/** Where the Go build left the suite's module (its manifests are read from there). */
export async function suiteModuleDir(wrapperModuleDir: string): Promise<string> {
  const { stdout } = await run('go', ['list', '-m', '-f', '{{.Dir}}', SUITE_MODULE], {
    cwd: wrapperModuleDir,
    env: { ...process.env, GOTOOLCHAIN: 'local', GOWORK: 'off' },
  });
  const dir = stdout.trim();
  if (dir === '' || !existsSync(dir)) throw new ClusterError(`${SUITE_MODULE} is not in the module cache`);
  return dir;
}

/** A certificate for the echo server's TLS port, made once and kept in the cache (no test checks it). */
async function echoCertificate(dir: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, 'cert.crt');
  const key = join(dir, 'cert.key');
  if (existsSync(cert) && existsSync(key)) return { cert, key };
  await mkdir(dir, { recursive: true });
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(notBefore.getTime() + 10 * 365 * 24 * 3600_000);
  const caKeys = await generateKeyPair();
  const caPem = await selfSignedCaCertificate({
    name: 'CN=sluice conformance echo CA',
    keys: caKeys,
    notBefore,
    notAfter,
  });
  const keys = await generateKeyPair();
  const leaf = await issueCertificate({
    subject: 'CN=echo',
    issuer: issuerOf(caPem, caKeys.privateKey),
    publicKey: keys.publicKey,
    notBefore,
    notAfter,
    extendedKeyUsages: ['serverAuth'],
    subjectAltNames: [{ type: 'dns', value: 'echo' }],
  });
  await writeFile(key, await privateKeyToPem(keys.privateKey), { mode: 0o644 });
  await writeFile(cert, leaf);
  return { cert, key };
}

export interface EchoBinaries {
  /** Directory with Istio's `server` and `client`. */
  readonly istioEcho: string;
  /** Directory with `echo-basic`, when the gateway profiles run. */
  readonly echoBasic?: string;
}

/** Builds the images the suite's manifests name and imports them into the running local cluster. */
export async function loadEchoImages(
  binaries: EchoBinaries,
  options: { paths: ClusterPaths; progress: Progress; suiteDir: string },
): Promise<string[]> {
  const { paths, progress, suiteDir } = options;
  const state = readState(paths.stateDir);
  if (!state?.binaries) throw new ClusterError('the local cluster is not running: run `npm run cluster:up`');
  const mesh = imagesIn(await readFile(join(suiteDir, 'mesh', 'manifests.yaml'), 'utf8'));
  const certs = await echoCertificate(join(paths.cacheDir, 'conformance', 'echo-certificate'));
  const bin = (dir: string, name: string): ContextFile => ({
    source: join(dir, name),
    target: name,
    mode: 0o755,
  });
  const specs: FileImageSpec[] = imagesNamed(mesh, 'echo-advanced').map((name) => ({
    name,
    dockerfile: 'images/echo-advanced/Dockerfile',
    files: [
      bin(binaries.istioEcho, 'server'),
      bin(binaries.istioEcho, 'client'),
      { source: certs.cert, target: 'cert.crt', mode: 0o644 },
      { source: certs.key, target: 'cert.key', mode: 0o644 },
    ],
  }));
  if (binaries.echoBasic !== undefined) {
    const base = imagesIn(await readFile(join(suiteDir, 'base', 'manifests.yaml'), 'utf8'));
    const echoBasic = binaries.echoBasic;
    for (const name of imagesNamed(base, 'echo-basic')) {
      specs.push({ name, dockerfile: 'images/echo-basic/Dockerfile', files: [bin(echoBasic, 'echo-basic')] });
    }
    // The gateway tests' DNS backend: the cluster's own CoreDNS build under the name they use.
    for (const name of imagesNamed(base, 'coredns')) {
      specs.push({
        name,
        dockerfile: 'images/coredns/Dockerfile',
        files: [bin(state.binaries.coredns, 'coredns')],
      });
    }
  }
  const images = await buildFileImages(specs, { paths, progress, ociRuntime: state.binaries.runc });
  await importImages(images, {
    ctr: join(state.binaries.containerd, 'ctr'),
    address: clusterFiles(paths).containerdSocket,
    progress,
  });
  return images.map((image) => image.name);
}
