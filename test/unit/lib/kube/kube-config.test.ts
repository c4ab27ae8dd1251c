import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfigError, loadKubeConfig, SERVICE_ACCOUNT_DIR } from '../../../../lib/kube/kube-config.ts';

const ENV_KEYS = ['KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT', 'KUBECONFIG', 'HOME'] as const;

function kubeconfigYaml(server: string, namespace?: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: c1`,
    `  cluster: {server: "${server}"}`,
    'users:',
    '- name: u1',
    '  user: {token: static-token}',
    'contexts:',
    '- name: ctx1',
    `  context: {cluster: c1, user: u1${namespace ? `, namespace: ${namespace}` : ''}}`,
    '- name: broken',
    '  context: {cluster: nowhere, user: u1}',
    'current-context: ctx1',
    '',
  ].join('\n');
}

async function authorization(loaded: ReturnType<typeof loadKubeConfig>): Promise<unknown> {
  return (await loaded.api.credentials()).authorization;
}

describe('kube/kube-config', () => {
  let dir: string;
  const saved: Partial<Record<(typeof ENV_KEYS)[number], string | undefined>> = {};

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'kube-config-'));
    for (const key of ENV_KEYS) {
      saved[key] = process.env[key];
      delete process.env[key];
    }
    process.env.HOME = join(dir, 'home');
  });

  afterEach(() => {
    for (const key of ENV_KEYS) {
      if (saved[key] === undefined) delete process.env[key];
      else process.env[key] = saved[key];
    }
    rmSync(dir, { recursive: true, force: true });
  });

  function serviceAccount(token: string, namespace = 'sluice-system\n'): string {
    const root = join(dir, 'root');
    const sa = `${root}${SERVICE_ACCOUNT_DIR}`;
    mkdirSync(sa, { recursive: true });
    writeFileSync(join(sa, 'token'), token);
    writeFileSync(join(sa, 'ca.crt'), '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n');
    writeFileSync(join(sa, 'namespace'), namespace);
    return root;
  }

  it('loads an explicit kubeconfig file', async () => {
    const file = join(dir, 'config');
    writeFileSync(file, kubeconfigYaml('https://127.0.0.1:6443', 'team-a'));
    const loaded = loadKubeConfig({ kubeconfigPath: file });
    assert.equal(loaded.inCluster, false);
    assert.equal(loaded.source, `kubeconfig ${file}`);
    assert.equal(loaded.server, 'https://127.0.0.1:6443');
    assert.equal(loaded.namespace, 'team-a');
    assert.equal(await authorization(loaded), 'Bearer static-token');
  });

  it('uses the service account in a pod, with the token re-read as the kubelet rotates it', async () => {
    const root = serviceAccount('token-1');
    process.env.KUBERNETES_SERVICE_HOST = 'fd00::1';
    process.env.KUBERNETES_SERVICE_PORT = '443';
    // In a pod the service account wins over a KUBECONFIG that happens to be set.
    process.env.KUBECONFIG = join(dir, 'missing');
    const loaded = loadKubeConfig({ rootPrefix: root });
    assert.equal(loaded.inCluster, true);
    assert.equal(loaded.server, 'https://[fd00::1]:443');
    assert.equal(loaded.namespace, 'sluice-system');
    assert.equal(await authorization(loaded), 'Bearer token-1');

    // The copy is kept for 60 s, then the file is read again.
    writeFileSync(join(`${root}${SERVICE_ACCOUNT_DIR}`, 'token'), 'token-2');
    assert.equal(await authorization(loaded), 'Bearer token-1', 'cached within the minute');
    const realNow = Date.now;
    Date.now = () => realNow() + 61_000;
    try {
      assert.equal(await authorization(loaded), 'Bearer token-2', 're-read after a minute');
    } finally {
      Date.now = realNow;
    }
  });

  it('falls back to KUBECONFIG in a pod without a mounted token, skipping missing files', () => {
    process.env.KUBERNETES_SERVICE_HOST = '10.0.0.1';
    process.env.KUBERNETES_SERVICE_PORT = '443';
    const file = join(dir, 'config');
    writeFileSync(file, kubeconfigYaml('https://10.9.9.9:6443'));
    process.env.KUBECONFIG = [join(dir, 'missing'), file].join(':');
    const loaded = loadKubeConfig({ rootPrefix: join(dir, 'empty-root') });
    assert.equal(loaded.inCluster, false);
    assert.equal(loaded.server, 'https://10.9.9.9:6443');
    assert.equal(loaded.namespace, undefined);
  });

  it('reads client certificates, tls-server-name and relative paths, and merges KUBECONFIG files first-wins', async () => {
    const first = join(dir, 'first');
    const second = join(dir, 'second');
    writeFileSync(join(dir, 'client.crt'), 'CERT');
    writeFileSync(
      first,
      [
        'clusters:',
        '- name: c1',
        '  cluster: {server: "https://10.0.0.1:6443", tls-server-name: api.internal}',
        'users:',
        '- name: u1',
        `  user: {client-certificate: client.crt, client-key-data: ${Buffer.from('KEY').toString('base64')}}`,
        '',
      ].join('\n'),
    );
    writeFileSync(
      second,
      kubeconfigYaml('https://10.9.9.9:6443').replace('user: {token: static-token}', 'user: {}'),
    );
    process.env.KUBECONFIG = [first, second].join(':');
    const loaded = loadKubeConfig();
    assert.equal(loaded.server, 'https://10.0.0.1:6443', 'c1 from the first file');
    assert.deepEqual(await loaded.api.credentials(), { certPem: 'CERT', keyPem: 'KEY' });
  });

  it('runs an exec credential plugin and keeps its token until it expires', async () => {
    const plugin = join(dir, 'plugin.sh');
    const count = join(dir, 'runs');
    writeFileSync(
      plugin,
      [
        '#!/bin/sh',
        `echo run >> ${count}`,
        'case "$KUBERNETES_EXEC_INFO" in *ExecCredential*) ;; *) exit 3 ;; esac',
        `echo '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"'$PLUGIN_TOKEN'","expirationTimestamp":"2999-01-01T00:00:00Z"}}'`,
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    const file = join(dir, 'config');
    writeFileSync(
      file,
      kubeconfigYaml('https://127.0.0.1:6443').replace(
        'user: {token: static-token}',
        `user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: ./plugin.sh, env: [{name: PLUGIN_TOKEN, value: from-plugin}]}}`,
      ),
    );
    const loaded = loadKubeConfig({ kubeconfigPath: file });
    const tokens = await Promise.all([authorization(loaded), authorization(loaded), authorization(loaded)]);
    assert.deepEqual(tokens, Array(3).fill('Bearer from-plugin'));
    assert.equal(
      readFileSync(count, 'utf8'),
      'run\n',
      'one run for concurrent requests and the cached token',
    );
  });

  it('refuses legacy auth-provider users with a pointer to exec plugins', () => {
    const file = join(dir, 'config');
    writeFileSync(
      file,
      kubeconfigYaml('https://127.0.0.1:6443').replace(
        'user: {token: static-token}',
        'user: {auth-provider: {name: gcp}}',
      ),
    );
    assert.throws(
      () => loadKubeConfig({ kubeconfigPath: file }),
      /auth-provider is not supported; use an exec/,
    );
  });

  it('falls back to ~/.kube/config', () => {
    mkdirSync(join(dir, 'home', '.kube'), { recursive: true });
    writeFileSync(join(dir, 'home', '.kube', 'config'), kubeconfigYaml('https://10.1.1.1:6443'));
    assert.equal(loadKubeConfig().server, 'https://10.1.1.1:6443');
  });

  it('selects a context by name', () => {
    const file = join(dir, 'config');
    writeFileSync(file, kubeconfigYaml('https://127.0.0.1:6443'));
    assert.throws(
      () => loadKubeConfig({ kubeconfigPath: file, context: 'broken' }),
      /context broken names no known cluster/,
    );
    assert.throws(() => loadKubeConfig({ kubeconfigPath: file, context: 'nope' }), /no context named nope/);
  });

  for (const [what, setup, expected] of [
    ['nothing configured', () => ({}), /no Kubernetes configuration: not in a pod/],
    [
      'a missing explicit file',
      () => ({ kubeconfigPath: join(dir, 'nope') }),
      /cannot load kubeconfig .*nope: ENOENT/,
    ],
    [
      'KUBECONFIG naming only missing files',
      () => {
        process.env.KUBECONFIG = join(dir, 'a');
        return {};
      },
      /none of the KUBECONFIG files exists/,
    ],
    [
      'malformed YAML',
      () => {
        writeFileSync(join(dir, 'bad'), 'clusters: [\n  - {oops\n');
        return { kubeconfigPath: join(dir, 'bad') };
      },
      /cannot load kubeconfig .*bad: /,
    ],
    [
      'an unusable server URL',
      () => {
        writeFileSync(join(dir, 'c'), kubeconfigYaml('not a url'));
        return { kubeconfigPath: join(dir, 'c') };
      },
      /has no valid server URL/,
    ],
    [
      'an in-cluster token without a CA',
      () => {
        const root = serviceAccount('t');
        rmSync(join(`${root}${SERVICE_ACCOUNT_DIR}`, 'ca.crt'));
        process.env.KUBERNETES_SERVICE_HOST = '10.0.0.1';
        process.env.KUBERNETES_SERVICE_PORT = '443';
        return { rootPrefix: root };
      },
      /in-cluster config: cannot read .*ca\.crt/,
    ],
  ] as const) {
    it(`fails in one line on ${what}`, () => {
      const options = setup();
      assert.throws(
        () => loadKubeConfig(options),
        (error: unknown) => {
          assert.ok(error instanceof KubeConfigError, String(error));
          assert.match(error.message, expected);
          assert.ok(!error.message.includes('\n'), `one line: ${error.message}`);
          return true;
        },
      );
    });
  }
});
