// The mesh CA's issuing logic. A sidecar proves who it is with its pod's projected service-account token
// (checked by a TokenReview against the API server) and sends a CSR; it gets back an X.509-SVID for the
// identity the token names. The Kubernetes call sits behind TokenReviewer, so all of this runs without a
// cluster. The identity always comes from the token: a CSR that asks for anything else is refused.
import { X509Certificate } from 'node:crypto';
import { DEFAULT_WORKLOAD_HOURS, issueWorkloadCert, type CertificateAuthority } from '../pki/ca.ts';
import { verifyCsr } from '../pki/csr.ts';
import { parsePemBlocks, toPem } from '../pki/pem.ts';
import { parseSpiffeId, parseWorkloadSpiffeId, workloadSpiffeId } from '../pki/spiffe-id.ts';
import { x509 } from '../pki/x509-lib.ts';
import { isRecord } from '../lib/is-record.ts';

/** The audience sidecars' projected tokens are minted for; the TokenReview must confirm it. */
export const DEFAULT_AUDIENCE = 'sluice.dev/mesh';
export const MAX_TOKEN_BYTES = 16 * 1024;
export const MAX_CSR_BYTES = 16 * 1024;
/** One minute: short enough for tests that watch several renewals, long enough for any real clock. */
export const MIN_VALIDITY_HOURS = 1 / 60;
export const MAX_VALIDITY_HOURS = 7 * 24;

// Keys of UserInfo.extra set by the API server for pod-bound service-account tokens.
export const POD_NAME_KEY = 'authentication.kubernetes.io/pod-name';
export const POD_UID_KEY = 'authentication.kubernetes.io/pod-uid';
const SERVICE_ACCOUNT_PREFIX = 'system:serviceaccount:';
// RFC 6750 b64token: what a bearer token may contain (a service-account token is a JWT, a subset of this).
const BEARER_TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
const EXTENSION_REQUEST_OID = '1.2.840.113549.1.9.14';
const SUBJECT_ALT_NAME_OID = '2.5.29.17';
const BASIC_CONSTRAINTS_OID = '2.5.29.19';

// ---- TokenReview (authentication.k8s.io/v1) ----

/** The part of a TokenReview's status that matters here (authentication.k8s.io/v1 TokenReviewStatus). */
export interface TokenReviewResult {
  readonly authenticated: boolean;
  /** system:serviceaccount:<namespace>:<name> for a service-account token; '' when not authenticated. */
  readonly username: string;
  readonly uid: string;
  readonly groups: readonly string[];
  /** The audiences (of those asked for) the token is valid for. Empty means "the API server's own". */
  readonly audiences: readonly string[];
  /** UserInfo.extra; a pod-bound token carries POD_NAME_KEY and POD_UID_KEY. */
  readonly extra: Readonly<Record<string, readonly string[]>>;
  /** Why the token could not be checked; '' if it could. */
  readonly error: string;
}

/** Reviews a bearer token; the real one POSTs tokenReviewRequest() and returns tokenReviewResult(reply). */
export interface TokenReviewer {
  review(token: string, audiences: readonly string[]): Promise<TokenReviewResult>;
}

export interface TokenReviewRequest {
  readonly apiVersion: 'authentication.k8s.io/v1';
  readonly kind: 'TokenReview';
  readonly spec: { readonly token: string; readonly audiences: string[] };
}

/** The body to POST to /apis/authentication.k8s.io/v1/tokenreviews. */
export function tokenReviewRequest(token: string, audiences: readonly string[]): TokenReviewRequest {
  return {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenReview',
    spec: { token, audiences: [...audiences] },
  };
}

/** Thrown by a TokenReviewer that will not ask the API server now (its budget is spent): answered 429. */
export class ReviewBudgetExhausted extends Error {
  override name = 'ReviewBudgetExhausted';
  readonly retryAfterMs: number;
  constructor(retryAfterMs: number) {
    super('TokenReview budget exhausted');
    this.retryAfterMs = retryAfterMs;
  }
}

/** The API server's answer did not look like a TokenReview (not the same as "token not authenticated"). */
export class TokenReviewError extends Error {
  override name = 'TokenReviewError';
}

function stringOr(value: unknown, fallback: string): string {
  return typeof value === 'string' ? value : fallback;
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

/**
 * Reads a TokenReview returned by the API server (JSON, or the equivalent client object). Fields of the
 * wrong type count as absent, so a strange answer fails closed (not authenticated). Throws
 * TokenReviewError only when the answer is not a TokenReview at all (e.g. a Status object).
 */
export function tokenReviewResult(response: unknown): TokenReviewResult {
  if (!isRecord(response)) throw new TokenReviewError('TokenReview response is not an object');
  if (response.kind !== undefined && response.kind !== 'TokenReview') {
    throw new TokenReviewError(`TokenReview response has kind ${JSON.stringify(response.kind)}`);
  }
  const status = response.status;
  if (!isRecord(status)) throw new TokenReviewError('TokenReview response has no status');
  const user = isRecord(status.user) ? status.user : {};
  const extra = isRecord(user.extra) ? user.extra : {};
  return {
    authenticated: status.authenticated === true,
    username: stringOr(user.username, ''),
    uid: stringOr(user.uid, ''),
    groups: strings(user.groups),
    audiences: strings(status.audiences),
    // fromEntries defines own properties, so a '__proto__' key stays a plain key.
    extra: Object.fromEntries(
      Object.entries(extra)
        .filter(([, v]) => Array.isArray(v))
        .map(([k, v]) => [k, strings(v)]),
    ),
    error: stringOr(status.error, ''),
  };
}

/** Namespace and name from system:serviceaccount:<namespace>:<name>, or undefined for any other user. */
export function serviceAccountOf(
  username: string,
): { namespace: string; serviceAccount: string } | undefined {
  if (!username.startsWith(SERVICE_ACCOUNT_PREFIX)) return undefined;
  const parts = username.slice(SERVICE_ACCOUNT_PREFIX.length).split(':');
  if (parts.length !== 2) return undefined;
  const [namespace = '', serviceAccount = ''] = parts;
  return { namespace, serviceAccount };
}

// ---- Issuing ----

/** What the CA signs with and hands out. */
export interface IssuingCa {
  readonly ca: CertificateAuthority;
  /** PEM certificates sent after the leaf: '' when the CA is a root in the bundle, else the CA and its issuers. */
  readonly chainPem: string;
  /** The CA certificates sidecars trust (the roots; during a rotation, old and new). */
  readonly trustBundlePem: string;
  /** A CA that can change (ReloadableCa): the version of this moment, whose fields belong together. */
  snapshot?(): IssuingCa;
}

export interface IssueRequest {
  /** The pod's projected service-account token (audience DEFAULT_AUDIENCE or the configured one). */
  readonly token?: unknown;
  /** PKCS#10 CSR (PEM) for an ECDSA P-256 key; at most a URI SAN equal to the token's SPIFFE ID. */
  readonly csrPem?: unknown;
}

export interface IssuedCertificate {
  readonly ok: true;
  /** The workload certificate, then chainPem. */
  readonly certChainPem: string;
  readonly trustBundlePem: string;
  readonly spiffeId: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly podName: string | undefined;
  readonly podUid: string | undefined;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/** gRPC-style refusal codes; Unavailable and ResourceExhausted are worth retrying (later), the others are
 * not (until something changes). */
export type RefusalCode =
  | 'InvalidArgument'
  | 'Unauthenticated'
  | 'PermissionDenied'
  | 'ResourceExhausted'
  | 'Unavailable'
  | 'Internal';

export interface Refusal {
  readonly ok: false;
  readonly code: RefusalCode;
  /** One line for the peer. */
  readonly message: string;
  /** For the CA's own log only (internal errors the peer should not see). */
  readonly detail?: string;
  /** ResourceExhausted: when to try again, and which limit said no. */
  readonly retryAfterMs?: number;
  readonly limit?: 'review-budget' | 'identity';
}

export type IssueResult = IssuedCertificate | Refusal;

/**
 * A renewal by a workload that presented its current certificate on the TLS connection (chain verified
 * against the trust bundle, authenticatePeer): the new certificate is for the same SPIFFE ID, no token.
 */
export interface RenewRequest {
  /** The presented certificate's SPIFFE ID (a workload ID in this CA's trust domain). */
  readonly spiffeId: string;
  /** The presented certificate's SHA-256 fingerprint: the per-workload rate limit's key. */
  readonly fingerprint: string;
  readonly csrPem?: unknown;
}

export interface WorkloadCaOptions {
  readonly issuer: IssuingCa;
  readonly reviewer: TokenReviewer;
  /** The audience tokens must have been minted for, e.g. DEFAULT_AUDIENCE. */
  readonly audience: string;
  /** Lifetime of issued certificates, MIN_VALIDITY_HOURS..MAX_VALIDITY_HOURS; default 24. */
  readonly validityHours?: number;
  /**
   * Refuse tokens not bound to a pod (default true). A projected token always is, and the API server stops
   * accepting it once the pod is gone; an unbound one (`kubectl create token`) outlives any pod.
   */
  readonly requirePodBoundToken?: boolean;
  /**
   * Asked once the token is reviewed, before signing, with the caller's identity (the pod UID, or the
   * SPIFFE ID for a token not bound to a pod): 0 to go on, else milliseconds to wait (ResourceExhausted).
   */
  readonly admitIdentity?: (key: string) => number;
  readonly now?: () => Date;
}

function refuse(code: RefusalCode, message: string, detail?: string): Refusal {
  return detail === undefined ? { ok: false, code, message } : { ok: false, code, message, detail };
}

/** Quotes text a peer sent for a message: bounded, control characters escaped. */
function quote(value: string): string {
  return JSON.stringify(value.length > 100 ? `${value.slice(0, 100)}...` : value);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function oneLine(text: string): string {
  const line = text.split('\n')[0] ?? '';
  return line.length > 200 ? `${line.slice(0, 200)}...` : line;
}

/** The token if it is worth a TokenReview, else the refusal. */
function checkToken(token: unknown): string | Refusal {
  if (typeof token !== 'string' || token === '') return refuse('Unauthenticated', 'no token given');
  if (token.length > MAX_TOKEN_BYTES) {
    return refuse('InvalidArgument', `token is larger than ${MAX_TOKEN_BYTES} bytes`);
  }
  if (!BEARER_TOKEN.test(token)) {
    return refuse('InvalidArgument', 'token contains characters a bearer token cannot');
  }
  return token;
}

/** The URI SAN a CSR asks for (undefined if none), or a refusal for anything the CA will not put in a certificate. */
function requestedUri(der: Uint8Array): { uri: string | undefined } | Refusal {
  const csr = new x509.Pkcs10CertificateRequest(der);
  if (csr.getAttributes(EXTENSION_REQUEST_OID).length > 1) {
    return refuse('InvalidArgument', 'CSR has more than one extensionRequest attribute');
  }
  const seen = new Set<string>();
  const uris: string[] = [];
  for (const ext of csr.extensions) {
    if (seen.has(ext.type)) return refuse('InvalidArgument', `CSR requests extension ${ext.type} twice`);
    seen.add(ext.type);
    if (ext.type === SUBJECT_ALT_NAME_OID) {
      for (const name of new x509.SubjectAlternativeNameExtension(ext.rawData).names.items) {
        if (name.type !== 'url') {
          return refuse(
            'InvalidArgument',
            `CSR asks for a ${name.type} SAN; workload certificates carry only the SPIFFE ID`,
          );
        }
        uris.push(name.value);
      }
    } else if (ext.type === BASIC_CONSTRAINTS_OID) {
      if (new x509.BasicConstraintsExtension(ext.rawData).ca)
        return refuse('InvalidArgument', 'CSR asks to be a CA');
    } else {
      return refuse(
        'InvalidArgument',
        `CSR requests extension ${ext.type}; the CA sets extensions itself and reads only subjectAltName`,
      );
    }
  }
  if (uris.length > 1)
    return refuse('InvalidArgument', `CSR asks for ${uris.length} URI SANs; at most one is allowed`);
  const uri = uris[0];
  if (uri !== undefined) {
    try {
      parseSpiffeId(uri);
    } catch (err) {
      return refuse('InvalidArgument', `CSR URI SAN: ${errorText(err)}`);
    }
  }
  return { uri };
}

/** The single value of a UserInfo.extra key, or undefined when it is absent or not exactly one string. */
function singleExtra(extra: TokenReviewResult['extra'], key: string): string | undefined {
  const values = Object.hasOwn(extra, key) ? extra[key] : undefined;
  return values?.length === 1 && values[0] !== '' ? values[0] : undefined;
}

/**
 * Issues workload certificates. Cheap local checks (sizes, CSR syntax, signature, what the CSR asks
 * for) run first so that malformed requests never cost a TokenReview. issue() never throws.
 */
export class WorkloadCa {
  readonly #issuer: IssuingCa;
  readonly #reviewer: TokenReviewer;
  readonly #audience: string;
  readonly #validityHours: number;
  readonly #requirePodBoundToken: boolean;
  readonly #admitIdentity: ((key: string) => number) | undefined;
  readonly #now: () => Date;

  constructor(options: WorkloadCaOptions) {
    const hours = options.validityHours ?? DEFAULT_WORKLOAD_HOURS;
    if (!Number.isFinite(hours) || hours < MIN_VALIDITY_HOURS || hours > MAX_VALIDITY_HOURS) {
      throw new RangeError(
        `workload certificate validity must be between 1 minute and ${MAX_VALIDITY_HOURS} hours, got ${hours} hours`,
      );
    }
    if (options.audience === '') throw new RangeError('the token audience must not be empty');
    this.#issuer = options.issuer;
    this.#reviewer = options.reviewer;
    this.#audience = options.audience;
    this.#validityHours = hours;
    this.#requirePodBoundToken = options.requirePodBoundToken ?? true;
    this.#admitIdentity = options.admitIdentity;
    this.#now = options.now ?? (() => new Date());
  }

  get trustBundlePem(): string {
    return this.#issuer.trustBundlePem;
  }

  get trustDomain(): string {
    return this.#issuer.ca.trustDomain;
  }

  /** Renews a certificate for the identity of the one presented (RenewRequest); never throws. */
  async renew(request: RenewRequest): Promise<IssueResult> {
    try {
      let workload;
      try {
        workload = parseWorkloadSpiffeId(request.spiffeId);
      } catch (err) {
        return refuse('PermissionDenied', `certificate: ${errorText(err)}`);
      }
      if (workload.trustDomain !== this.trustDomain)
        return refuse('PermissionDenied', `certificate is not for trust domain '${this.trustDomain}'`);
      const csr = await this.#checkCsr(request.csrPem);
      if ('ok' in csr) return csr;
      const account = { namespace: workload.namespace, serviceAccount: workload.serviceAccount };
      return await this.#sign(
        csr,
        request.spiffeId,
        account,
        `cert:${request.fingerprint}`,
        {},
        'certificate',
      );
    } catch (err) {
      return refuse('Internal', 'the certificate could not be issued', errorText(err));
    }
  }

  /** The CSR's key and the SPIFFE ID it asks for, or the refusal (no TokenReview is spent on a bad CSR). */
  async #checkCsr(
    csrPem: unknown,
  ): Promise<{ publicKeySpki: Uint8Array; asked: string | undefined } | Refusal> {
    if (typeof csrPem !== 'string' || csrPem === '') return refuse('InvalidArgument', 'no CSR given');
    if (csrPem.length > MAX_CSR_BYTES)
      return refuse('InvalidArgument', `CSR is larger than ${MAX_CSR_BYTES} bytes`);
    try {
      const publicKeySpki = (await verifyCsr(csrPem)).publicKeySpki;
      const request = requestedUri(parsePemBlocks(csrPem, 'CSR')[0]!.der);
      if (!('uri' in request)) return request;
      return { publicKeySpki, asked: request.uri };
    } catch (err) {
      const text = oneLine(errorText(err));
      return refuse('InvalidArgument', text.startsWith('CSR') ? text : `CSR: ${text}`);
    }
  }

  /** The last steps of both paths: the CSR's SPIFFE ID checked, the per-workload limit, signing. */
  async #sign(
    csr: { publicKeySpki: Uint8Array; asked: string | undefined },
    spiffeId: string,
    account: { namespace: string; serviceAccount: string },
    limitKey: string,
    pod: { podName?: string | undefined; podUid?: string | undefined },
    via: 'token' | 'certificate',
  ): Promise<IssueResult> {
    // One version of the CA for the whole answer, even if it is reloaded meanwhile (controller/ca-reload.ts).
    const issuer = this.#issuer.snapshot?.() ?? this.#issuer;
    const { ca } = issuer;
    const { asked } = csr;
    if (asked !== undefined && asked !== spiffeId) {
      const askedDomain = parseSpiffeId(asked).trustDomain;
      return askedDomain === ca.trustDomain
        ? refuse('PermissionDenied', `CSR asks for ${quote(asked)}, but the ${via} is for ${spiffeId}`)
        : refuse(
            'PermissionDenied',
            `CSR asks for trust domain ${quote(askedDomain)}; this CA issues for '${ca.trustDomain}'`,
          );
    }
    const wait = this.#admitIdentity?.(limitKey) ?? 0;
    if (wait > 0) {
      return {
        ...refuse(
          'ResourceExhausted',
          'too many certificate requests for this workload: retry later',
          spiffeId,
        ),
        retryAfterMs: wait,
        limit: 'identity',
      };
    }
    const leafPem = await issueWorkloadCert({
      ca,
      spiffeId,
      publicKey: toPem('PUBLIC KEY', csr.publicKeySpki),
      validityHours: this.#validityHours,
      now: this.#now(),
    });
    const leaf = new X509Certificate(leafPem);
    return {
      ok: true,
      certChainPem: leafPem + issuer.chainPem,
      trustBundlePem: issuer.trustBundlePem,
      spiffeId,
      ...account,
      podName: pod.podName,
      podUid: pod.podUid,
      notBefore: leaf.validFromDate,
      notAfter: leaf.validToDate,
    };
  }

  async issue(request: IssueRequest): Promise<IssueResult> {
    try {
      return await this.#issue(request);
    } catch (err) {
      return refuse('Internal', 'the certificate could not be issued', errorText(err));
    }
  }

  async #issue(request: IssueRequest): Promise<IssueResult> {
    if (!isRecord(request)) return refuse('InvalidArgument', 'the request is not an object');
    const token = checkToken(request.token);
    if (typeof token !== 'string') return token;
    const csr = await this.#checkCsr(request.csrPem);
    if ('ok' in csr) return csr;

    let review: TokenReviewResult;
    try {
      review = await this.#reviewer.review(token, [this.#audience]);
    } catch (err) {
      if (err instanceof ReviewBudgetExhausted) {
        return {
          ...refuse('ResourceExhausted', 'too many certificate requests: retry later', err.message),
          retryAfterMs: err.retryAfterMs,
          limit: 'review-budget',
        };
      }
      return refuse('Unavailable', 'the token cannot be reviewed now; try again later', errorText(err));
    }
    if (!review.authenticated) {
      const why = review.error === '' ? '' : `: ${oneLine(review.error)}`;
      return refuse('Unauthenticated', `token not authenticated${why}`);
    }
    // Checked even though the API server filters by the audiences asked for: an authenticator that is not
    // audience-aware answers with no audiences, and would otherwise let any pod's API token through.
    if (!review.audiences.includes(this.#audience)) {
      return refuse('Unauthenticated', `token is not for audience ${quote(this.#audience)}`);
    }
    const account = serviceAccountOf(review.username);
    if (!account)
      return refuse('PermissionDenied', `user ${quote(review.username)} is not a service account`);
    const podName = singleExtra(review.extra, POD_NAME_KEY);
    const podUid = singleExtra(review.extra, POD_UID_KEY);
    if (this.#requirePodBoundToken && (podName === undefined || podUid === undefined)) {
      return refuse('PermissionDenied', 'token is not bound to a pod; use a projected service-account token');
    }
    let spiffeId: string;
    try {
      spiffeId = workloadSpiffeId({ trustDomain: this.#issuer.ca.trustDomain, ...account });
    } catch (err) {
      return refuse('PermissionDenied', `service account cannot be named in a SPIFFE ID: ${errorText(err)}`);
    }
    return this.#sign(csr, spiffeId, account, podUid ?? spiffeId, { podName, podUid }, 'token');
  }
}
