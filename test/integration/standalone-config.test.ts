import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { ProxyView } from '../../mesh-model/proxy-view.ts';
import { StandaloneConfigSource } from '../../sidecar/config-source.ts';
import { serviceWithEndpoints } from '../support/mesh-manifests.ts';
import { waitFor } from '../support/wait-for.ts';

describe('standalone manifests source', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'sluice-standalone-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** Writes mesh.yaml the way a config change lands: a new file renamed over the old one. */
  const replace = (services: number): void => {
    const objects = Array.from({ length: services }, (_, i) =>
      serviceWithEndpoints('shop', `s${i}`, `10.96.0.${i + 10}`, [[80, 8080]], []),
    ).flat();
    writeFileSync(join(dir, 'mesh.tmp'), objects.map((o) => stringify(o)).join('---\n'));
    renameSync(join(dir, 'mesh.tmp'), join(dir, 'manifests', 'mesh.yaml'));
  };

  it('sees every atomic replacement of a file through the watch, not the poll', async () => {
    const manifests = join(dir, 'manifests');
    mkdirSync(manifests);
    replace(1);
    const views: ProxyView[] = [];
    const errors: Error[] = [];
    const source = new StandaloneConfigSource({
      dir: manifests,
      namespace: 'shop',
      trustDomain: 'cluster.local',
      debounceMs: 5,
      pollMs: 3_600_000, // an hour: only the watch can deliver the changes in time
    });
    source.start(
      (view) => views.push(view),
      (err) => errors.push(err),
    );
    try {
      assert.equal(views.length, 1);
      for (let n = 2; n <= 4; n++) {
        replace(n);
        await waitFor(`the view with ${n} services`, () => views.at(-1)!.byDestination.size >= n, {
          detail: () => errors.map((e) => e.message).join('\n'),
        });
      }
    } finally {
      source.stop();
    }
  });
});
