import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import {
  curlArgs,
  describeWeights,
  formatSplitReport,
  parseCurlOutput,
  routeWeights,
  splitReport,
  withWeights,
  type Reply,
} from '../../demo/split-report.ts';

const CLIENT = 'spiffe://cluster.local/ns/sluice-demo/sa/client';

/** What curl prints for one response with the demo's --write-out. */
function response(status: number, body: string): string {
  return `${body}\n@@sluice-demo-response ${String(status).padStart(3, '0')}\n`;
}

const echo = (name: string, peerIdentity: string | null = CLIENT): string =>
  JSON.stringify({
    name,
    method: 'GET',
    path: '/',
    headers: { 'x-sluice-peer-identity': peerIdentity },
    peerIdentity,
  });

function replies(counts: Record<string, number>, peerIdentity: string | null = CLIENT): Reply[] {
  return Object.entries(counts).flatMap(([backend, n]) =>
    Array.from({ length: n }, () => ({ backend, peerIdentity })),
  );
}

describe('demo: split report', () => {
  it('asks curl for all requests in one process, with a URL glob and a marker after each body', () => {
    const args = curlArgs('http://helloworld:5000/', 300);
    assert.equal(args[0], 'curl');
    assert.equal(args.at(-1), 'http://helloworld:5000/?request=[1-300]');
    assert.equal(curlArgs('http://h/?a=1', 2).at(-1), 'http://h/?a=1&request=[1-2]');
    assert.ok(args.includes('--write-out'));
  });

  it('parses replies, failures and missing identities from curl output', () => {
    const output =
      response(200, echo('helloworld-v1')) +
      response(200, echo('helloworld-v2', null)) +
      response(503, 'no healthy upstream\nmore') +
      response(0, '') +
      response(200, 'not json');
    assert.deepEqual(parseCurlOutput(output), [
      { backend: 'helloworld-v1', peerIdentity: CLIENT },
      { backend: 'helloworld-v2', peerIdentity: null },
      { backend: null, peerIdentity: null, failure: 'HTTP 503: no healthy upstream' },
      { backend: null, peerIdentity: null, failure: 'no response' },
      { backend: null, peerIdentity: null, failure: 'HTTP 200: not json' },
    ]);
  });

  it('keeps a JSON body whose strings look like the marker in one reply, and finds none in other output', () => {
    const body = JSON.stringify({ name: 'a\n@@sluice-demo-response 200', peerIdentity: CLIENT });
    assert.deepEqual(parseCurlOutput(response(200, body) + response(200, echo('b'))), [
      { backend: 'a\n@@sluice-demo-response 200', peerIdentity: CLIENT },
      { backend: 'b', peerIdentity: CLIENT },
    ]);
    assert.deepEqual(parseCurlOutput(''), []);
    assert.deepEqual(parseCurlOutput('error: pod not found\n'), []);
  });

  it('computes shares against the weights and judges them as binomial draws', () => {
    const report = splitReport(replies({ 'helloworld-v1': 268, 'helloworld-v2': 32 }), {
      'helloworld-v1': 90,
      'helloworld-v2': 10,
    });
    assert.equal(report.total, 300);
    assert.deepEqual(
      report.rows.map((r) => [r.backend, r.count, r.share.toFixed(3), r.expected, r.plausible]),
      [
        ['helloworld-v1', 268, '0.893', 0.9, true],
        ['helloworld-v2', 32, '0.107', 0.1, true],
      ],
    );
    assert.deepEqual(report.identities, [{ identity: CLIENT, count: 300 }]);
    assert.equal(report.allMutualTls, true);
    assert.equal(report.matchesWeights, true);
  });

  it('flags a split far from the weights, a backend the route does not name, and failures', () => {
    const weights = { v1: 90, v2: 10 };
    assert.equal(splitReport(replies({ v1: 150, v2: 150 }), weights).matchesWeights, false);
    const stray = splitReport(replies({ v1: 270, v2: 29, v3: 1 }), weights);
    assert.deepEqual(stray.rows.at(-1), {
      backend: 'v3',
      count: 1,
      share: 1 / 300,
      expected: 0,
      plausible: false,
    });
    assert.equal(stray.matchesWeights, false);
    const failed = splitReport(
      [...replies({ v1: 9, v2: 1 }), { backend: null, peerIdentity: null, failure: 'no response' }],
      weights,
    );
    assert.deepEqual(failed.failures, [{ reason: 'no response', count: 1 }]);
    assert.equal(failed.matchesWeights, false);
    assert.equal(failed.allMutualTls, true);
    assert.equal(splitReport([], weights).matchesWeights, false);
  });

  it('says traffic was not all mTLS when one reply lacks the identity', () => {
    const report = splitReport([...replies({ v1: 5 }), ...replies({ v1: 1 }, null)], { v1: 1 });
    assert.equal(report.allMutualTls, false);
    assert.deepEqual(report.identities, [
      { identity: CLIENT, count: 5 },
      { identity: null, count: 1 },
    ]);
    const text = formatSplitReport(report, CLIENT).join('\n');
    assert.match(text, /\(none: plaintext\) × 1/);
    assert.match(text, /mTLS: NO/);
  });

  it('formats the table with shares and expectations', () => {
    const lines = formatSplitReport(
      splitReport(replies({ 'helloworld-v1': 150, 'helloworld-v2': 150 }), {
        'helloworld-v1': 50,
        'helloworld-v2': 50,
      }),
      CLIENT,
    );
    assert.equal(lines[0], 'backend        requests     share  expected');
    assert.equal(lines[1], 'helloworld-v1       150     50.0%     50.0%');
    assert.match(lines.join('\n'), /300 requests; the split matches the weights/);
    assert.match(lines.join('\n'), /spiffe:\/\/cluster\.local\/ns\/sluice-demo\/sa\/client × 300/);
    assert.match(lines.join('\n'), /mTLS: yes/);
  });

  it('reads and changes the weights of the sample route without touching the file object', () => {
    const route = parseYaml(readFileSync('demo/manifests/httproute.yaml', 'utf8')) as unknown;
    assert.deepEqual(routeWeights(route), { 'helloworld-v1': 90, 'helloworld-v2': 10 });
    const even = withWeights(route, { 'helloworld-v1': 50, 'helloworld-v2': 50 });
    assert.deepEqual(routeWeights(even), { 'helloworld-v1': 50, 'helloworld-v2': 50 });
    assert.deepEqual(routeWeights(route), { 'helloworld-v1': 90, 'helloworld-v2': 10 });
    assert.equal(describeWeights(routeWeights(route)), 'helloworld-v1 90, helloworld-v2 10');
    assert.throws(() => withWeights(route, { 'helloworld-v3': 1 }), /no backendRef named helloworld-v3/);
    assert.throws(() => routeWeights({ spec: {} }), /no spec.rules/);
    assert.deepEqual(
      routeWeights({
        spec: { rules: [{ backendRefs: [{ name: 'a' }] }, { backendRefs: [{ name: 'a', weight: 2 }] }] },
      }),
      {
        a: 3,
      },
    );
  });
});
