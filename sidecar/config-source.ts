import { watch, type FSWatcher } from 'node:fs';
import { parseManifests, readManifestTexts } from '../io/manifest-files.ts';
import type { K8sObject } from '../mesh-model/k8s-objects.ts';
import { buildProxyView, type ProxyView } from '../mesh-model/proxy-view.ts';

/**
 * Where a proxy's configuration comes from. Each source turns its input into the same ProxyView with the
 * same pure translation; the proxy swaps views atomically, so a reload never drops a connection.
 * Sources: standalone manifests on disk (this file); the controller's stream (controller-config-source.ts).
 */
export interface ConfigSource<V = ProxyView> {
  readonly name: string;
  start(onView: (view: V) => void, onError: (err: Error) => void): void;
  stop(): void;
  /** For /config_dump: the source's connection state, if it has one. */
  readonly state?: unknown;
}

/** Objects → what a proxy serves; a sidecar's ProxyView unless said otherwise (the gateway's view). */
export type ViewBuilder<V> = (objects: readonly K8sObject[], namespace: string, trustDomain: string) => V;

export const proxyViewBuilder: ViewBuilder<ProxyView> = buildProxyView;

export interface StandaloneOptions<V = ProxyView> {
  dir: string;
  namespace: string;
  trustDomain: string;
  /** Default: buildProxyView. */
  build?: ViewBuilder<V>;
  debounceMs?: number;
  pollMs?: number;
}

/**
 * Builds the view from Kubernetes manifests in a directory (Services, EndpointSlices, Pods, HTTPRoutes,
 * GRPCRoutes) and rebuilds it when files change. A broken edit keeps the last good view and reports.
 */
export class StandaloneConfigSource<V = ProxyView> implements ConfigSource<V> {
  readonly name = 'manifests';
  readonly #o: StandaloneOptions<V>;
  readonly #watchers: FSWatcher[] = [];
  #timer: NodeJS.Timeout | undefined;
  #poll: NodeJS.Timeout | undefined;
  #lastText = '';

  constructor(options: StandaloneOptions<V>) {
    this.#o = options;
  }

  start(onView: (view: V) => void, onError: (err: Error) => void): void {
    const build = this.#o.build ?? (proxyViewBuilder as unknown as ViewBuilder<V>);
    const load = (): void => {
      try {
        // Compare raw file contents first: an unchanged directory (every poll, most watch events) is not parsed.
        const files = readManifestTexts([this.#o.dir]);
        const snapshot = files.map((f) => `${f.file}\0${f.text}`).join('\0');
        if (snapshot === this.#lastText) return;
        this.#lastText = snapshot; // a broken edit is reported once, not on every poll
        const objects = files.flatMap(({ file, text }) => parseManifests(text, file));
        onView(build(objects, this.#o.namespace, this.#o.trustDomain));
      } catch (err) {
        onError(err instanceof Error ? err : new Error(String(err)));
      }
    };
    load();
    const schedule = (): void => {
      clearTimeout(this.#timer);
      this.#timer = setTimeout(load, this.#o.debounceMs ?? 100);
    };
    // Node's recursive watch on Linux follows the files it found by inode and misses a file replaced by a
    // rename (an atomic write, a ConfigMap's ..data swap) after the first time; a plain watch of the
    // directory sees those. The recursive one covers edits in subdirectories.
    for (const recursive of [false, true]) {
      try {
        const watcher = watch(this.#o.dir, { recursive }, schedule);
        watcher.on('error', () => undefined);
        this.#watchers.push(watcher);
      } catch {
        // fs.watch is best effort (e.g. some network filesystems); the poll below still picks changes up.
      }
    }
    this.#poll = setInterval(load, this.#o.pollMs ?? 5000);
    this.#poll.unref();
  }

  stop(): void {
    for (const watcher of this.#watchers.splice(0)) watcher.close();
    clearTimeout(this.#timer);
    clearInterval(this.#poll);
  }
}
