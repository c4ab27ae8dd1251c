// What the certificate endpoint checks before it spends anything on a request (issue 13, point 8): a
// bearer token that looks like a service-account token minted for the mesh (shape, audience, expiry, read
// without verifying the signature: only the TokenReview decides who the caller is), then a rate limit per
// source address, then a TokenReview that is cached for a short time and counted against a global budget
// that exists only to protect the API server. A source whose tokens fail review pays extra, so a noisy
// source slows itself down and cannot spend the budget valid callers need.
import { createHash } from 'node:crypto';
import { TokenBucket } from '../lib/token-bucket.ts';
import { isRecord } from '../lib/is-record.ts';
import {
  MAX_TOKEN_BYTES,
  ReviewBudgetExhausted,
  type TokenReviewer,
  type TokenReviewResult,
} from './workload-ca.ts';

const BASE64URL = /^[A-Za-z0-9_-]+$/;

/**
 * Why `token` cannot be a service-account token for `audience` at `nowMs` (Unix ms), or undefined with the
 * expiry it claims. The claims are not verified here: this only keeps junk from costing a TokenReview.
 */
export function tokenShape(
  token: string,
  audience: string,
  nowMs: number,
): { expiresAtMs: number } | { problem: string } {
  if (token.length > MAX_TOKEN_BYTES) return { problem: `token is larger than ${MAX_TOKEN_BYTES} bytes` };
  const parts = token.split('.');
  if (parts.length !== 3 || !parts.every((p) => BASE64URL.test(p))) {
    return { problem: 'token is not a JWT (three base64url parts)' };
  }
  const json = (part: string): unknown => {
    try {
      return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    } catch {
      return undefined;
    }
  };
  const header = json(parts[0]!);
  const claims = json(parts[1]!);
  if (!isRecord(header) || typeof header.alg !== 'string' || header.alg.toLowerCase() === 'none') {
    return { problem: 'token header is not a signed JWT header' };
  }
  if (!isRecord(claims)) return { problem: 'token claims are not a JSON object' };
  const aud = typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud : [];
  if (!aud.includes(audience)) return { problem: `token is not for audience ${JSON.stringify(audience)}` };
  if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) {
    return { problem: 'token has no expiry (exp)' };
  }
  const expiresAtMs = claims.exp * 1000;
  if (expiresAtMs <= nowMs) return { problem: 'token has expired' };
  return { expiresAtMs };
}

/** The address a rate limit is keyed on: IPv4-mapped IPv6 as plain IPv4, zone dropped. */
export function sourceKey(address: string | undefined): string {
  if (address === undefined) return 'unknown';
  const a = address.toLowerCase().replace(/%.*$/, '');
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice('::ffff:'.length) : a;
}

export interface RateOptions {
  readonly qps: number;
  readonly burst: number;
}

/** A token bucket per key, at most maxKeys of them (the least recently used one goes first). */
export class KeyedLimiter {
  readonly #rate: RateOptions;
  readonly #maxKeys: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, TokenBucket>();

  constructor(rate: RateOptions, maxKeys: number, now: () => number) {
    this.#rate = rate;
    this.#maxKeys = maxKeys;
    this.#now = now;
  }

  #bucket(key: string): TokenBucket {
    let bucket = this.#buckets.get(key);
    if (bucket) {
      this.#buckets.delete(key);
    } else {
      if (this.#buckets.size >= this.#maxKeys) this.#evict();
      bucket = new TokenBucket(this.#rate.qps, this.#rate.burst, this.#now);
    }
    this.#buckets.set(key, bucket);
    return bucket;
  }

  /** Drops full buckets (they remember nothing); if none is full, the least recently used one. */
  #evict(): void {
    for (const [key, bucket] of this.#buckets) if (bucket.idle()) this.#buckets.delete(key);
    if (this.#buckets.size >= this.#maxKeys) {
      const oldest = this.#buckets.keys().next().value;
      if (oldest !== undefined) this.#buckets.delete(oldest);
    }
  }

  /** 0 if a token was taken, else milliseconds until there is one. */
  tryTake(key: string): number {
    return this.#bucket(key).tryTake();
  }

  charge(key: string, count: number): void {
    this.#bucket(key).charge(count);
  }

  get size(): number {
    return this.#buckets.size;
  }
}

export interface CachedReviewerOptions {
  readonly reviewer: TokenReviewer;
  /** TokenReviews per second sent to the API server (and burst); cached answers cost nothing. */
  readonly budget: RateOptions;
  /** How long an answer is reused for the same token; default 10 s (the endpoint refuses expired tokens
   * before asking, so a cached answer outlives its token by at most this). */
  readonly ttlMs?: number;
  readonly maxEntries?: number;
  /** Monotonic ms for the budget and the cache. */
  readonly now: () => number;
}

interface CacheEntry {
  readonly result: Promise<TokenReviewResult>;
  readonly expiresAt: number;
}

/**
 * A TokenReviewer that reuses an answer for the same token for a short time (a pod retrying, or renewing
 * its certificate and config stream together, costs one review) and spends the global budget only on
 * reviews it really sends. Answers that failed (API errors) are not kept.
 */
export class CachedTokenReviewer implements TokenReviewer {
  readonly #o: CachedReviewerOptions;
  readonly #budget: TokenBucket;
  readonly #cache = new Map<string, CacheEntry>();
  reviews = 0;

  constructor(options: CachedReviewerOptions) {
    this.#o = options;
    this.#budget = new TokenBucket(options.budget.qps, options.budget.burst, options.now);
  }

  review(token: string, audiences: readonly string[]): Promise<TokenReviewResult> {
    const now = this.#o.now();
    const key = createHash('sha256')
      .update(JSON.stringify([token, audiences]))
      .digest('base64');
    const hit = this.#cache.get(key);
    if (hit && hit.expiresAt > now) return hit.result;
    if (hit) this.#cache.delete(key);
    const wait = this.#budget.tryTake();
    if (wait > 0) return Promise.reject(new ReviewBudgetExhausted(wait));
    this.reviews++;
    const result = this.#o.reviewer.review(token, audiences);
    const maxEntries = this.#o.maxEntries ?? 10_000;
    if (this.#cache.size >= maxEntries) {
      for (const [k, entry] of this.#cache) if (entry.expiresAt <= now) this.#cache.delete(k);
      if (this.#cache.size >= maxEntries) this.#cache.delete(this.#cache.keys().next().value!);
    }
    this.#cache.set(key, { result, expiresAt: now + (this.#o.ttlMs ?? 10_000) });
    result.catch(() => {
      if (this.#cache.get(key)?.result === result) this.#cache.delete(key);
    });
    return result;
  }
}
