// Pods that would be counted as meshed without really being so (issue 13, point 9): app containers that can
// step around capture, containers that only carry the sidecar's name, STRICT with nothing captured. Fixture
// AdmissionReviews through answerReview, and the counts through the real webhook server.
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { answerReview } from '../../../injector/admission-review.ts';
import {
  captureEscapes,
  coversEveryInboundPort,
  decideInjection,
  type JsonPatchOp,
} from '../../../injector/pod-injection.ts';
import { InjectorServer } from '../../../injector/webhook-server.ts';
import { createWebhookCa, issueServingCert } from '../../../injector/webhook-tls.ts';
import { jsonLogger } from '../../../lib/json-log.ts';
import { isInjectedPod } from '../../../mesh-model/endpoints.ts';
import type { K8sObject } from '../../../mesh-model/k8s-objects.ts';
import { fixture, settings, type Obj } from './review-fixtures.ts';
import { waitFor } from '../../support/wait-for.ts';

const podOf = (review: Obj): Obj => (review.request as Obj).object as Obj;

function annotate(review: Obj, annotations: Obj): Obj {
  const metadata = podOf(review).metadata as Obj;
  metadata.annotations = { ...(metadata.annotations ?? {}), ...annotations };
  return review;
}

/** The AdmissionReview response for `review`. */
function respond(review: Obj, s = settings): Obj {
  const answer = answerReview(review, s);
  if ('error' in answer) assert.fail(answer.error);
  return answer.review.response as Obj;
}

function refusal(review: Obj, s = settings): string {
  const response = respond(review, s);
  assert.equal(response.allowed, false, JSON.stringify(response));
  assert.equal((response.status as Obj).code, 400);
  assert.equal(response.patch, undefined);
  return (response.status as Obj).message as string;
}

describe('injector: pods that would escape the mesh', () => {
  it('refuses a pod whose app runs as the proxy uid (pod securityContext)', () => {
    assert.match(
      refusal(fixture('pod-runs-as-proxy-uid.json')),
      /container reviews runs as the proxy uid 1337/,
    );
  });

  it('refuses an app container that adds NET_ADMIN or NET_RAW, or is privileged', () => {
    assert.match(refusal(fixture('pod-with-net-admin.json')), /container reviews adds NET_ADMIN/);
    const raw = fixture('deployment-pod.json');
    ((podOf(raw).spec as Obj).containers as Obj[])[0]!.securityContext = {
      capabilities: { add: ['CAP_NET_RAW'] },
    };
    assert.match(refusal(raw), /adds NET_RAW/);
    const privileged = fixture('pod-with-init-containers.json');
    ((podOf(privileged).spec as Obj).initContainers as Obj[])[0]!.securityContext = { privileged: true };
    assert.match(refusal(privileged), /container schema is privileged/);
  });

  it('a container runAsUser overrides the pod’s: only the uid that really runs counts', () => {
    const spec = {
      securityContext: { runAsUser: 1337 },
      containers: [{ name: 'app', securityContext: { runAsUser: 1000 } }],
    };
    assert.deepEqual(captureEscapes(spec), []);
    assert.deepEqual(
      captureEscapes({ containers: [{ name: 'app', securityContext: { runAsUser: 1337 } }] }),
      ['container app runs as the proxy uid 1337'],
    );
  });

  it('with sluice.dev/allow-capture-escape: "true": injected, with a warning and an audit annotation', () => {
    const response = respond(
      annotate(fixture('pod-with-net-admin.json'), { 'sluice.dev/allow-capture-escape': 'true' }),
    );
    assert.equal(response.allowed, true);
    assert.equal(response.patchType, 'JSONPatch');
    const warnings = response.warnings as string[];
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /container reviews adds NET_ADMIN: it can bypass the sidecar/);
    assert.match((response.auditAnnotations as Obj).warnings as string, /NET_ADMIN/);
  });

  it('a container merely named like the sidecar is not "already injected": refused, not counted as meshed', () => {
    const message = refusal(fixture('pod-named-like-sidecar.json'));
    assert.match(message, /container name sluice-proxy is reserved for the Sluice sidecar/);
    // The marker annotation alone does not make it ours either.
    const marked = annotate(fixture('pod-named-like-sidecar.json'), { 'sluice.dev/status': 'injected' });
    assert.match(refusal(marked), /reserved/);
  });

  it('really injected pods (marker and both containers) are still skipped as already injected', () => {
    const review = fixture('deployment-pod.json');
    const decision = decideInjection(podOf(review), settings);
    assert.equal(decision.action, 'inject');
    const pod = structuredClone(podOf(review));
    const spec = pod.spec as Obj;
    for (const op of (decision as { patch: JsonPatchOp[] }).patch) {
      if (op.path === '/spec/initContainers') spec.initContainers = op.value;
      if (op.path === '/metadata/annotations') (pod.metadata as Obj).annotations = op.value;
      if (op.path === '/metadata/annotations/sluice.dev~1status')
        ((pod.metadata as Obj).annotations as Obj)['sluice.dev/status'] = op.value;
    }
    assert.deepEqual(decideInjection(pod, settings), { action: 'skip', reason: 'already-injected' });
  });

  it('the marker with both container names but not our containers (other image or args) is refused', () => {
    const review = fixture('deployment-pod.json');
    const decision = decideInjection(podOf(review), settings) as { patch: JsonPatchOp[] };
    /** The review of the pod as injected, with `edit` applied to its init containers. */
    const injectedPod = (edit: (containers: Obj[]) => void): Obj => {
      const copy = structuredClone(review);
      const pod = podOf(copy);
      const spec = pod.spec as Obj;
      for (const op of decision.patch) {
        if (op.path === '/spec/initContainers') spec.initContainers = structuredClone(op.value);
        if (op.path === '/metadata/annotations') (pod.metadata as Obj).annotations = op.value;
        if (op.path === '/metadata/annotations/sluice.dev~1status')
          ((pod.metadata as Obj).annotations as Obj)['sluice.dev/status'] = op.value;
      }
      edit(spec.initContainers as Obj[]);
      return copy;
    };
    const proxyOf = (cs: Obj[]): Obj => cs.find((c) => c.name === 'sluice-proxy')!;
    assert.match(refusal(injectedPod((cs) => (proxyOf(cs).image = 'evil:1'))), /reserved/);
    assert.match(refusal(injectedPod((cs) => (proxyOf(cs).command = ['sleep', 'inf']))), /reserved/);
    assert.match(refusal(injectedPod((cs) => (proxyOf(cs).args = ['proxy']))), /reserved/);
    assert.deepEqual(decideInjection(podOf(injectedPod(() => undefined)), settings), {
      action: 'skip',
      reason: 'already-injected',
    });
  });

  it('the model counts a pod as meshed only with the marker and both of the injector containers', () => {
    const pod = (annotations: Obj, init: string[], containers: string[]): K8sObject => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'p', namespace: 'shop', annotations: annotations as Record<string, string> },
      spec: {
        initContainers: init.map((name) => ({ name })),
        containers: containers.map((name) => ({ name })),
      },
    });
    const marker = { 'sluice.dev/status': 'injected' };
    assert.equal(isInjectedPod(pod({}, [], ['app', 'sluice-proxy'])), false, 'a container name alone');
    assert.equal(isInjectedPod(pod(marker, [], ['app', 'sluice-proxy'])), false, 'no capture init container');
    assert.equal(isInjectedPod(pod({}, ['sluice-init', 'sluice-proxy'], ['app'])), false, 'no marker');
    assert.equal(
      isInjectedPod(pod(marker, ['sluice-init', 'sluice-proxy'], ['app'])),
      true,
      'native sidecar',
    );
    assert.equal(
      isInjectedPod(pod(marker, ['sluice-init'], ['sluice-proxy', 'app'])),
      true,
      'classic sidecar',
    );
  });

  it('STRICT with every inbound port excluded is an error naming both annotations', () => {
    const message = refusal(fixture('pod-strict-excluding-all-inbound.json'));
    assert.match(message, /sluice\.dev\/exclude-inbound-ports/);
    assert.match(message, /sluice\.dev\/mtls-mode STRICT/);
    // Also with STRICT as the injector's default, and with ranges that leave only the proxy's own ports.
    const byDefault = fixture('deployment-pod.json');
    annotate(byDefault, {
      'sluice.dev/exclude-inbound-ports': '1-15000,15002-15005,15007-15020,15022-65535',
    });
    assert.match(refusal(byDefault, { ...settings, mtlsMode: 'STRICT' }), /excludes every inbound port/);
    // PERMISSIVE: allowed (nothing is promised); STRICT with some ports excluded: allowed with a warning.
    const permissive = annotate(fixture('pod-strict-excluding-all-inbound.json'), {
      'sluice.dev/mtls-mode': 'PERMISSIVE',
    });
    assert.equal(respond(permissive).allowed, true);
    const some = annotate(fixture('deployment-pod.json'), {
      'sluice.dev/mtls-mode': 'STRICT',
      'sluice.dev/exclude-inbound-ports': '9090',
    });
    const response = respond(some);
    assert.equal(response.allowed, true);
    assert.match((response.warnings as string[])[0]!, /inbound ports 9090 bypass the proxy/);
  });

  it('coversEveryInboundPort', () => {
    assert.equal(coversEveryInboundPort(['1:65535']), true);
    assert.equal(coversEveryInboundPort(['30000:65535', '1:29999']), true);
    assert.equal(coversEveryInboundPort(['1:15000', '15002:15005', '15007:15020', '15022:65535']), true);
    assert.equal(coversEveryInboundPort(['1:65534']), false);
    assert.equal(coversEveryInboundPort(['2:65535']), false);
    assert.equal(coversEveryInboundPort(['1:8079', '8081:65535']), false);
    assert.equal(coversEveryInboundPort([]), false);
  });

  it('counts only real injections as injected; refusals by a bounded reason', async () => {
    const ca = await createWebhookCa({});
    const serving = await issueServingCert({
      caCertPem: ca.certPem,
      caKeyPem: ca.keyPem,
      dnsNames: ['localhost'],
    });
    const server = new InjectorServer({
      settings,
      log: jsonLogger('test', () => undefined),
      certificate: serving,
      port: 0,
      adminPort: 0,
    });
    await server.start();
    try {
      const post = async (review: Obj): Promise<void> => {
        await new Promise<void>((resolve, reject) => {
          const req = request(
            {
              host: '127.0.0.1',
              port: server.port,
              path: '/inject',
              method: 'POST',
              ca: ca.certPem,
              servername: 'localhost',
            },
            (res) => {
              res.resume();
              res.on('end', () =>
                res.statusCode === 200 ? resolve() : reject(new Error(`${res.statusCode}`)),
              );
            },
          );
          req.on('error', reject);
          req.end(JSON.stringify(review));
        });
      };
      for (const name of [
        'deployment-pod.json',
        'pod-named-like-sidecar.json',
        'pod-runs-as-proxy-uid.json',
        'pod-with-net-admin.json',
        'pod-strict-excluding-all-inbound.json',
      ]) {
        await post(fixture(name));
      }
      await post(annotate(fixture('pod-with-net-admin.json'), { 'sluice.dev/allow-capture-escape': 'true' }));
      const metrics = server.metricsText();
      assert.match(metrics, /sluice_injector_pods_total\{result="injected"\} 1\n/);
      assert.match(metrics, /sluice_injector_pods_total\{result="injected",reason="warned"\} 1\n/);
      assert.match(metrics, /sluice_injector_pods_total\{result="denied",reason="reserved-name"\} 1\n/);
      assert.match(metrics, /sluice_injector_pods_total\{result="denied",reason="capture-escape"\} 2\n/);
      assert.match(
        metrics,
        /sluice_injector_pods_total\{result="denied",reason="strict-without-capture"\} 1\n/,
      );
      assert.doesNotMatch(metrics, /already-injected/);
      // The webhook's own requests, under the OTel HTTP server metric name (its route a fixed template).
      await waitFor('six POST /inject answered 200 in http_server_request_duration_seconds', () =>
        /^http_server_request_duration_seconds_count\{http_request_method="POST",http_route="\/inject",http_response_status_code="200"\} 6$/m.test(
          server.metricsText(),
        ),
      );
      assert.match(server.metricsText(), /^process_cpu_seconds_total /m);
    } finally {
      await server.stop();
    }
  });
});
