import assert from 'node:assert/strict';
import { UsageError } from '../../../lib/usage-error.ts';
import {
  bearerToken,
  certificateResponse,
  parseCertificateRequest,
  refusalHttpStatus,
} from '../../../controller/certificate-endpoint.ts';
import { parseControllerFlags } from '../../../cli/controller-command.ts';
import { Histogram, renderFamily } from '../../../lib/prometheus-text.ts';
import { routeStatusUpdate } from '../../../controller/controller.ts';
import { formatLogLine } from '../../../lib/json-log.ts';
import { MESH_CONTROLLER_NAME } from '../../../mesh-model/controller-name.ts';
import { buildMeshModel } from '../../../mesh-model/translate.ts';
import { backend, route, service } from '../../support/manifests.ts';

describe('controller process pieces', () => {
  describe('parseControllerFlags', () => {
    it('defaults, then environment, then flags', () => {
      assert.deepEqual(parseControllerFlags([], {}), {
        trustDomain: 'cluster.local',
        namespace: 'sluice-system',
        port: 15012,
        adminPort: 15014,
        kubeconfig: undefined,
        proxyImage: undefined,
        workloadCertMinutes: undefined,
        proxyResources: { cpuRequest: '50m', memoryRequest: '64Mi' },
        help: false,
      });
      assert.equal(parseControllerFlags([], { SLUICE_PROXY_IMAGE: 'img:1' }).proxyImage, 'img:1');
      assert.deepEqual(
        parseControllerFlags(['--proxy-memory-request', '32Mi'], { SLUICE_PROXY_CPU_REQUEST: '10m' })
          .proxyResources,
        { cpuRequest: '10m', memoryRequest: '32Mi' },
      );
      assert.equal(parseControllerFlags(['--proxy-image', 'img:2'], {}).proxyImage, 'img:2');
      assert.equal(parseControllerFlags([], { SLUICE_WORKLOAD_CERT_MINUTES: '2' }).workloadCertMinutes, 2);
      assert.equal(
        parseControllerFlags(['--workload-cert-minutes', '90'], { SLUICE_WORKLOAD_CERT_MINUTES: '2' })
          .workloadCertMinutes,
        90,
      );
      const fromEnv = parseControllerFlags([], { POD_NAMESPACE: 'mesh', SLUICE_TRUST_DOMAIN: 'example.org' });
      assert.equal(fromEnv.namespace, 'mesh');
      assert.equal(fromEnv.trustDomain, 'example.org');
      const fromFlags = parseControllerFlags(
        [
          '--namespace',
          'cp',
          '--trust-domain',
          'td.test',
          '--port',
          '1',
          '--admin-port',
          '2',
          '--kubeconfig',
          'k',
        ],
        { POD_NAMESPACE: 'mesh' },
      );
      assert.deepEqual(fromFlags, {
        trustDomain: 'td.test',
        namespace: 'cp',
        port: 1,
        adminPort: 2,
        kubeconfig: 'k',
        proxyImage: undefined,
        workloadCertMinutes: undefined,
        proxyResources: { cpuRequest: '50m', memoryRequest: '64Mi' },
        help: false,
      });
    });

    for (const args of [
      ['--port', '0'],
      ['--port', '65536'],
      ['--port', '1e3'],
      ['--admin-port', 'x'],
      ['--port', '15014'],
      ['--namespace', 'Not_A_Name'],
      ['--trust-domain', 'spiffe://x'],
      ['--unknown'],
      ['extra'],
      ['--kubeconfig', ''],
      ['--proxy-cpu-request', 'half'],
      ['--proxy-memory-request', '1Gi'],
      ['--workload-cert-minutes', '0'],
      ['--workload-cert-minutes', '1.5'],
      ['--workload-cert-minutes', '10081'],
    ]) {
      it(`refuses ${args.join(' ')} with a UsageError`, () => {
        assert.throws(() => parseControllerFlags(args, {}), UsageError);
      });
    }
  });

  describe('certificate endpoint', () => {
    it('maps refusal codes to HTTP statuses', () => {
      assert.equal(refusalHttpStatus('InvalidArgument'), 400);
      assert.equal(refusalHttpStatus('Unauthenticated'), 401);
      assert.equal(refusalHttpStatus('PermissionDenied'), 403);
      assert.equal(refusalHttpStatus('Unavailable'), 503);
      assert.equal(refusalHttpStatus('Internal'), 500);
    });

    it('reads bearer tokens', () => {
      assert.equal(bearerToken('Bearer abc.def'), 'abc.def');
      assert.equal(bearerToken('bearer   abc'), 'abc');
      assert.equal(bearerToken('Basic abc'), undefined);
      assert.equal(bearerToken('Bearer a b'), undefined);
      assert.equal(bearerToken('Bearer '), undefined);
      assert.equal(bearerToken(undefined), undefined);
      assert.equal(bearerToken(['Bearer x']), undefined);
    });

    it('reads the CSR from the body, with a reason for anything else', () => {
      assert.deepEqual(parseCertificateRequest('{"csr":"PEM"}'), { csrPem: 'PEM' });
      for (const body of ['', 'nope', '[]', 'null', '{}', '{"csr":""}', '{"csr":1}']) {
        assert.equal(typeof parseCertificateRequest(body), 'string', body);
      }
    });

    it('answers refusals without detail and issues with chain and bundle', () => {
      assert.deepEqual(
        certificateResponse({ ok: false, code: 'Internal', message: 'could not issue', detail: 'secret' }),
        { status: 500, body: { error: 'Internal', message: 'could not issue' } },
      );
      const issued = certificateResponse({
        ok: true,
        certChainPem: 'CHAIN',
        trustBundlePem: 'BUNDLE',
        spiffeId: 'spiffe://td/ns/a/sa/b',
        namespace: 'a',
        serviceAccount: 'b',
        podName: 'p',
        podUid: 'u',
        notBefore: new Date(0),
        notAfter: new Date(1000),
      });
      assert.equal(issued.status, 200);
      assert.equal(issued.body.certChain, 'CHAIN');
      assert.equal(issued.body.trustBundle, 'BUNDLE');
      assert.equal(issued.body.notAfter, '1970-01-01T00:00:01.000Z');
    });
  });

  describe('routeStatusUpdate', () => {
    const objects = [service('ns', 'svc', [80]), service('ns', 'v1', [80])];
    const model = buildMeshModel(objects);
    const now = '2026-01-01T00:00:00Z';

    it('adds our entry and keeps other status fields', () => {
      const r = { ...route('ns', 'r', [{ backendRefs: [backend('v1')] }]), status: { other: 1 } };
      const update = routeStatusUpdate(r, model, now);
      assert.ok(update);
      assert.equal(update.other, 1);
      const parents = update.parents as { controllerName: string }[];
      assert.equal(parents.length, 1);
      assert.equal(parents[0]!.controllerName, MESH_CONTROLLER_NAME);
    });

    it('says nothing to do once the status is right, and for routes without Service parents', () => {
      const r = route('ns', 'r', [{ backendRefs: [backend('v1')] }]);
      const written = { ...r, status: routeStatusUpdate(r, model, now) };
      assert.equal(routeStatusUpdate(written, model, '2026-02-02T00:00:00Z'), undefined);
      const gatewayOnly = route('ns', 'g', [{ backendRefs: [backend('v1')] }], {
        parentRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'edge' }],
      });
      assert.equal(routeStatusUpdate(gatewayOnly, model, now), undefined);
    });
  });

  describe('metrics text', () => {
    it('renders cumulative histogram buckets', () => {
      const h = new Histogram([0.1, 1]);
      h.observe(0.05);
      h.observe(0.5);
      h.observe(5);
      h.observe(Number.NaN);
      assert.deepEqual(h.render('x_seconds', 'help'), [
        '# HELP x_seconds help',
        '# TYPE x_seconds histogram',
        'x_seconds_bucket{le="0.1"} 1',
        'x_seconds_bucket{le="1"} 2',
        'x_seconds_bucket{le="+Inf"} 3',
        'x_seconds_sum 5.55',
        'x_seconds_count 3',
      ]);
    });

    it('escapes label values', () => {
      assert.deepEqual(
        renderFamily('y', 'gauge', 'h', [{ labels: { a: 'q"\\\n' }, value: 1 }, { value: 2 }]),
        ['# HELP y h', '# TYPE y gauge', 'y{a="q\\"\\\\\\n"} 1', 'y 2'],
      );
    });
  });

  describe('log lines', () => {
    it('are one JSON object per line with the envelope fields first', () => {
      const line = formatLogLine(
        'controller',
        'warn',
        'two\nlines',
        { msg: 'clash', component: 'x', error: new Error('boom'), skip: undefined },
        new Date(0),
      );
      assert.ok(line.endsWith('\n'));
      assert.equal(line.split('\n').length, 2);
      assert.deepEqual(JSON.parse(line), {
        time: '1970-01-01T00:00:00.000Z',
        level: 'warn',
        component: 'controller',
        msg: 'two lines',
        field_msg: 'clash',
        field_component: 'x',
        error: 'boom',
      });
    });

    it('survive fields that cannot be serialized', () => {
      const cycle: Record<string, unknown> = {};
      cycle.self = cycle;
      const parsed = JSON.parse(formatLogLine('controller', 'info', 'm', { cycle, big: 1n })) as Record<
        string,
        unknown
      >;
      assert.equal(parsed.msg, 'm');
      assert.equal(parsed.component, 'controller');
    });
  });
});
