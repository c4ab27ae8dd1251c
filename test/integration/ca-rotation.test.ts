// CA root rotation without restarts, on loopback with the real parts: the controller's config server and
// certificate endpoint issuing from a ReloadableCa, the controller's own certificate renewed on a change,
// and a sidecar's ControllerIdentity that asks for its certificate over TLS and watches its bundle file.
// Only the API server is a stand-in (the CA Secret's store and TokenReview).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCa, type CaPem } from '../../pki/ca.ts';
import { parseIdentity, type Identity } from '../../pki/identity.ts';
import { jsonLogger } from '../../lib/json-log.ts';
import { controllerSpiffeId } from '../../protocol/config-protocol.ts';
import { ConfigHub } from '../../controller/config-hub.ts';
import type { ConfigServer } from '../../controller/config-server.ts';
import { createConfigServer } from '../../controller/config-distribution.ts';
import {
  buildCaSecret,
  loadOrCreateCaSecret,
  type CaSecret,
  type CaSecretStore,
} from '../../controller/ca-root-secret.ts';
import { ReloadableCa } from '../../controller/ca-reload.ts';
import { ControllerIdentity as ControllerOwnIdentity } from '../../controller/mesh-identity.ts';
import {
  DEFAULT_AUDIENCE,
  POD_NAME_KEY,
  POD_UID_KEY,
  type TokenReviewer,
  type TokenReviewResult,
} from '../../controller/workload-ca.ts';
import { ControllerIdentity } from '../../sidecar/controller-identity.ts';
import { waitFor } from '../support/wait-for.ts';

const TD = 'cluster.local';
const NS = 'sluice-system';
const quiet = jsonLogger('test', () => undefined);

/** A token shaped like a projected service-account token; the stand-in API server accepts it. */
function token(): string {
  const part = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  const claims = {
    aud: [DEFAULT_AUDIENCE],
    exp: Math.floor(Date.now() / 1000) + 3600,
    sub: 'system:serviceaccount:shop:web',
  };
  return `${part({ alg: 'RS256' })}.${part(claims)}.${randomBytes(32).toString('base64url')}`;
}

class StandInApi implements TokenReviewer, CaSecretStore {
  secret: CaSecret | undefined;
  review(): Promise<TokenReviewResult> {
    return Promise.resolve({
      authenticated: true,
      username: 'system:serviceaccount:shop:web',
      uid: 'u',
      groups: [],
      audiences: [DEFAULT_AUDIENCE],
      extra: { [POD_NAME_KEY]: ['web-1'], [POD_UID_KEY]: ['pod-uid-1'] },
      error: '',
    });
  }
  get(): Promise<unknown> {
    return Promise.resolve(this.secret && structuredClone(this.secret));
  }
  create(): Promise<boolean> {
    return Promise.resolve(false);
  }
  /** `kubectl patch secret sluice-ca`: the signer and the bundle. */
  edit(signer: CaPem, bundle: CaPem[]): void {
    const b64 = (text: string) => Buffer.from(text).toString('base64');
    this.secret = {
      ...this.secret!,
      data: {
        'tls.crt': b64(signer.certPem),
        'tls.key': b64(signer.keyPem),
        'ca.crt': b64(bundle.map((c) => c.certPem).join('')),
      },
    };
  }
}

/** Whether the identity's certificate chains to this root alone. */
function signedBy(identity: Identity, root: CaPem): boolean {
  try {
    parseIdentity({ certPem: identity.certPem, keyPem: identity.keyPem, bundlePem: root.certPem });
    return true;
  } catch {
    return false;
  }
}

describe('CA root rotation without restarts (loopback: controller, certificate endpoint, sidecar identity)', function () {
  this.timeout(60_000);
  let dir: string;
  let server: ConfigServer | undefined;
  const stops: (() => void)[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-ca-rotation-'));
  });
  after(async () => {
    for (const stop of stops) stop();
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('new root in the bundle, then signing, then the old root gone: the sidecar follows each step', async () => {
    const api = new StandInApi();
    const oldCa = await createCa({ trustDomain: TD });
    const newCa = await createCa({ trustDomain: TD });
    api.secret = buildCaSecret({ namespace: NS, ...oldCa });
    const ca = new ReloadableCa(await loadOrCreateCaSecret(api, { namespace: NS, trustDomain: TD }), api, {
      namespace: NS,
      trustDomain: TD,
    });
    const own = new ControllerOwnIdentity(ca, NS, quiet);
    stops.push(() => own.stop());
    const { identity, credentials } = await own.start();
    const hub = new ConfigHub();
    hub.markSynced();
    server = createConfigServer({
      log: quiet,
      hub,
      issuer: ca,
      identity,
      credentials,
      trustDomain: TD,
      port: 0,
      reviewer: api,
      certificates: new Map(),
    });
    await server.listen();

    // The pod's files: its token and the mounted ConfigMap sluice-ca-root (the kubelet updates it).
    const tokenFile = join(dir, 'token');
    const bundleFile = join(dir, 'ca.crt');
    await writeFile(tokenFile, token());
    const publish = (): Promise<void> => writeFile(bundleFile, ca.trustBundlePem);
    await publish();
    const sidecar = new ControllerIdentity({
      address: `127.0.0.1:${server.port}`,
      tokenFile,
      caBundleFile: bundleFile,
      controllerSpiffeId: controllerSpiffeId(TD),
      log: quiet,
      bundleCheckMs: 50,
    });
    stops.push(() => sidecar.stop());
    let current = await sidecar.start((next) => (current = next));
    assert.ok(signedBy(current, oldCa));

    /** One rotation step: the Secret edited, the controller's reload, the ConfigMap updated in the pod. */
    const step = async (signer: CaPem, bundle: CaPem[]): Promise<void> => {
      api.edit(signer, bundle);
      assert.equal((await ca.reload()).outcome, 'reloaded');
      own.renewNow();
      await publish();
    };

    // 1. The new root joins the bundle: the sidecar renews and trusts both, its certificate still old.
    const before1 = current;
    await step(oldCa, [oldCa, newCa]);
    await waitFor('the sidecar to take the two-root bundle', () => current !== before1);
    assert.ok(
      current.bundlePem.includes(newCa.certPem.trim()) && current.bundlePem.includes(oldCa.certPem.trim()),
    );
    assert.ok(signedBy(current, oldCa));

    // 2. The new CA signs: a workload asking now gets a certificate from it, trusted through the bundle.
    await step(newCa, [oldCa, newCa]);
    const fresh = new ControllerIdentity({
      address: `127.0.0.1:${server.port}`,
      tokenFile,
      caBundleFile: bundleFile,
      controllerSpiffeId: controllerSpiffeId(TD),
      log: quiet,
    });
    stops.push(() => fresh.stop());
    assert.ok(signedBy(await fresh.start(), newCa));

    // 3. The old root leaves: the sidecar renews (from the new CA) and trusts the new root alone.
    const before3 = current;
    await step(newCa, [newCa]);
    await waitFor('the sidecar to drop the old root', () => current !== before3);
    assert.ok(signedBy(current, newCa));
    assert.ok(!current.bundlePem.includes(oldCa.certPem.trim()));
  });
});
