import assert from 'node:assert/strict';
import type { Endpoint } from '../../../mesh-model/endpoints.ts';
import type { LogFields, Logger } from '../../../lib/json-log.ts';
import { NodeUnreachableNotice } from '../../../sidecar/node-unreachable-notice.ts';

const ep = (state: Partial<Endpoint>): Endpoint => ({
  address: '10.0.0.1',
  port: 8080,
  ready: false,
  serving: false,
  terminating: false,
  identity: undefined,
  pod: undefined,
  ...state,
});

describe('node-unreachable notice', () => {
  it('logs once per change which Services send to pods of unreachable nodes, and when none does', () => {
    const lines: [string, string, LogFields | undefined][] = [];
    const log: Logger = {
      info: (msg, fields) => lines.push(['info', msg, fields]),
      warn: (msg, fields) => lines.push(['warn', msg, fields]),
      error: (msg, fields) => lines.push(['error', msg, fields]),
    };
    const notice = new NodeUnreachableNotice(log);
    const ready = new Map([['a/svc:80', [ep({ ready: true, serving: true, kubeletReady: true })]]]);
    const unreachable = new Map([['a/svc:80', [ep({ kubeletReady: true })]]]);
    notice.update(ready);
    notice.update(unreachable);
    notice.update(unreachable);
    notice.update(ready);
    assert.deepEqual(
      lines.map(([level, , fields]) => [level, fields]),
      [
        ['warn', { services: ['a/svc:80'] }],
        ['info', { services: ['a/svc:80'] }],
      ],
    );
  });
});
