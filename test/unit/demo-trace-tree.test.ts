// The demo's printout of a Jaeger trace, and the chain check it and the e2e test use.
import assert from 'node:assert/strict';
import {
  chainProblem,
  formatTraceTree,
  STOREFRONT_CHAIN,
  type JaegerSpan,
  type JaegerTrace,
} from '../../demo/trace-tree.ts';

function span(
  id: string,
  parent: string | undefined,
  process: string,
  kind: string,
  start: number,
  duration: number,
  tags: Record<string, unknown> = {},
): JaegerSpan {
  return {
    traceID: 't1',
    spanID: id,
    operationName: 'GET',
    references: parent ? [{ refType: 'CHILD_OF', spanID: parent }] : [],
    startTime: 1_000_000 + start,
    duration,
    tags: Object.entries({ 'span.kind': kind, ...tags }).map(([key, value]) => ({ key, value })),
    processID: process,
  };
}

const TRACE: JaegerTrace = {
  traceID: 't1',
  processes: {
    p1: { serviceName: 'storefront-sluice' },
    p2: { serviceName: 'front' },
    p3: { serviceName: 'reviews' },
  },
  spans: [
    span('d', 'c', 'p2', 'client', 3000, 4000, {
      'sluice.backend.service': 'demo/reviews-v1:9080',
      'http.response.status_code': 200,
    }),
    span('a', 'app', 'p1', 'server', 0, 10_000, {
      'url.path': '/productpage',
      'http.response.status_code': 200,
      'sluice.route.name': 'storefront',
    }),
    span('b', 'a', 'p1', 'client', 500, 9000, { 'sluice.backend.service': 'demo/front:8080' }),
    span('c', 'b', 'p2', 'server', 1000, 8000, { 'url.path': '/productpage' }),
    span('e', 'd', 'p3', 'server', 3500, 2500, {
      'url.path': '/productpage',
      'http.response.status_code': 503,
      error: true,
      'error.type': 'no_endpoint',
    }),
  ],
};

describe('demo trace tree', () => {
  it('prints the spans as a tree with start offsets and durations', () => {
    assert.deepEqual(formatTraceTree(TRACE), [
      'trace t1: 5 spans, 10.0 ms',
      'storefront-sluice  SERVER GET /productpage (route storefront) 200   at +0.0 ms, took 10.0 ms',
      '  storefront-sluice  CLIENT GET → demo/front:8080   at +0.5 ms, took 9.0 ms',
      '    front              SERVER GET /productpage   at +1.0 ms, took 8.0 ms',
      '      front              CLIENT GET → demo/reviews-v1:9080 200   at +3.0 ms, took 4.0 ms',
      '        reviews            SERVER GET /productpage 503 ERROR no_endpoint   at +3.5 ms, took 2.5 ms',
    ]);
  });

  it('checks the chain through a gateway and two sidecars', () => {
    const chain = STOREFRONT_CHAIN;
    assert.equal(chainProblem(TRACE, chain), undefined);
    const broken = { ...TRACE, spans: TRACE.spans.filter((s) => s.spanID !== 'c') };
    assert.match(
      chainProblem(broken, chain) ?? '',
      /^no server span of front under the storefront-sluice client span/,
    );
  });
});
