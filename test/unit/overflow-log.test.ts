import assert from 'node:assert/strict';
import type { LogFields } from '../../lib/json-log.ts';
import { OverflowLog } from '../../sidecar/overflow-log.ts';

describe('OverflowLog: one line per backend per interval, with the count in between', () => {
  it('logs the first overflow, counts the next ones, logs again after the interval', () => {
    const lines: LogFields[] = [];
    let now = 0;
    const log = new OverflowLog(
      { info: () => undefined, warn: (_m, f) => lines.push(f ?? {}), error: () => undefined },
      () => now,
      1000,
    );
    log.report('svc:80');
    log.report('svc:80');
    log.report('svc:80');
    log.report('other:80');
    now = 1000;
    log.report('svc:80');
    assert.deepEqual(
      lines.map((l) => [l.backend, l.overflowsSinceLastLine, l.cause]),
      [
        ['svc:80', 0, 'upstream_overflow'],
        ['other:80', 0, 'upstream_overflow'],
        ['svc:80', 2, 'upstream_overflow'],
      ],
    );
  });
});
