// Where a request's credentials come from: a token (static or a file the kubelet rotates), a client
// certificate, basic auth, or an exec credential plugin (client.authentication.k8s.io ExecCredential, as
// kubectl runs them: cloud providers' login helpers). Legacy auth-provider entries are refused when the
// kubeconfig is loaded.
import { execFile } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import type { Credentials } from './kube-api.ts';

/** The kubelet rewrites projected tokens well before expiry; client-go re-reads the file each minute too. */
const TOKEN_FILE_MAX_AGE_MS = 60_000;
const EXEC_TIMEOUT_MS = 30_000;
/** An exec credential is run again this long before it expires. */
const EXEC_EXPIRY_MARGIN_MS = 10_000;

export type CredentialSource = () => Promise<Credentials>;

export const fixedCredentials =
  (credentials: Credentials): CredentialSource =>
  () =>
    Promise.resolve(credentials);

/** A bearer token read from `path`, again once the copy is a minute old (and the file changed). */
export function tokenFileCredentials(path: string, now: () => number = () => Date.now()): CredentialSource {
  let token: string | undefined;
  let readAt = 0;
  let mtimeMs = -1;
  return () => {
    if (token === undefined || now() - readAt >= TOKEN_FILE_MAX_AGE_MS) {
      const mtime = statSync(path).mtimeMs;
      if (token === undefined || mtime !== mtimeMs) token = readFileSync(path, 'utf8').trim();
      mtimeMs = mtime;
      readAt = now();
    }
    return Promise.resolve({ authorization: `Bearer ${token}` });
  };
}

export interface ExecConfig {
  readonly apiVersion: string;
  readonly command: string;
  readonly args?: readonly string[];
  readonly env?: readonly { readonly name: string; readonly value: string }[];
}

function execStatus(stdout: string): { credentials: Credentials; expiresAt: number } {
  const parsed = JSON.parse(stdout) as { status?: Record<string, unknown> };
  const status = parsed.status ?? {};
  const { token, clientCertificateData, clientKeyData, expirationTimestamp } = status;
  let credentials: Credentials;
  if (typeof token === 'string' && token !== '') credentials = { authorization: `Bearer ${token}` };
  else if (typeof clientCertificateData === 'string' && typeof clientKeyData === 'string')
    credentials = { certPem: clientCertificateData, keyPem: clientKeyData };
  else throw new Error('the plugin printed neither status.token nor a client certificate');
  const expiresAt =
    typeof expirationTimestamp === 'string' ? Date.parse(expirationTimestamp) : Number.POSITIVE_INFINITY;
  return { credentials, expiresAt: Number.isNaN(expiresAt) ? 0 : expiresAt };
}

/** Runs the plugin when there is no unexpired credential; concurrent requests share one run. */
export function execCredentials(exec: ExecConfig): CredentialSource {
  let cached: { credentials: Credentials; expiresAt: number } | undefined;
  let running: Promise<Credentials> | undefined;
  const run = (): Promise<Credentials> =>
    new Promise((resolve, reject) => {
      const env = { ...process.env };
      for (const { name, value } of exec.env ?? []) env[name] = value;
      env.KUBERNETES_EXEC_INFO = JSON.stringify({
        apiVersion: exec.apiVersion,
        kind: 'ExecCredential',
        spec: { interactive: false },
      });
      execFile(exec.command, [...(exec.args ?? [])], { env, timeout: EXEC_TIMEOUT_MS }, (error, stdout) => {
        if (error)
          return reject(new Error(`exec plugin ${exec.command}: ${error.message.split('\n', 1)[0]}`));
        try {
          cached = execStatus(stdout);
          resolve(cached.credentials);
        } catch (cause) {
          reject(
            new Error(
              `exec plugin ${exec.command}: ${cause instanceof Error ? cause.message : String(cause)}`,
            ),
          );
        }
      });
    });
  return () => {
    if (cached && Date.now() < cached.expiresAt - EXEC_EXPIRY_MARGIN_MS)
      return Promise.resolve(cached.credentials);
    running ??= run().finally(() => (running = undefined));
    return running;
  };
}
