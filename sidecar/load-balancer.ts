import { isEligible, type Endpoint } from '../mesh-model/endpoints.ts';

/**
 * Per-endpoint load statistics, kept across config reloads (keyed by address:port), for
 * power-of-two-choices with peak-EWMA latency: each pick compares two random endpoints by
 * ewma_latency × (in_flight + 1). Peak EWMA jumps up at once on a slow response and decays smoothly, so
 * a degrading endpoint sheds load quickly; in-flight requests make the estimate react before responses
 * arrive. An endpoint whose connection failed sits out a short backoff.
 */
export interface EndpointStats {
  ewmaNs: number;
  lastUpdate: number;
  inFlight: number;
  failedUntil: number;
  /** When a pick last found it eligible as an unreachable node's endpoint (isEligible); -Infinity: never. */
  nodeUnreachableAt: number;
  /** Dropped by retain(): no longer in the table. */
  dropped?: boolean;
}

const DECAY_NS = 10e9; // time constant: 10 s
const INITIAL_NS = 1e6; // unknown endpoints start at 1 ms, so new ones get tried soon
const FAILURE_BACKOFF_MS = 5000;
/**
 * A terminating endpoint whose connection failed does not come back (its pod is shutting down), and once
 * its pod's network is gone a connect to it waits out the whole connect timeout: it sits out this long and
 * is no last resort.
 */
const TERMINATING_FAILURE_BACKOFF_MS = 60_000;
/**
 * An endpoint of an unreachable node whose pod then turns not ready for its kubelet too stays a last resort
 * this long, while nothing else is eligible: a restarted kubelet reports every container not ready until
 * its first readiness probe, which waits up to a probe period (10 s by default) (ADR 0021).
 */
const NODE_UNREACHABLE_GRACE_MS = 15_000;
const scratch: Endpoint[] = [];
const lingering: Endpoint[] = [];

export interface LoadBalancerOptions {
  /** Uniform in [0, 1), like Math.random (the default); tests pass a seeded or scripted source. */
  readonly random?: () => number;
}

export class LoadBalancer {
  readonly #stats = new Map<string, EndpointStats>();
  /** The same, by Endpoint object: found without building the key on every request. */
  readonly #byObject = new WeakMap<Endpoint, EndpointStats>();
  readonly #random: () => number;

  constructor(options: LoadBalancerOptions = {}) {
    this.#random = options.random ?? Math.random;
  }

  stats(ep: Endpoint): EndpointStats {
    const cached = this.#byObject.get(ep);
    // retain() may have dropped the endpoint's statistics since: then they start over.
    if (cached && !cached.dropped) return cached;
    const key = `${ep.address}:${ep.port}`;
    let s = this.#stats.get(key);
    if (!s) {
      s = { ewmaNs: INITIAL_NS, lastUpdate: 0, inFlight: 0, failedUntil: 0, nodeUnreachableAt: -Infinity };
      this.#stats.set(key, s);
    }
    this.#byObject.set(ep, s);
    return s;
  }

  #cost(ep: Endpoint): number {
    const s = this.stats(ep);
    return s.ewmaNs * (s.inFlight + 1);
  }

  /**
   * Picks among the endpoints that take new requests (ready ones; when none is ready, the terminating ones
   * still serving and those of unreachable nodes: isEligible) not in `exclude`, preferring those not in
   * failure backoff (a terminating one in backoff is not used at all); when none is left, one that was
   * picked as an unreachable node's within NODE_UNREACHABLE_GRACE_MS; undefined when there is none either.
   */
  pick(endpoints: readonly Endpoint[], exclude?: ReadonlySet<Endpoint>, at?: number): Endpoint | undefined {
    const first = endpoints[0];
    if (
      endpoints.length === 1 &&
      first!.ready &&
      (exclude === undefined || exclude.size === 0 || !exclude.has(first!))
    ) {
      // The common case of one ready endpoint (and every inbound request): no choice to make, and no clock
      // read or scratch array reset (the profile showed both at 1,000 rps).
      return first;
    }
    const now = at ?? Date.now();
    const healthy = scratch;
    if (healthy.length > 0) healthy.length = 0;
    if (lingering.length > 0) lingering.length = 0;
    let fallback: Endpoint | undefined;
    const anyReady = endpoints.some((ep) => ep.ready);
    for (const ep of endpoints) {
      if (exclude?.has(ep)) continue;
      if (!isEligible(ep, anyReady)) {
        if (
          !anyReady &&
          !ep.terminating &&
          now - this.stats(ep).nodeUnreachableAt < NODE_UNREACHABLE_GRACE_MS
        )
          lingering.push(ep);
        continue;
      }
      const s = this.stats(ep);
      if (!ep.ready && !ep.terminating) s.nodeUnreachableAt = now;
      if (s.failedUntil <= now) healthy.push(ep);
      else if (!ep.terminating) fallback ??= ep;
    }
    if (healthy.length === 0 && fallback === undefined) return this.#choose(lingering);
    return healthy.length === 0 ? fallback : this.#choose(healthy);
  }

  /** Power of two choices: the cheaper of two distinct random ones. */
  #choose(list: readonly Endpoint[]): Endpoint | undefined {
    const n = list.length;
    if (n <= 1) return list[0];
    const i = Math.floor(this.#random() * n);
    let j = Math.floor(this.#random() * (n - 1));
    if (j >= i) j++;
    const a = list[i]!;
    const b = list[j]!;
    return this.#cost(a) <= this.#cost(b) ? a : b;
  }

  start(ep: Endpoint): EndpointStats {
    const s = this.stats(ep);
    s.inFlight++;
    return s;
  }

  /** Records a finished request's latency (peak EWMA). */
  finish(s: EndpointStats, latencyNs: number, now = performance.now()): void {
    s.inFlight = Math.max(0, s.inFlight - 1);
    const elapsedNs = s.lastUpdate === 0 ? DECAY_NS : (now - s.lastUpdate) * 1e6;
    s.lastUpdate = now;
    if (latencyNs > s.ewmaNs) s.ewmaNs = latencyNs;
    else {
      const w = Math.exp(-elapsedNs / DECAY_NS);
      s.ewmaNs = s.ewmaNs * w + latencyNs * (1 - w);
    }
  }

  /** A connect failure: the request is retried elsewhere and this endpoint sits out a backoff. */
  failed(s: EndpointStats, terminating = false, now = Date.now()): void {
    s.inFlight = Math.max(0, s.inFlight - 1);
    s.failedUntil = now + (terminating ? TERMINATING_FAILURE_BACKOFF_MS : FAILURE_BACKOFF_MS);
  }

  /** Drops statistics of endpoints that no longer exist. */
  retain(live: Iterable<Endpoint>): void {
    const keep = new Set<string>();
    for (const ep of live) keep.add(`${ep.address}:${ep.port}`);
    for (const [key, s] of this.#stats)
      if (!keep.has(key)) {
        s.dropped = true;
        this.#stats.delete(key);
      }
  }
}
