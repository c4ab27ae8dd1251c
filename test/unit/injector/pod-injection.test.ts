import assert from 'node:assert/strict';
import { answerReview } from '../../../injector/admission-review.ts';
import {
  decideInjection,
  type InjectionDecision,
  type InjectionSettings,
  type JsonPatchOp,
} from '../../../injector/pod-injection.ts';
import { fixture, settings, type Obj } from './review-fixtures.ts';

function podOf(review: Obj): Obj {
  return structuredClone((review.request as Obj).object as Obj);
}

/** RFC 6902 `add` (all the injector emits), as the API server applies it. */
function applyPatch(doc: Obj, patch: readonly JsonPatchOp[]): Obj {
  const out = structuredClone(doc);
  for (const op of patch) {
    assert.equal(op.op, 'add');
    const segments = op.path
      .split('/')
      .slice(1)
      .map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'));
    const last = segments.pop()!;
    let parent: unknown = out;
    for (const s of segments) parent = (parent as Obj)[s];
    assert.ok(parent !== undefined && parent !== null, `parent of ${op.path} exists`);
    if (Array.isArray(parent)) {
      if (last === '-') parent.push(op.value);
      else parent.splice(Number(last), 0, op.value);
    } else (parent as Obj)[last] = op.value;
  }
  return out;
}

function patchOf(decision: InjectionDecision): JsonPatchOp[] {
  if (decision.action !== 'inject') assert.fail(`expected a patch, got ${JSON.stringify(decision)}`);
  return decision.patch;
}

function injected(pod: Obj, s: InjectionSettings = settings): Obj {
  return applyPatch(pod, patchOf(decideInjection(pod, s)));
}

const names = (list: unknown): string[] => (list as Obj[]).map((c) => c.name as string);
const byName = (list: unknown, name: string): Obj => (list as Obj[]).find((c) => c.name === name)!;

describe('injector: pod patch', () => {
  it('adds capture, then the proxy as a native sidecar, before the pod’s own containers', () => {
    const pod = injected(podOf(fixture('deployment-pod.json')));
    const spec = pod.spec as Obj;
    assert.deepEqual(names(spec.initContainers), ['sluice-init', 'sluice-proxy']);
    assert.deepEqual(names(spec.containers), ['reviews']);
    const proxy = byName(spec.initContainers, 'sluice-proxy');
    assert.equal(proxy.restartPolicy, 'Always');
    assert.equal(proxy.image, settings.image);
    assert.deepEqual((proxy.startupProbe as Obj).httpGet, { path: '/ready', port: 15021 });
    assert.ok((proxy.args as string[]).includes('--controller=sluice-controller.sluice-system.svc:15012'));
    assert.ok((proxy.args as string[]).includes('--mode=PERMISSIVE'));
    assert.ok(
      !(proxy.args as string[]).some((a) => a.startsWith('--drain-delay')),
      'gets SIGTERM after the app',
    );
    const security = proxy.securityContext as Obj;
    assert.equal(security.runAsUser, 1337);
    assert.equal(security.runAsNonRoot, true);
    assert.equal(security.readOnlyRootFilesystem, true);
    assert.deepEqual(
      (proxy.env as Obj[]).map((e) => [e.name, e.value ?? ((e.valueFrom as Obj).fieldRef as Obj).fieldPath]),
      [
        ['POD_NAME', 'metadata.name'],
        ['POD_NAMESPACE', 'metadata.namespace'],
        ['POD_IP', 'status.podIP'],
        ['SERVICE_ACCOUNT', 'spec.serviceAccountName'],
        ['NODE_NAME', 'spec.nodeName'],
        ['SLUICE_SERVICE_NAME', "metadata.labels['app']"],
        ['NODE_OPTIONS', '--max-semi-space-size=4'],
      ],
    );
    assert.ok((proxy.resources as Obj).requests);
  });

  it('runs capture as root with only NET_ADMIN and NET_RAW, exempting the proxy uid', () => {
    const init = byName(
      (injected(podOf(fixture('deployment-pod.json'))).spec as Obj).initContainers,
      'sluice-init',
    );
    assert.deepEqual(init.securityContext, {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      seccompProfile: { type: 'RuntimeDefault' },
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
    });
    assert.deepEqual(init.args, [
      'init-iptables',
      '--proxy-uid=1337',
      '--inbound-port=15006',
      '--outbound-port=15001',
      '--admin-port=15021',
    ]);
  });

  it('mounts a projected token with the Sluice audience and the trust bundle, keeping existing volumes', () => {
    const spec = injected(podOf(fixture('deployment-pod.json'))).spec as Obj;
    assert.deepEqual(names(spec.volumes), ['kube-api-access-x1', 'sluice-token', 'sluice-ca']);
    const token = byName(spec.volumes, 'sluice-token');
    assert.deepEqual((token.projected as Obj).sources, [
      { serviceAccountToken: { audience: 'sluice.dev/mesh', expirationSeconds: 3600, path: 'token' } },
    ]);
    assert.deepEqual((byName(spec.volumes, 'sluice-ca').configMap as Obj).name, 'sluice-ca-root');
  });

  it('marks the pod injected and scrapable, creating the annotations map when there is none', () => {
    const pod = injected(podOf(fixture('deployment-pod.json')));
    assert.deepEqual((pod.metadata as Obj).annotations, {
      'sluice.dev/status': 'injected',
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': '15021',
      'prometheus.io/path': '/metrics',
    });
  });

  it("leaves a pod's own Prometheus scrape annotations alone", () => {
    const base = podOf(fixture('deployment-pod.json'));
    const own = { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9090' };
    const pod = injected({ ...base, metadata: { ...(base.metadata as Obj), annotations: own } });
    assert.deepEqual((pod.metadata as Obj).annotations, { ...own, 'sluice.dev/status': 'injected' });
  });

  it('puts its containers before existing init containers and maps the capture annotations', () => {
    const pod = injected(podOf(fixture('pod-with-init-containers.json')));
    const spec = pod.spec as Obj;
    assert.deepEqual(names(spec.initContainers), ['sluice-init', 'sluice-proxy', 'schema']);
    const args = byName(spec.initContainers, 'sluice-init').args as string[];
    assert.ok(args.includes('--exclude-inbound-ports=9090,9100-9110'));
    assert.ok(args.includes('--exclude-outbound-cidrs=10.0.0.0/8'));
    assert.ok((byName(spec.initContainers, 'sluice-proxy').args as string[]).includes('--mode=STRICT'));
    assert.equal(((pod.metadata as Obj).annotations as Obj)['sluice.dev/mtls-mode'], 'strict');
  });

  it('on clusters without native sidecars: the proxy is the first container and holds the app until ready', () => {
    const pod = injected(podOf(fixture('pod-with-init-containers.json')), {
      ...settings,
      nativeSidecars: false,
    });
    const spec = pod.spec as Obj;
    assert.deepEqual(names(spec.initContainers), ['sluice-init', 'schema']);
    assert.deepEqual(names(spec.containers), ['sluice-proxy', 'app']);
    const proxy = byName(spec.containers, 'sluice-proxy');
    assert.equal(proxy.restartPolicy, undefined);
    assert.ok((proxy.args as string[]).includes('--drain-delay-seconds=5'), 'keeps serving beside the app');
    assert.deepEqual(((proxy.lifecycle as Obj).postStart as Obj).exec, {
      command: ['node', '/app/bin/sluice.js', 'wait-ready', '--port=15021'],
    });
  });

  it('is idempotent: an injected pod is left alone', () => {
    const once = injected(podOf(fixture('deployment-pod.json')));
    assert.deepEqual(decideInjection(once, settings), { action: 'skip', reason: 'already-injected' });
    const classic = injected(podOf(fixture('deployment-pod.json')), { ...settings, nativeSidecars: false });
    assert.deepEqual(decideInjection(classic, settings), { action: 'skip', reason: 'already-injected' });
  });

  it('skips opted-out and hostNetwork pods', () => {
    const pod = podOf(fixture('deployment-pod.json'));
    for (const value of ['disabled', 'false', ' Disabled ']) {
      const optedOut = {
        ...pod,
        metadata: { ...(pod.metadata as Obj), annotations: { 'sluice.dev/inject': value } },
      };
      assert.deepEqual(decideInjection(optedOut, settings), { action: 'skip', reason: 'opted-out' });
    }
    const host = { ...pod, spec: { ...(pod.spec as Obj), hostNetwork: true } };
    assert.deepEqual(decideInjection(host, settings), { action: 'skip', reason: 'host-network' });
  });

  it('refuses a pod whose capture or mTLS annotations are invalid, saying which and why', () => {
    const pod = podOf(fixture('deployment-pod.json'));
    const withAnnotations = (annotations: Obj): Obj => ({
      ...pod,
      metadata: { ...(pod.metadata as Obj), annotations },
    });
    const cases: [Obj, RegExp][] = [
      [
        { 'sluice.dev/exclude-inbound-ports': '80,http' },
        /sluice.dev\/exclude-inbound-ports: 'http' is not a valid port/,
      ],
      [
        { 'sluice.dev/exclude-outbound-cidrs': '10.0.0.0/33' },
        /sluice.dev\/exclude-outbound-cidrs: '10.0.0.0\/33'/,
      ],
      [{ 'sluice.dev/mtls-mode': 'sometimes' }, /sluice.dev\/mtls-mode: must be STRICT or PERMISSIVE/],
      [
        { 'sluice.dev/inbound-to-localhost': 'yes' },
        /sluice.dev\/inbound-to-localhost: must be true or false/,
      ],
      [
        { 'sluice.dev/tracing-sampling-percent': '101' },
        /sluice.dev\/tracing-sampling-percent: must be a percentage/,
      ],
    ];
    for (const [annotations, message] of cases) {
      const decision = decideInjection(withAnnotations(annotations), settings);
      if (decision.action !== 'deny') assert.fail(`expected a refusal, got ${decision.action}`);
      assert.match(decision.message, message);
    }
  });

  it('requests the configured proxy resources; a pod’s annotations override them, bad ones refuse it', () => {
    const resourcesFor = (annotations: Obj | undefined, s: InjectionSettings = settings): Obj => {
      const pod = podOf(fixture('deployment-pod.json'));
      if (annotations) (pod.metadata as Obj).annotations = annotations;
      return byName((injected(pod, s).spec as Obj).initContainers, 'sluice-proxy').resources as Obj;
    };
    assert.deepEqual(resourcesFor(undefined), {
      requests: { cpu: '50m', memory: '64Mi' },
      limits: { memory: '256Mi' },
    });
    const low = { ...settings, proxyResources: { cpuRequest: '5m', memoryRequest: '32Mi' } };
    assert.deepEqual((resourcesFor(undefined, low).requests as Obj).cpu, '5m');
    assert.deepEqual(resourcesFor({ 'sluice.dev/proxy-cpu-request': '250m' }, low).requests, {
      cpu: '250m',
      memory: '32Mi',
    });
    const pod = podOf(fixture('deployment-pod.json'));
    (pod.metadata as Obj).annotations = { 'sluice.dev/proxy-memory-request': '2Gi' };
    const decision = decideInjection(pod, settings);
    if (decision.action !== 'deny') assert.fail(`expected a refusal, got ${decision.action}`);
    assert.equal(decision.code, 'bad-annotation');
    assert.match(
      decision.message,
      /sluice.dev\/proxy-memory-request: must not exceed the proxy's memory limit/,
    );
  });

  it('passes sluice.dev/inbound-to-localhost on to the proxy only when it is true', () => {
    const proxyArgsFor = (annotations: Obj | undefined): string[] => {
      const pod = podOf(fixture('deployment-pod.json'));
      if (annotations) (pod.metadata as Obj).annotations = annotations;
      const spec = injected(pod).spec as Obj;
      return byName(spec.initContainers, 'sluice-proxy').args as string[];
    };
    const flag = '--inbound-to-localhost=true';
    assert.ok(proxyArgsFor({ 'sluice.dev/inbound-to-localhost': ' True ' }).includes(flag));
    assert.ok(!proxyArgsFor({ 'sluice.dev/inbound-to-localhost': 'false' }).includes(flag));
    assert.ok(!proxyArgsFor(undefined).some((arg) => arg.startsWith('--inbound-to-localhost')));
    assert.ok(
      proxyArgsFor({ 'sluice.dev/tracing-sampling-percent': ' 25 ' }).includes(
        '--tracing-sampling-percent=25',
      ),
    );
  });

  it('escapes annotation keys in JSON pointers', () => {
    const pod = podOf(fixture('deployment-pod.json'));
    (pod.metadata as Obj).annotations = { existing: 'yes' };
    const ops = patchOf(decideInjection(pod, settings));
    assert.ok(ops.some((op) => op.path === '/metadata/annotations/sluice.dev~1status'));
    assert.ok(!ops.some((op) => op.path === '/metadata/annotations'));
  });
});

describe('injector: AdmissionReview', () => {
  it('answers with the request uid and a base64 JSONPatch', () => {
    const review = fixture('deployment-pod.json');
    const answer = answerReview(review, settings);
    assert.ok('review' in answer);
    const response = answer.review.response as Obj;
    assert.equal(answer.review.apiVersion, 'admission.k8s.io/v1');
    assert.equal(response.uid, (review.request as Obj).uid);
    assert.equal(response.allowed, true);
    assert.equal(response.patchType, 'JSONPatch');
    const patch = JSON.parse(Buffer.from(response.patch as string, 'base64').toString()) as JsonPatchOp[];
    assert.deepEqual(applyPatch(podOf(review), patch), injected(podOf(review)));
    assert.deepEqual(answer.context, { namespace: 'shop', pod: 'reviews-v1-6d4f8b9c7-*' });
  });

  it('allows a skipped pod unchanged and records why in an audit annotation', () => {
    const review = fixture('deployment-pod.json');
    (((review.request as Obj).object as Obj).spec as Obj).hostNetwork = true;
    const answer = answerReview(review, settings);
    assert.ok('review' in answer);
    assert.deepEqual(answer.review.response, {
      uid: (review.request as Obj).uid,
      allowed: true,
      auditAnnotations: { skipped: 'host-network' },
    });
  });

  it('refuses with a 400 status for an invalid annotation', () => {
    const review = fixture('pod-with-init-containers.json');
    ((((review.request as Obj).object as Obj).metadata as Obj).annotations as Obj)['sluice.dev/mtls-mode'] =
      'x';
    const answer = answerReview(review, settings);
    assert.ok('review' in answer);
    const response = answer.review.response as Obj;
    assert.equal(response.allowed, false);
    assert.equal((response.status as Obj).code, 400);
  });

  it('lets through what it was not made for, without a patch', () => {
    const base = fixture('deployment-pod.json');
    const variants: [string, (r: Obj) => void][] = [
      ['update', (r) => ((r.request as Obj).operation = 'UPDATE')],
      [
        'a Deployment',
        (r) => ((r.request as Obj).kind = { group: 'apps', version: 'v1', kind: 'Deployment' }),
      ],
      ['no object', (r) => delete (r.request as Obj).object],
    ];
    for (const [what, mutate] of variants) {
      const review = structuredClone(base);
      mutate(review);
      const answer = answerReview(review, settings);
      assert.ok('review' in answer, what);
      assert.equal((answer.review.response as Obj).allowed, true, what);
      assert.equal((answer.review.response as Obj).patch, undefined, what);
      assert.equal(answer.outcome.result, 'ignored', what);
    }
  });

  it('answers malformed reviews with an error, never a throw', () => {
    const inputs: unknown[] = [
      null,
      42,
      'AdmissionReview',
      [],
      {},
      { kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1beta1', request: { uid: 'x' } },
      { kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1' },
      { kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1', request: { uid: 7 } },
    ];
    for (const input of inputs) {
      const answer = answerReview(input, settings);
      assert.ok('error' in answer, JSON.stringify(input));
    }
    const odd = fixture('deployment-pod.json');
    ((odd.request as Obj).object as Obj).spec = {
      containers: 'nope',
      initContainers: [null, 3],
      volumes: {},
    };
    ((odd.request as Obj).object as Obj).metadata = { annotations: ['x'] };
    const answer = answerReview(odd, settings);
    assert.ok('review' in answer);
  });
});
