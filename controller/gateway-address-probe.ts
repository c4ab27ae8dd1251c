// Before a Gateway is reported Programmed, its advertised address must accept connections on every
// listener port. A Ready pod is not enough: kube-proxy programs the Service's endpoint later (up to 0.74 s
// measured on the local cluster, seconds under load), and a client that connects in between is refused; a
// gRPC client then backs off (1 s, 1.6x) and may not recover within its caller's window (ADR 0010,
// amendment 2026-12-04).
import net from 'node:net';
import { hostText } from '../lib/host-text.ts';

/** What the controller knows about a Gateway's address, from its own connections. */
export type AddressCheck =
  | { readonly state: 'answering' }
  /** Still trying; detail says what the last attempt got. */
  | { readonly state: 'waiting'; readonly detail: string }
  /** Gave up after the deadline (e.g. a NetworkPolicy keeps the controller out): not verified. */
  | { readonly state: 'unverified'; readonly detail: string };

const CONNECT_TIMEOUT_MS = 1000;

/** One TCP connect: undefined when it connected, else why not (an error code). */
function tcpConnect(host: string, port: number, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (why: string | undefined): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(why);
    };
    const timer = setTimeout(() => done('ETIMEDOUT'), timeoutMs);
    socket.once('connect', () => done(undefined));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
  });
}

export interface AddressProbeOptions {
  /** Called when a check changes state (the status loop recomputes). */
  readonly onChange: () => void;
  /** Between rounds of attempts (250 ms). */
  readonly intervalMs?: number;
  /** After this long without an answer the check ends `unverified` (30 s). */
  readonly giveUpMs?: number;
}

interface Entry {
  readonly target: string;
  check: AddressCheck;
}

/** Per Gateway (`namespace/name`): connects to address:port for each port until all answer once. */
export class GatewayAddressProbes {
  readonly #o: AddressProbeOptions;
  readonly #entries = new Map<string, Entry>();
  #stopped = false;

  constructor(options: AddressProbeOptions) {
    this.#o = options;
  }

  /** The check of `key` for this address and these ports; a new target starts a new check. */
  check(key: string, address: string, ports: readonly number[]): AddressCheck {
    const target = `${address} ${[...ports].sort((a, b) => a - b).join(',')}`;
    const current = this.#entries.get(key);
    if (current?.target === target) return current.check;
    const entry: Entry = { target, check: { state: 'waiting', detail: 'not tried yet' } };
    this.#entries.set(key, entry);
    void this.#probe(key, entry, address, ports);
    return entry.check;
  }

  /** No ready pod or no address: the next check starts from scratch. */
  forget(key: string): void {
    this.#entries.delete(key);
  }

  /** Drops the checks of Gateways not in `keys`. */
  retain(keys: ReadonlySet<string>): void {
    for (const key of this.#entries.keys()) if (!keys.has(key)) this.#entries.delete(key);
  }

  stop(): void {
    this.#stopped = true;
    this.#entries.clear();
  }

  async #probe(key: string, entry: Entry, address: string, ports: readonly number[]): Promise<void> {
    const deadline = performance.now() + (this.#o.giveUpMs ?? 30_000);
    const live = (): boolean => !this.#stopped && this.#entries.get(key) === entry;
    for (;;) {
      let failure: string | undefined;
      for (const port of ports) {
        const why = await tcpConnect(address, port, CONNECT_TIMEOUT_MS);
        if (why !== undefined) {
          failure = `${hostText(address)}:${port}: ${why}`;
          break;
        }
      }
      if (!live()) return;
      if (failure === undefined) return this.#settle(entry, { state: 'answering' });
      if (performance.now() >= deadline) return this.#settle(entry, { state: 'unverified', detail: failure });
      entry.check = { state: 'waiting', detail: failure };
      await new Promise((resolve) => setTimeout(resolve, this.#o.intervalMs ?? 250));
      if (!live()) return;
    }
  }

  #settle(entry: Entry, check: AddressCheck): void {
    entry.check = check;
    this.#o.onChange();
  }
}
