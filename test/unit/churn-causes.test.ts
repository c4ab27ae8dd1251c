import assert from 'node:assert/strict';
import { judge, outcome, verdict } from '../support/churn-causes.ts';
import {
  decodeGrpcMessage,
  failureCause,
  REPLY_LINE_MAX,
  replyLine,
} from '../../images/toolbox/load-cause.ts';

const RESET =
  'the app reset the request before answering (churn-1/echo:80); not retried: POST is not idempotent';
const GRPC_RESET =
  'the app reset the request before answering (churn-1/echo:80); not retried: a gRPC call (POST) is not idempotent';

describe('churn failure causes (issue 17)', () => {
  it('load records the method and the first line of the reply, bounded', () => {
    assert.equal(failureCause('POST', 'status 502', `${RESET}\n`), `POST status 502 (${RESET})`);
    assert.equal(failureCause('gRPC', 'ECONNRESET'), 'gRPC ECONNRESET');
    assert.equal(failureCause('GET', 'status 500', '\n  \n'), 'GET status 500');
    assert.equal(failureCause('gRPC', 'grpc-status 2 (http 200)', null), 'gRPC grpc-status 2 (http 200)');
    assert.equal(replyLine('  first  \nsecond'), 'first');
    const long = replyLine('x'.repeat(500));
    assert.equal(long.length, REPLY_LINE_MAX);
    assert.ok(long.endsWith('…'));
    assert.equal(decodeGrpcMessage('no%20healthy%20endpoints'), 'no healthy endpoints');
    assert.equal(decodeGrpcMessage('100%'), '100%', 'kept when it does not decode');
  });

  it("an app's reset of a POST or gRPC call is the app's when apps exit; of a GET, the mesh's", () => {
    const appsExit = { appsExit: true };
    assert.equal(verdict(`echo: POST status 502 (${RESET})`, appsExit), 'app_reset');
    assert.equal(verdict(`slow: gRPC grpc-status 14 (http 200) (${GRPC_RESET})`, appsExit), 'app_reset');
    assert.equal(verdict(`echo: POST status 502 (${RESET})`, {}), 'unexplained', 'no app exits');
    assert.equal(verdict(`echo: GET status 502 (${RESET})`, appsExit), 'mesh_bug');
  });

  it("the split's 503s when its backend has no endpoints; no other Service's, even with the node NotReady", () => {
    const split = { splitNoEndpoint: true, appsExit: true };
    const noEndpoint = 'status 503 (no healthy endpoints for churn-1/spare:80)';
    assert.equal(verdict(`split: GET ${noEndpoint}`, split), 'split_503');
    assert.equal(
      verdict('split: gRPC grpc-status 14 (http 200) (no endpoints for x/spare:80)', split),
      'split_503',
    );
    assert.equal(verdict(`echo: GET ${noEndpoint}`, split), 'unexplained', 'not the split');
    assert.equal(verdict(`split: GET ${noEndpoint}`, {}), 'unexplained', 'not expected here');
    assert.equal(verdict('split: POST status 502 (upstream ECONNRESET (x/spare:80))', split), 'unexplained');
    const noHealthy = 'status 503 (no healthy endpoints for c/closer:80)';
    assert.equal(
      verdict(`closer: GET ${noHealthy}`, { appsExit: true }),
      'unexplained',
      'a NotReady node is none',
    );
  });

  it('anything else, or an old-style cause, is unexplained', () => {
    for (const cause of ['echo: GET ECONNRESET', 'echo: status 502', 'h2c: gRPC stream closed (code 8)'])
      assert.equal(verdict(cause, { appsExit: true, splitNoEndpoint: true }), 'unexplained');
  });

  it('a scenario passes with explained failures, is pending with a few others, fails with a bug or more', () => {
    const causes = (c: Record<string, number>) => [{ protocol: 'http1', causes: c }];
    const explained = judge(causes({ [`echo: POST status 502 (${RESET})`]: 3 }), { appsExit: true });
    assert.deepEqual(explained, {
      expected: { app_reset: 3 },
      bugs: [],
      unexplained: [],
      unexplainedCount: 0,
    });
    assert.equal(outcome(explained, 5), 'pass');
    const odd = judge(causes({ 'echo: POST ECONNRESET': 2 }), { appsExit: true });
    assert.deepEqual(odd.unexplained, ['http1 echo: POST ECONNRESET x2']);
    assert.equal(outcome(odd, 5), 'pending');
    assert.equal(outcome(judge(causes({ 'echo: POST ECONNRESET': 6 }), {}), 5), 'fail');
    const bug = judge(causes({ [`echo: GET status 502 (${RESET})`]: 1 }), { appsExit: true });
    assert.deepEqual(bug.bugs, [`http1 echo: GET status 502 (${RESET}) x1`]);
    assert.equal(outcome(bug, 5), 'fail');
  });
});
