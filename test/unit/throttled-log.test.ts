import assert from 'node:assert/strict';
import type { LogFields } from '../../lib/json-log.ts';
import { ThrottledLog } from '../../sidecar/throttled-log.ts';

describe('ThrottledLog: one line per message and backend per interval, with the count in between', () => {
  it('logs the first, counts the next ones, logs again after the interval', () => {
    const lines: [string, LogFields][] = [];
    let now = 0;
    const log = new ThrottledLog(
      { info: () => undefined, warn: (m, f) => lines.push([m, f ?? {}]), error: () => undefined },
      () => now,
      1000,
    );
    const overflow = (backend: string) =>
      log.warn('upstream overflow: 503', backend, { cause: 'upstream_overflow' });
    overflow('svc:80');
    overflow('svc:80');
    log.warn('request cancelled by the client', 'svc:80', { attempts: 1 });
    overflow('svc:80');
    overflow('other:80');
    now = 1000;
    overflow('svc:80');
    assert.deepEqual(
      lines.map(([m, f]) => [m, f.backend, f.sinceLastLine, f.cause ?? f.attempts]),
      [
        ['upstream overflow: 503', 'svc:80', 0, 'upstream_overflow'],
        ['request cancelled by the client', 'svc:80', 0, 1],
        ['upstream overflow: 503', 'other:80', 0, 'upstream_overflow'],
        ['upstream overflow: 503', 'svc:80', 2, 'upstream_overflow'],
      ],
    );
  });
});
