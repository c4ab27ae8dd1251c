// CA root rotation without restarts, on loopback with the real parts: the controller's config server and
// certificate endpoint issuing from a ReloadableCa, the controller's own certificate renewed on a change,
// and a sidecar's ControllerIdentity that asks for its certificate over TLS and watches its bundle file.
// Only the API server is a stand-in (the CA Secret's store and TokenReview).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
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
import { ControllerConfigSource } from '../../sidecar/controller-config-source.ts';
import { MeshTlsCredentials } from '../../pki/tls-options.ts';
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
  /** The TokenReview's verdict (false: the pod or its service account is gone). */
  authenticated = true;
  /** The API server is down: reviews fail (the CA answers 503). */
  unavailable = false;
  review(): Promise<TokenReviewResult> {
    if (this.unavailable) return Promise.reject(new Error('connect ECONNREFUSED (API server down)'));
    return Promise.resolve({
      authenticated: this.authenticated,
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

/** Loopback controller parts issuing from a ReloadableCa over the Secret `api` holds. */
async function startController(api: StandInApi, now?: () => number) {
  const ca = new ReloadableCa(await loadOrCreateCaSecret(api, { namespace: NS, trustDomain: TD }), api, {
    namespace: NS,
    trustDomain: TD,
  });
  const own = new ControllerOwnIdentity(ca, NS, quiet);
  const { identity, credentials } = await own.start();
  const hub = new ConfigHub();
  hub.markSynced();
  const server = createConfigServer({
    log: quiet,
    hub,
    issuer: ca,
    identity,
    credentials,
    trustDomain: TD,
    port: 0,
    reviewer: api,
    certificates: new Map(),
    ...(now ? { now } : {}),
  });
  await server.listen();
  return { ca, own, server };
}

/**
 * The identity and TLS parts of one sidecar as cli/proxy-command.ts wires them: its certificate from the
 * controller, its config stream's trust frames fed to the identity, rotations into its TLS credentials.
 */
async function startSidecar(port: number, tokenFile: string, bundleFile: string) {
  const address = `127.0.0.1:${port}`;
  const identity = new ControllerIdentity({
    address,
    tokenFile,
    caBundleFile: bundleFile,
    controllerSpiffeId: controllerSpiffeId(TD),
    log: quiet,
    bundleCheckMs: 3_600_000, // the mounted file plays no part here: the kubelet has not synced it
    backoffMinMs: 20,
    backoffMaxMs: 200,
  });
  const box: { credentials?: MeshTlsCredentials } = {};
  const credentials = new MeshTlsCredentials(await identity.start((next) => box.credentials?.update(next)));
  box.credentials = credentials;
  const source = new ControllerConfigSource<number>({
    address,
    identity: () => identity.current,
    onTrust: (frame) => identity.trust(frame),
    build: (objects) => objects.length,
    backoffMinMs: 20,
    backoffMaxMs: 200,
  });
  let streamed = false;
  source.start(
    () => (streamed = true),
    () => undefined,
  );
  await waitFor('the sidecar config stream', () => streamed);
  return {
    identity,
    credentials,
    stop: () => {
      source.stop();
      identity.stop();
    },
  };
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
    const controller = await startController(api);
    const { ca, own } = controller;
    stops.push(() => own.stop());
    server = controller.server;

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

  it('through the config stream: two sidecars keep talking through introduce, sign and finish', async () => {
    const api = new StandInApi();
    const oldCa = await createCa({ trustDomain: TD });
    const newCa = await createCa({ trustDomain: TD });
    api.secret = buildCaSecret({ namespace: NS, ...oldCa });
    const controller = await startController(api);
    stops.push(() => controller.own.stop());
    stops.push(() => void controller.server.close());
    const tokenFile = join(dir, 'token-2');
    const bundleFile = join(dir, 'ca-2.crt');
    await writeFile(tokenFile, token());
    await writeFile(bundleFile, controller.ca.trustBundlePem); // never updated: a kubelet that lags
    const a = await startSidecar(controller.server.port, tokenFile, bundleFile);
    stops.push(a.stop);
    const b = await startSidecar(controller.server.port, tokenFile, bundleFile);
    stops.push(b.stop);

    // b serves mTLS; a connects anew for every request, so every request is a handshake both ways.
    const peer = tls.createServer(b.credentials.serverOptions(), (socket) => socket.end('ok'));
    b.credentials.track(peer);
    peer.on('tlsClientError', () => undefined);
    await new Promise<void>((resolve) => peer.listen(0, '127.0.0.1', resolve));
    stops.push(() => peer.close());
    const peerPort = (peer.address() as AddressInfo).port;
    const request = (): Promise<void> =>
      new Promise((resolve, reject) => {
        const socket = tls.connect({
          host: '127.0.0.1',
          port: peerPort,
          ...a.credentials.clientOptions({ expectedSpiffeId: b.credentials.identity.spiffeId }),
        });
        let text = '';
        socket.setEncoding('utf8');
        socket.on('data', (chunk: string) => (text += chunk));
        socket.on('error', reject);
        socket.on('end', () => (text === 'ok' ? resolve() : reject(new Error(`answer ${text}`))));
      });
    let ok = 0;
    const failures: string[] = [];
    const loopState = { running: true };
    const loop = (async () => {
      while (loopState.running) {
        await request().then(
          () => ok++,
          (err: unknown) => failures.push(err instanceof Error ? err.message : String(err)),
        );
      }
    })();
    const moreRequests = async (what: string): Promise<void> => {
      const target = ok + 20;
      await waitFor(`20 more requests ${what}`, () => ok >= target || failures.length > 0);
    };

    /** One step: the Secret edited and the controller's reload (controller.ts does the same on its timer). */
    const step = async (signer: CaPem, bundle: CaPem[]): Promise<void> => {
      api.edit(signer, bundle);
      assert.equal((await controller.ca.reload()).outcome, 'reloaded');
      controller.own.renewNow();
      controller.server.publishTrust();
    };
    const both = [a, b];
    const trusts = (s: (typeof both)[number], root: CaPem): boolean =>
      s.credentials.identity.bundlePem.includes(root.certPem.trim());
    try {
      await moreRequests('before the rotation');
      await step(oldCa, [oldCa, newCa]);
      await waitFor('both sidecars to trust the new root', () => both.every((s) => trusts(s, newCa)));
      assert.ok(both.every((s) => signedBy(s.credentials.identity, oldCa)));
      await moreRequests('with two roots trusted');

      await step(newCa, [oldCa, newCa]);
      await waitFor('both sidecars to hold certificates of the new CA', () =>
        both.every((s) => signedBy(s.credentials.identity, newCa)),
      );
      await moreRequests('with new certificates');

      await step(newCa, [newCa]);
      await waitFor('both sidecars to drop the old root', () => both.every((s) => !trusts(s, oldCa)));
      await moreRequests('after the rotation');
    } finally {
      loopState.running = false;
      await loop;
    }
    assert.deepEqual(failures, [], `${failures.length} of ${ok + failures.length} requests failed`);
    assert.ok(ok >= 80);
  });

  it('renews with the current certificate when the token file is missing or the token is refused', async () => {
    const api = new StandInApi();
    const oldCa = await createCa({ trustDomain: TD });
    api.secret = buildCaSecret({ namespace: NS, ...oldCa });
    let skewMs = 0; // the controller's rate-limit clock, moved on instead of waiting
    const controller = await startController(api, () => performance.now() + skewMs);
    stops.push(() => controller.own.stop());
    stops.push(() => void controller.server.close());
    const tokenFile = join(dir, 'token-3');
    const bundleFile = join(dir, 'ca-3.crt');
    await writeFile(tokenFile, token());
    await writeFile(bundleFile, controller.ca.trustBundlePem);
    const sidecar = await startSidecar(controller.server.port, tokenFile, bundleFile);
    stops.push(sidecar.stop);
    const first = sidecar.credentials.identity;
    // A new signer makes the sidecar renew (trust frame); the token is what changes between the two cases.
    const roots = [oldCa];
    const newSigner = async (): Promise<CaPem> => {
      const next = await createCa({ trustDomain: TD });
      roots.push(next);
      api.edit(next, roots);
      assert.equal((await controller.ca.reload()).outcome, 'reloaded');
      controller.own.renewNow();
      controller.server.publishTrust();
      return next;
    };

    await unlink(tokenFile);
    const second = await newSigner();
    await waitFor('a renewal without the token file', () => signedBy(sidecar.credentials.identity, second));
    assert.equal(sidecar.identity.state.renewedByCertificate, 1);
    assert.equal(sidecar.credentials.identity.spiffeId, first.spiffeId);

    // A refused token costs the pod's address 30 s of its rate limit (docs/security.md): the renewal by
    // certificate right after it gets 429, the ones after it go without the token, once time has passed.
    await writeFile(tokenFile, token());
    api.authenticated = false;
    const third = await newSigner();
    await waitFor('the refusal and the rate limit', () => sidecar.identity.state.lastError?.includes('429'));
    skewMs += 60_000;
    await waitFor('a renewal with the token refused', () => signedBy(sidecar.credentials.identity, third));
    assert.equal(sidecar.identity.state.renewedByCertificate, 2);

    // The same token is not sent again; the kubelet's next one is, and it works again.
    api.authenticated = true;
    await writeFile(tokenFile, token());
    const fourth = await newSigner();
    await waitFor('a renewal with the token', () => signedBy(sidecar.credentials.identity, fourth));
    assert.equal(sidecar.identity.state.renewedByCertificate, 2);

    // The API server is down (the CA cannot review tokens: 503): the certificate renews itself, and the
    // token, which nobody refused, is used again once reviews work.
    await writeFile(tokenFile, token());
    api.unavailable = true;
    skewMs += 60_000;
    const fifth = await newSigner();
    await waitFor('a renewal while reviews fail', () => signedBy(sidecar.credentials.identity, fifth));
    assert.equal(sidecar.identity.state.renewedByCertificate, 3);
    api.unavailable = false;
    const sixth = await newSigner();
    await waitFor('a renewal with the token again', () => signedBy(sidecar.credentials.identity, sixth));
    assert.equal(sidecar.identity.state.renewedByCertificate, 3);
  });
});
