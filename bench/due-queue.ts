/**
 * The open loop's requests waiting for one of `cap` connections, kept as their intended send times: one
 * still waiting `giveUpMs` after it was due is given up without ever being built. (Building each as an
 * http.ClientRequest in an http.Agent queue, then destroying it, made the load generator the bound of what
 * it measured under overload: its lookups in the agent's queue grow with the queue.)
 */
export class DueQueue {
  readonly #due: number[] = [];
  #head = 0;
  #inFlight = 0;
  readonly #cap: number;
  readonly #giveUpMs: number | undefined;
  readonly #now: () => number;

  constructor(cap: number, giveUpMs: number | undefined, now: () => number) {
    this.#cap = cap;
    this.#giveUpMs = giveUpMs;
    this.#now = now;
  }

  push(due: number): void {
    this.#due.push(due);
  }

  /**
   * The due times to send now (each counts in flight until `finished`), in order; the stale ones met on the
   * way go to `gaveUp`.
   */
  take(send: (due: number) => void, gaveUp: (due: number) => void): void {
    while (this.#head < this.#due.length && this.#inFlight < this.#cap) {
      const due = this.#due[this.#head++]!;
      if (this.#giveUpMs !== undefined && this.#now() - due > this.#giveUpMs) {
        gaveUp(due);
        continue;
      }
      this.#inFlight++;
      send(due);
    }
    if (this.#head === this.#due.length) {
      this.#due.length = 0;
      this.#head = 0;
    }
  }

  /** One sent request has its outcome: its connection is free. */
  finished(): void {
    this.#inFlight--;
  }
}
