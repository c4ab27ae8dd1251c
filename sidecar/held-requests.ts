/**
 * The requests a proxy's upstream pools hold at once, across every endpoint and pool set: HTTP/1.1 ones
 * handed to a pool (running or queued) and open HTTP/2 streams. Kept as they start and end, so the bound
 * costs one comparison per request; one endpoint's own bounds held at once cost more memory than the proxy
 * container has (docs/security.md).
 */
export class HeldRequests {
  /** Requests held at once (0: no bound). */
  readonly max: number;
  #count = 0;

  constructor(max: number) {
    this.max = max;
  }

  get count(): number {
    return this.#count;
  }

  /** Whether one more request may be held. */
  hasRoom(): boolean {
    return this.max <= 0 || this.#count < this.max;
  }

  add(delta: 1 | -1): void {
    this.#count += delta;
  }
}
