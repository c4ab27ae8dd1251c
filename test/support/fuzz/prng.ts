// A small seeded random source for the fuzz tests (mulberry32): the same seed gives the same cases on every
// machine, so a failure printed with its seed can be replayed. Not for anything that needs real randomness.

export class Prng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max] (both included). */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }

  /** A fresh generator whose seed comes from this one: for independent sub-streams (one per connection). */
  fork(): Prng {
    return new Prng(Math.floor(this.next() * 4294967296));
  }

  /** `n` random bytes. */
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(this.next() * 256);
    return b;
  }

  /** A string of `n` characters taken from `alphabet`. */
  string(n: number, alphabet: string): string {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet.charAt(Math.floor(this.next() * alphabet.length));
    return s;
  }
}

/** The seed a fuzz run uses: SLUICE_FUZZ_SEED when set (decimal or 0x hex), else a fixed default. */
export function fuzzSeed(fallback = 0x5eed1): number {
  const raw = process.env.SLUICE_FUZZ_SEED;
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new Error(`SLUICE_FUZZ_SEED must be an integer in 0..2^32-1, not '${raw}'`);
  }
  return n;
}

/** A positive count from an environment variable, or the fallback. */
export function envCount(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, not '${raw}'`);
  return n;
}
