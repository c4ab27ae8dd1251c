// Where a request's credentials come from: a token (static or a file the kubelet rotates), a client
// certificate, basic auth, or an exec credential plugin (client.authentication.k8s.io ExecCredential, as
// kubectl runs them: cloud providers' login helpers). Legacy auth-provider entries are refused when the
// kubeconfig is loaded.
//
// An exec credential is used until shortly before its expirationTimestamp, and until the API server answers
// 401 to it: then the plugin runs again and the request is sent once more (client-go does the same; a
// credential without expirationTimestamp would otherwise be kept after it was revoked or rotated).
import { execFile } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import type { Credentials } from './kube-api.ts';

/** The kubelet rewrites projected tokens well before expiry; client-go re-reads the file each minute too. */
const TOKEN_FILE_MAX_AGE_MS = 60_000;
const EXEC_TIMEOUT_MS = 30_000;
/** An exec credential is run again this long before it expires. */
export const EXEC_EXPIRY_MARGIN_MS = 10_000;

export type CredentialSource = (() => Promise<Credentials>) & {
  /**
   * The API server answered 401 to `rejected`: forget it if it is still the current one. True when the next
   * call may return other credentials (so the request is worth sending once more).
   */
  readonly rejected?: (rejected: Credentials) => boolean;
};

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

export interface ExecCredentialOptions {
  /** The clock expirationTimestamp is compared with (ms since the epoch). */
  readonly now?: () => number;
  /** Run the plugin again this long before the credential expires. */
  readonly expiryMarginMs?: number;
}

/**
 * Runs the plugin when there is no credential, when it is about to expire, or after the API server
 * rejected it; concurrent requests share one run.
 */
export function execCredentials(exec: ExecConfig, options: ExecCredentialOptions = {}): CredentialSource {
  const now = options.now ?? Date.now;
  const margin = options.expiryMarginMs ?? EXEC_EXPIRY_MARGIN_MS;
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
  const source = (): Promise<Credentials> => {
    if (cached && now() < cached.expiresAt - margin) return Promise.resolve(cached.credentials);
    running ??= run().finally(() => (running = undefined));
    return running;
  };
  return Object.assign(source, {
    rejected(credentials: Credentials): boolean {
      // Several requests may fail with the same credential: only the first drops it, and the others' retries
      // share the run it starts (or use its result).
      if (cached?.credentials === credentials) cached = undefined;
      return true;
    },
  });
}
