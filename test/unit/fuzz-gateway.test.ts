import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import type { K8sObject } from '../../mesh-model/k8s-objects.ts';
import { buildGatewayView, planGatewayRequest } from '../../mesh-model/gateway-view.ts';
import { computeGatewayStatuses } from '../../mesh-model/gateway-status.ts';
import { envCount, fuzzSeed, Prng } from '../support/fuzz/prng.ts';
import { GOLDEN_GATEWAY_DIR, goldenGatewayCaseNames } from '../support/golden-gateway.ts';

// The golden gateway inputs with random fields replaced by junk (null, numbers, lists, odd strings), as
// offline files can hold: the translation never throws, the statuses stay well-formed and every listed
// listener plans a request. The controller runs it on whatever the API server returns.

const seed = fuzzSeed();
const cases = envCount('SLUICE_FUZZ_GATEWAYS', 400);
const JUNK: unknown[] = [
  null,
  0,
  -1,
  70000,
  'x',
  '',
  '*',
  '*.',
  'A.Example.COM',
  [],
  {},
  true,
  [null],
  { a: 1 },
];

/** Every [container, key] in a JSON tree. */
function slots(
  value: unknown,
  out: [Record<string, unknown> | unknown[], string | number][] = [],
): typeof out {
  if (Array.isArray(value)) {
    value.forEach((v, i) => {
      out.push([value, i]);
      slots(v, out);
    });
  } else if (typeof value === 'object' && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      out.push([value as Record<string, unknown>, k]);
      slots(v, out);
    }
  }
  return out;
}

describe(`fuzz: gateway translation on junk (seed ${seed}, SLUICE_FUZZ_SEED to replay)`, () => {
  it(`${cases} mutated inputs: no exception, conditions well-formed, plans for every port`, () => {
    const prng = new Prng(seed);
    const inputs = goldenGatewayCaseNames().map(
      (name) =>
        parse(readFileSync(join(GOLDEN_GATEWAY_DIR, `${name}.in.yaml`), 'utf8')) as {
          gateway: string;
          manifests: K8sObject[];
        },
    );
    for (let i = 0; i < cases; i++) {
      const input = prng.pick(inputs);
      const objects = structuredClone(input.manifests);
      const all = slots(objects);
      for (let m = prng.int(1, 4); m > 0; m--) {
        const [container, key] = prng.pick(all);
        (container as Record<string | number, unknown>)[key] = structuredClone(prng.pick(JUNK));
      }
      const where = `case ${i}: ${JSON.stringify(objects).slice(0, 3000)}`;
      let statuses: ReturnType<typeof computeGatewayStatuses>;
      try {
        statuses = computeGatewayStatuses(objects);
      } catch (error) {
        assert.fail(`${where}: computeGatewayStatuses threw ${(error as Error).stack}`);
      }
      for (const g of statuses.gateways.values()) {
        for (const c of [...g.conditions, ...g.listeners.flatMap((l) => l.conditions)]) {
          assert.ok(['True', 'False'].includes(c.status) && /^[A-Za-z]\w*$/.test(c.reason), where);
        }
      }
      const [namespace, name] = input.gateway.split('/') as [string, string];
      try {
        const view = buildGatewayView(objects, namespace, name, 'td');
        for (const port of view?.ports.keys() ?? []) {
          const p = planGatewayRequest(
            view!,
            port,
            { method: 'GET', path: '/a', query: '', scheme: 'http', authority: 'a.example.com', headers: {} },
            0.5,
          );
          assert.ok(p.kind === 'forward' || (p.status >= 300 && p.status <= 599), where);
        }
      } catch (error) {
        if (error instanceof assert.AssertionError) throw error;
        assert.fail(`${where}: view or plan threw ${(error as Error).stack}`);
      }
    }
  });
});
