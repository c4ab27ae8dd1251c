import { PkiError } from './errors.ts';

/** A SPIFFE ID split into its parts; `path` is '' (the trust domain itself) or '/seg/seg...'. */
export interface SpiffeId {
  readonly trustDomain: string;
  readonly path: string;
}

/** The identity of a mesh workload: spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>. */
export interface WorkloadIdentity {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

export class SpiffeIdError extends PkiError {
  override name = 'SpiffeIdError';
}

const SCHEME = 'spiffe://';
const MAX_ID_LENGTH = 2048;
const MAX_TRUST_DOMAIN_LENGTH = 255;
// Character sets from the SPIFFE ID specification (section 2).
const TRUST_DOMAIN_CHARS = /^[a-z0-9._-]+$/;
const PATH_SEGMENT_CHARS = /^[a-zA-Z0-9._-]+$/;
// Kubernetes names: a namespace is a DNS-1123 label, a service account a DNS-1123 subdomain.
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Quotes untrusted text for an error message: bounded length, control characters escaped. */
function show(value: string): string {
  const cut = value.length > 80 ? `${value.slice(0, 80)}...` : value;
  return JSON.stringify(cut);
}

export function validateTrustDomain(trustDomain: unknown): string {
  if (typeof trustDomain !== 'string' || trustDomain === '') {
    throw new SpiffeIdError('trust domain must be a non-empty string');
  }
  if (trustDomain.length > MAX_TRUST_DOMAIN_LENGTH) {
    throw new SpiffeIdError(`trust domain is longer than ${MAX_TRUST_DOMAIN_LENGTH} characters`);
  }
  if (!TRUST_DOMAIN_CHARS.test(trustDomain)) {
    throw new SpiffeIdError(
      `trust domain ${show(trustDomain)} may contain only lowercase letters, digits, '.', '-' and '_'`,
    );
  }
  return trustDomain;
}

function validatePath(path: string, whole: string): void {
  if (path === '') return;
  const segments = path.slice(1).split('/');
  for (const segment of segments) {
    if (segment === '') {
      throw new SpiffeIdError(`SPIFFE ID ${show(whole)} has an empty path segment or a trailing '/'`);
    }
    if (segment === '.' || segment === '..') {
      throw new SpiffeIdError(`SPIFFE ID ${show(whole)} has a '.' or '..' path segment`);
    }
    if (!PATH_SEGMENT_CHARS.test(segment)) {
      throw new SpiffeIdError(
        `SPIFFE ID ${show(whole)}: path segments may contain only letters, digits, '.', '-' and '_'`,
      );
    }
  }
}

/**
 * Parses a SPIFFE ID strictly (SPIFFE ID spec): lowercase `spiffe://` scheme, trust domain of
 * [a-z0-9._-], no port, user info, query or fragment, no empty / dot segments, at most 2048 bytes.
 * Throws SpiffeIdError; never anything else, whatever the input.
 */
export function parseSpiffeId(input: unknown): SpiffeId {
  if (typeof input !== 'string') throw new SpiffeIdError('SPIFFE ID must be a string');
  if (Buffer.byteLength(input) > MAX_ID_LENGTH) {
    throw new SpiffeIdError(`SPIFFE ID is longer than ${MAX_ID_LENGTH} bytes`);
  }
  if (!input.startsWith(SCHEME)) {
    throw new SpiffeIdError(`SPIFFE ID ${show(input)} must start with '${SCHEME}'`);
  }
  const rest = input.slice(SCHEME.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  if (trustDomain === '') throw new SpiffeIdError(`SPIFFE ID ${show(input)} has no trust domain`);
  try {
    validateTrustDomain(trustDomain);
  } catch {
    throw new SpiffeIdError(
      `SPIFFE ID ${show(input)}: trust domain may contain only lowercase letters, digits, '.', '-' and '_'` +
        ' (no port, user info, query or fragment)',
    );
  }
  validatePath(path, input);
  return { trustDomain, path };
}

export function isSpiffeId(input: unknown): boolean {
  try {
    parseSpiffeId(input);
    return true;
  } catch {
    return false;
  }
}

export function formatSpiffeId(id: SpiffeId): string {
  return `${SCHEME}${id.trustDomain}${id.path}`;
}

/** spiffe://<trustDomain>: the ID of the trust domain itself, used as the CA's URI SAN. */
export function trustDomainSpiffeId(trustDomain: string): string {
  return `${SCHEME}${validateTrustDomain(trustDomain)}`;
}

function validateNamespace(namespace: unknown): string {
  if (typeof namespace !== 'string' || namespace.length > 63 || !DNS1123_LABEL.test(namespace)) {
    throw new SpiffeIdError(
      `namespace ${typeof namespace === 'string' ? show(namespace) : '(not a string)'} is not a valid ` +
        'Kubernetes namespace (lowercase letters, digits and -, at most 63 characters)',
    );
  }
  return namespace;
}

function validateServiceAccount(serviceAccount: unknown): string {
  if (
    typeof serviceAccount !== 'string' ||
    serviceAccount.length > 253 ||
    !DNS1123_SUBDOMAIN.test(serviceAccount)
  ) {
    throw new SpiffeIdError(
      `service account ${typeof serviceAccount === 'string' ? show(serviceAccount) : '(not a string)'} is ` +
        'not a valid Kubernetes name (lowercase letters, digits, - and ., at most 253 characters)',
    );
  }
  return serviceAccount;
}

/** Builds spiffe://<td>/ns/<namespace>/sa/<serviceAccount>, validating every part. */
export function workloadSpiffeId(identity: WorkloadIdentity): string {
  const td = validateTrustDomain(identity.trustDomain);
  const ns = validateNamespace(identity.namespace);
  const sa = validateServiceAccount(identity.serviceAccount);
  return `${SCHEME}${td}/ns/${ns}/sa/${sa}`;
}

/** Parses a workload SPIFFE ID; anything but exactly /ns/<namespace>/sa/<serviceAccount> is rejected. */
export function parseWorkloadSpiffeId(input: unknown): WorkloadIdentity {
  const { trustDomain, path } = parseSpiffeId(input);
  const segments = path.split('/').slice(1);
  if (segments.length !== 4 || segments[0] !== 'ns' || segments[2] !== 'sa') {
    throw new SpiffeIdError(
      `SPIFFE ID ${show(input as string)} is not a workload ID (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>)`,
    );
  }
  return {
    trustDomain,
    namespace: validateNamespace(segments[1]),
    serviceAccount: validateServiceAccount(segments[3]),
  };
}
