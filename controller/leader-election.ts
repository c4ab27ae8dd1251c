// Leader election for controller replicas on a coordination.k8s.io/v1 Lease in the control-plane namespace,
// following the protocol client-go's leaderelection package uses, so the Lease reads the same to anyone who
// knows that one (kubectl get lease, dashboards).
//
// Decisions:
// - Expiry is judged by OUR monotonic clock: a Lease held by someone else counts as expired only when its
//   record (holder, renew/acquire time, duration, transitions) has not changed for leaseDurationSeconds
//   since we first saw it in its current form. Its renewTime is never compared with our wall clock, so
//   clock skew between nodes does not matter (client-go's "observed time"). The price: a replica that
//   starts while the Lease is held waits a full lease duration before it may take over a dead leader.
// - A Lease with an empty holderIdentity is free (that is how a leader releases it) and is taken at once.
// - Every write is an update carrying the resourceVersion we read: a 409 means another replica wrote
//   first, and we simply lost that round. Creating a missing Lease races the same way (409 AlreadyExists).
// - While leading, renewals update the Lease object from our last write without reading it first (one
//   request per retry period); on a 409 we fall back to read-then-decide.
// - The renew deadline is measured from the moment a successful renewal was SENT: another replica sees our
//   write only after it was sent, so it waits at least leaseDuration from then, while we stop leading
//   renewDeadline after it. With the defaults (15 s / 10 s) that leaves 5 s for delays and clock rates.
//   A timer enforces the deadline even while a renewal request hangs (it is aborted).
// - Seeing another holder in the Lease while we lead stops leading at once, without waiting for the
//   deadline: the Lease says someone else leads now.
// - After losing the Lease the elector becomes a candidate again: onStartedLeading may be called again
//   later, with a fresh signal. The work started for a term must stop when that term's signal aborts.
// - stop() aborts the signal and awaits onStoppedLeading before releasing the Lease (holder emptied,
//   leaseDurationSeconds 1, as client-go does), so a successor never overlaps with our work, and takes
//   over on its next retry instead of after a full lease duration.
// - A deleted Lease is created afresh by whoever gets there first (as in client-go). Deleting the Lease by
//   hand can therefore let a candidate lead up to one retry period before the old leader notices.
// - Nothing throws out of timers or callbacks; failures are logged once per distinct message.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { stretch } from '../lib/backoff.ts';
import { apiStatus, describeApiError, type KubeApi, type RequestOptions } from '../lib/kube/kube-api.ts';

export const DEFAULT_LEASE_NAME = 'sluice-controller-leader';
export const DEFAULT_LEASE_DURATION_MS = 15_000;
export const DEFAULT_RENEW_DEADLINE_MS = 10_000;
export const DEFAULT_RETRY_PERIOD_MS = 2_000;
/** Retry periods are stretched by up to this factor at random, so candidates do not retry in lockstep. */
const JITTER = 0.2;

/** The spec of a Lease as read: times are the API server's text (MicroTime, RFC 3339 with microseconds). */
export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: unknown;
  renewTime?: unknown;
  leaseTransitions?: number;
}

/** A Lease (coordination.k8s.io/v1) as this module handles it. */
export interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string> };
  spec?: LeaseSpec;
}

/** metav1.MicroTime as the API server writes it: RFC 3339 with microseconds. */
export function microTime(epochMs: number): string {
  return new Date(epochMs).toISOString().replace(/Z$/, '000Z');
}

/** The leader election fields of a Lease, as read from the API server (times are RFC 3339 text). */
export interface LeaseRecord {
  holderIdentity: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions: number;
}

/** A Lease record and when our (monotonic) clock first saw it in this form. */
export interface LeaseObservation {
  record: LeaseRecord;
  observedAt: number;
}

export type LeaseState =
  { kind: 'free' } | { kind: 'ours' } | { kind: 'held'; holder: string; expiresInMs: number };

/** The identity a replica writes as holder: its pod name and a random suffix, unique per process start. */
export function electionIdentity(podName: string = process.env.POD_NAME ?? hostname()): string {
  return `${podName || 'sluice-controller'}_${randomBytes(5).toString('hex')}`;
}

function timeText(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** The record of a Lease as read; tolerant of a Lease someone else wrote badly. */
export function leaseRecord(lease: Lease | undefined): LeaseRecord | undefined {
  if (!lease) return undefined;
  const spec: Record<keyof LeaseSpec, unknown> = { ...lease.spec } as Record<keyof LeaseSpec, unknown>;
  const duration = spec.leaseDurationSeconds;
  const transitions = spec.leaseTransitions;
  return {
    holderIdentity: typeof spec.holderIdentity === 'string' ? spec.holderIdentity : '',
    leaseDurationSeconds: typeof duration === 'number' ? duration : undefined,
    acquireTime: timeText(spec.acquireTime),
    renewTime: timeText(spec.renewTime),
    leaseTransitions:
      typeof transitions === 'number' && Number.isSafeInteger(transitions) && transitions >= 0
        ? transitions
        : 0,
  };
}

function sameRecord(a: LeaseRecord, b: LeaseRecord): boolean {
  return (
    a.holderIdentity === b.holderIdentity &&
    a.leaseDurationSeconds === b.leaseDurationSeconds &&
    a.acquireTime === b.acquireTime &&
    a.renewTime === b.renewTime &&
    a.leaseTransitions === b.leaseTransitions
  );
}

/** The new observation: the previous one's time is kept while the record is unchanged. */
export function observeLease(
  previous: LeaseObservation | undefined,
  record: LeaseRecord,
  now: number,
): LeaseObservation {
  if (previous && sameRecord(previous.record, record)) return previous;
  return { record, observedAt: now };
}

/**
 * Who may hold the Lease now, by our clock. `fallbackDurationMs` applies when the record has no usable
 * leaseDurationSeconds (the holder's own duration is used otherwise, as it promised to renew within it).
 */
export function leaseState(
  observation: LeaseObservation | undefined,
  identity: string,
  now: number,
  fallbackDurationMs: number,
): LeaseState {
  if (!observation) return { kind: 'free' };
  const { record, observedAt } = observation;
  if (record.holderIdentity === '') return { kind: 'free' };
  if (record.holderIdentity === identity) return { kind: 'ours' };
  const seconds = record.leaseDurationSeconds;
  const durationMs =
    seconds !== undefined && Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : fallbackDurationMs;
  const expiresInMs = observedAt + durationMs - now;
  return expiresInMs < 0 ? { kind: 'free' } : { kind: 'held', holder: record.holderIdentity, expiresInMs };
}

/**
 * The spec to write when we renew (already the holder) or take over (anyone else, or nobody, held it):
 * a takeover sets acquireTime and counts a transition; a renewal keeps both. Other fields are kept.
 */
export function nextLeaseSpec(
  current: LeaseSpec | undefined,
  identity: string,
  leaseDurationSeconds: number,
  wallNow: number,
): LeaseSpec {
  const now = microTime(wallNow);
  const spec = current ?? {};
  if (spec.holderIdentity === identity) {
    return { ...spec, leaseDurationSeconds, renewTime: now };
  }
  const transitions = leaseRecord({ spec })?.leaseTransitions ?? 0;
  return {
    ...spec,
    holderIdentity: identity,
    leaseDurationSeconds,
    acquireTime: now,
    renewTime: now,
    leaseTransitions: current ? transitions + 1 : 0,
  };
}

/** Checks the timings the way client-go does; a bad configuration is a startup error. */
export function checkTimings(leaseDurationMs: number, renewDeadlineMs: number, retryPeriodMs: number): void {
  if (!(retryPeriodMs > 0)) throw new RangeError('leader election: retry period must be positive');
  if (!(renewDeadlineMs > retryPeriodMs * (1 + JITTER))) {
    throw new RangeError(
      `leader election: renew deadline (${renewDeadlineMs} ms) must exceed ${1 + JITTER} x retry period (${retryPeriodMs} ms)`,
    );
  }
  if (!(leaseDurationMs > renewDeadlineMs)) {
    throw new RangeError(
      `leader election: lease duration (${leaseDurationMs} ms) must exceed the renew deadline (${renewDeadlineMs} ms)`,
    );
  }
  if (leaseDurationMs % 1000 !== 0) {
    throw new RangeError('leader election: lease duration must be whole seconds (the Lease stores seconds)');
  }
}

export interface LeaderElectorOptions {
  api: KubeApi;
  /** The control-plane namespace, where the Lease lives. */
  namespace: string;
  leaseName?: string;
  /** Holder identity, unique per process: see electionIdentity(). */
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** Called on becoming leader; the work it starts must stop when `signal` aborts. */
  onStartedLeading: (signal: AbortSignal) => void | Promise<void>;
  /** Called once per term when it ends (lease lost or stop()); stop() awaits it before releasing. */
  onStoppedLeading?: () => void | Promise<void>;
  /** Called when the observed holder changes (undefined: nobody holds the Lease). */
  onNewLeader?: (identity: string | undefined) => void;
  log: (message: string) => void;
  /** Monotonic milliseconds (tests); performance.now() by default. */
  now?: () => number;
}

export class LeaderElector {
  readonly identity: string;
  readonly #o: LeaderElectorOptions;
  readonly #leaseName: string;
  readonly #leaseDurationMs: number;
  readonly #renewDeadlineMs: number;
  readonly #retryPeriodMs: number;
  readonly #now: () => number;
  readonly #stopping = new AbortController();
  #loop: Promise<void> | undefined;
  #stopped: Promise<void> | undefined;
  /** The in-flight round; aborted when the renew deadline passes or on stop. */
  #round: AbortController | undefined;
  #observation: LeaseObservation | undefined;
  /** The Lease as returned by our last successful write (the base of fast-path renewals and release). */
  #ourLease: Lease | undefined;
  #term: AbortController | undefined;
  #termEnded: Promise<void> = Promise.resolve();
  #deadline: NodeJS.Timeout | undefined;
  #lastHolder: string | undefined;
  #lastError: string | undefined;

  constructor(options: LeaderElectorOptions) {
    this.#o = options;
    this.identity = options.identity;
    this.#leaseName = options.leaseName ?? DEFAULT_LEASE_NAME;
    this.#leaseDurationMs = options.leaseDurationMs ?? DEFAULT_LEASE_DURATION_MS;
    this.#renewDeadlineMs = options.renewDeadlineMs ?? DEFAULT_RENEW_DEADLINE_MS;
    this.#retryPeriodMs = options.retryPeriodMs ?? DEFAULT_RETRY_PERIOD_MS;
    checkTimings(this.#leaseDurationMs, this.#renewDeadlineMs, this.#retryPeriodMs);
    if (options.identity === '') throw new RangeError('leader election: identity must not be empty');
    this.#now = options.now ?? (() => performance.now());
  }

  get isLeader(): boolean {
    return this.#term !== undefined;
  }

  /** The holder last seen in the Lease (undefined: none, or not read yet). */
  get leader(): string | undefined {
    return this.#lastHolder;
  }

  /** Starts campaigning; returns at once. */
  start(): void {
    if (this.#loop || this.#stopping.signal.aborted) return;
    this.#loop = this.#run();
  }

  /**
   * Stops campaigning: ends the current term (aborts its signal and awaits onStoppedLeading), then
   * releases the Lease if we hold it, unless `release` is false. Never rejects.
   */
  stop(options: { release?: boolean } = {}): Promise<void> {
    this.#stopped ??= this.#shutdown(options.release ?? true);
    return this.#stopped;
  }

  async #shutdown(release: boolean): Promise<void> {
    this.#stopping.abort();
    this.#round?.abort();
    await this.#loop;
    this.#endTerm('stopping');
    await this.#termEnded;
    if (release) await this.#release();
  }

  async #run(): Promise<void> {
    const signal = this.#stopping.signal;
    while (!signal.aborted) {
      await this.#tryRound();
      const wait = stretch(this.#retryPeriodMs, JITTER);
      await sleep(wait, undefined, { signal }).catch(() => undefined);
    }
  }

  /** One acquire-or-renew round; never throws. */
  async #tryRound(): Promise<void> {
    const round = new AbortController();
    this.#round = round;
    const sentAt = this.#now();
    try {
      const held = await this.#acquireOrRenew(round.signal);
      // A deadline or stop that fired meanwhile already decided; a late success is picked up next round.
      if (round.signal.aborted) return;
      this.#lastError = undefined;
      if (held) this.#renewed(sentAt);
    } catch (error) {
      if (round.signal.aborted) return;
      const message = `lease ${this.#o.namespace}/${this.#leaseName}: ${describeApiError(error)}`;
      if (message !== this.#lastError) this.#o.log(`leader election: ${message}`);
      this.#lastError = message;
    } finally {
      if (this.#round === round) this.#round = undefined;
    }
  }

  #call(signal: AbortSignal): RequestOptions {
    // Each request gets at most half the renew deadline, so a hung one leaves time for another try.
    return { signal, timeoutMs: this.#renewDeadlineMs / 2 };
  }

  #leasesPath(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.#o.namespace}/leases`;
  }

  #read(options: RequestOptions): Promise<Lease> {
    return this.#o.api.request<Lease>('GET', `${this.#leasesPath()}/${this.#leaseName}`, options);
  }

  #replace(body: Lease, options: RequestOptions): Promise<Lease> {
    return this.#o.api.request<Lease>('PUT', `${this.#leasesPath()}/${this.#leaseName}`, {
      ...options,
      body,
    });
  }

  #observe(lease: Lease | undefined): void {
    const record = leaseRecord(lease);
    this.#observation = record && observeLease(this.#observation, record, this.#now());
    const holder = record?.holderIdentity === '' ? undefined : record?.holderIdentity;
    if (holder !== this.#lastHolder) {
      this.#lastHolder = holder;
      this.#o.log(`leader election: lease ${this.#leaseName} ${holder ? `held by ${holder}` : 'is free'}`);
      try {
        this.#o.onNewLeader?.(holder);
      } catch (error) {
        this.#o.log(`leader election: onNewLeader failed: ${describeApiError(error)}`);
      }
    }
  }

  /** True when we hold the Lease after this round. */
  async #acquireOrRenew(signal: AbortSignal): Promise<boolean> {
    const { namespace } = this.#o;
    const name = this.#leaseName;
    const seconds = this.#leaseDurationMs / 1000;

    if (this.isLeader && this.#ourLease) {
      try {
        const body = {
          ...this.#ourLease,
          spec: nextLeaseSpec(this.#ourLease.spec, this.identity, seconds, Date.now()),
        };
        return this.#wrote(await this.#replace(body, this.#call(signal)));
      } catch (error) {
        // 409: someone else wrote it; 404: someone deleted it. Either way, read and decide afresh.
        const status = apiStatus(error);
        if (status !== 409 && status !== 404) throw error;
      }
    }

    let current: Lease | undefined;
    try {
      current = await this.#read(this.#call(signal));
    } catch (error) {
      if (apiStatus(error) !== 404) throw error;
    }
    if (!current) {
      this.#observe(undefined);
      const body: Lease = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name, namespace, labels: { 'app.kubernetes.io/part-of': 'sluice' } },
        spec: nextLeaseSpec(undefined, this.identity, seconds, Date.now()),
      };
      try {
        return this.#wrote(
          await this.#o.api.request<Lease>('POST', this.#leasesPath(), { ...this.#call(signal), body }),
        );
      } catch (error) {
        if (apiStatus(error) === 409) return false;
        throw error;
      }
    }

    this.#observe(current);
    const state = leaseState(this.#observation, this.identity, this.#now(), this.#leaseDurationMs);
    if (state.kind === 'held') {
      this.#endTerm(`the lease is held by ${state.holder}`);
      return false;
    }
    const body = { ...current, spec: nextLeaseSpec(current.spec, this.identity, seconds, Date.now()) };
    try {
      return this.#wrote(await this.#replace(body, this.#call(signal)));
    } catch (error) {
      if (apiStatus(error) === 409) return false;
      throw error;
    }
  }

  #wrote(lease: Lease): true {
    this.#ourLease = lease;
    this.#observe(lease);
    return true;
  }

  /** A renewal sent at `sentAt` succeeded: lead (if not yet) and push the deadline out. */
  #renewed(sentAt: number): void {
    if (this.#stopping.signal.aborted) return;
    if (!this.#term) this.#beginTerm();
    clearTimeout(this.#deadline);
    const delay = Math.max(0, sentAt + this.#renewDeadlineMs - this.#now());
    this.#deadline = setTimeout(() => {
      this.#round?.abort();
      this.#endTerm(`could not renew the lease within ${this.#renewDeadlineMs / 1000} s`);
    }, delay);
    this.#deadline.unref();
  }

  #beginTerm(): void {
    const term = new AbortController();
    this.#term = term;
    this.#o.log(`leader election: ${this.identity} is now the leader`);
    try {
      const started = this.#o.onStartedLeading(term.signal);
      if (started instanceof Promise) {
        started.catch((error: unknown) =>
          this.#o.log(`leader election: onStartedLeading failed: ${describeApiError(error)}`),
        );
      }
    } catch (error) {
      this.#o.log(`leader election: onStartedLeading failed: ${describeApiError(error)}`);
    }
  }

  /** Ends the current term at once (no-op when not leading). */
  #endTerm(reason: string): void {
    const term = this.#term;
    if (!term) return;
    this.#term = undefined;
    clearTimeout(this.#deadline);
    this.#deadline = undefined;
    this.#o.log(`leader election: ${this.identity} stopped leading: ${reason}`);
    term.abort(new Error(`leadership lost: ${reason}`));
    const previous = this.#termEnded;
    this.#termEnded = (async () => {
      await previous;
      try {
        await this.#o.onStoppedLeading?.();
      } catch (error) {
        this.#o.log(`leader election: onStoppedLeading failed: ${describeApiError(error)}`);
      }
    })();
  }

  /** Empties the holder if the Lease is still ours (a 409 means it changed: read it and check again). */
  async #release(): Promise<void> {
    const { namespace } = this.#o;
    const name = this.#leaseName;
    let lease = this.#ourLease;
    for (let attempt = 0; attempt < 2 && lease; attempt++) {
      if (lease.spec?.holderIdentity !== this.identity) return;
      const now = microTime(Date.now());
      const body: Lease = {
        ...lease,
        spec: {
          ...lease.spec,
          holderIdentity: '',
          leaseDurationSeconds: 1,
          acquireTime: now,
          renewTime: now,
        },
      };
      try {
        this.#ourLease = await this.#replace(body, { timeoutMs: this.#renewDeadlineMs / 2 });
        this.#o.log(`leader election: ${this.identity} released lease ${namespace}/${name}`);
        return;
      } catch (error) {
        const status = apiStatus(error);
        if (status === 404) return;
        if (status !== 409) {
          this.#o.log(`leader election: releasing lease ${namespace}/${name}: ${describeApiError(error)}`);
          return;
        }
      }
      try {
        lease = await this.#read({ timeoutMs: this.#renewDeadlineMs / 2 });
      } catch (error) {
        if (apiStatus(error) !== 404) {
          this.#o.log(`leader election: releasing lease ${namespace}/${name}: ${describeApiError(error)}`);
        }
        return;
      }
    }
  }
}
