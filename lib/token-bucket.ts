/**
 * A token bucket of `qps` tokens a second, holding at most `burst`. `reserve()` takes a token and says how
 * long to wait for it (tokens may go negative: callers queue); `tryTake()` takes one only if there is one
 * and otherwise says how long until there will be (callers are turned away).
 */
export class TokenBucket {
  readonly #qps: number;
  readonly #burst: number;
  readonly #now: () => number;
  #tokens: number;
  #last: number;

  constructor(qps: number, burst: number, now: () => number = () => performance.now()) {
    if (!(qps > 0) || !(burst >= 1))
      throw new RangeError('rate limit: qps must be positive, burst at least 1');
    this.#qps = qps;
    this.#burst = burst;
    this.#now = now;
    this.#tokens = burst;
    this.#last = now();
  }

  #refill(): void {
    const now = this.#now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) * this.#qps) / 1000);
    this.#last = now;
  }

  reserve(): number {
    this.#refill();
    this.#tokens -= 1;
    return this.#tokens >= 0 ? 0 : (-this.#tokens * 1000) / this.#qps;
  }

  /** Takes `count` tokens whatever there are (a penalty: the bucket may go negative and refill from there). */
  charge(count: number): void {
    this.#refill();
    this.#tokens = Math.max(this.#tokens - count, -this.#burst);
  }

  /** True when the bucket is full again (nothing remembered about its caller). */
  idle(): boolean {
    this.#refill();
    return this.#tokens >= this.#burst;
  }

  tryTake(): number {
    this.#refill();
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    return ((1 - this.#tokens) * 1000) / this.#qps;
  }
}
