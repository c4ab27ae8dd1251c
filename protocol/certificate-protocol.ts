// What the sidecar and the controller's CA agree on: where a sidecar asks for its certificate (HTTP/2 POST
// with a CSR, on the config port) and when it renews one. Kept apart from controller/workload-ca.ts so that
// the sidecar does not load the CA (and @peculiar/x509) to learn a path and a renewal time.

export const CERTIFICATE_PATH = '/v1/certificate';

/** Sidecars renew at this fraction of a certificate's lifetime, give or take RENEW_JITTER of it. */
export const RENEW_FRACTION = 0.7;
export const RENEW_JITTER = 0.05;

/**
 * When a sidecar should renew a certificate: at `fraction` of its lifetime, moved by up to `jitter` of the
 * lifetime either way so that sidecars started together do not all renew at once. A certificate whose
 * lifetime is not positive is due at once (returns notBefore).
 */
export function renewAt(
  notBefore: Date,
  notAfter: Date,
  fraction = RENEW_FRACTION,
  jitter = RENEW_JITTER,
  random: () => number = Math.random,
): Date {
  const start = notBefore.getTime();
  const end = notAfter.getTime();
  if (!Number.isFinite(start) || !Number.isFinite(end)) throw new RangeError('renewAt: invalid date');
  if (!(fraction > 0 && fraction < 1))
    throw new RangeError(`renewAt: fraction must be in (0, 1), got ${fraction}`);
  if (!(jitter >= 0 && jitter <= Math.min(fraction, 1 - fraction))) {
    throw new RangeError(
      `renewAt: jitter must be in [0, ${Math.min(fraction, 1 - fraction)}], got ${jitter}`,
    );
  }
  if (end <= start) return new Date(start);
  const r = Math.min(Math.max(random(), 0), 1);
  return new Date(start + (end - start) * (fraction + (2 * r - 1) * jitter));
}
