// The mesh ConfigMap's tracing keys: defaults, values, and bad values that keep their default with a warning.
import assert from 'node:assert/strict';
import { DEFAULT_TRACING, tracingFromData } from '../../../protocol/tracing-config.ts';
import { inScope, stripObject } from '../../../protocol/config-scope.ts';
import { buildProxyView } from '../../../mesh-model/proxy-view.ts';

describe('mesh tracing settings', () => {
  it('is off with 1 % sampling when nothing is configured', () => {
    assert.deepEqual(tracingFromData(undefined), { settings: DEFAULT_TRACING, warnings: [] });
    assert.equal(DEFAULT_TRACING.samplingRatio, 0.01);
    assert.equal(DEFAULT_TRACING.endpoint, undefined);
  });

  it('reads every key', () => {
    const { settings, warnings } = tracingFromData({
      'tracing.otlpEndpoint': 'http://jaeger.observability:4318/v1/traces',
      'tracing.samplingPercent': '0.5',
      'tracing.forcedTracesPerSecond': '3',
      'tracing.propagation': 'w3c, b3, b3multi',
      'tracing.resourceAttributes': 'deployment.environment=dev, team=shop',
      'tracing.exportTimeoutMs': '2000',
      'tracing.maxQueueSpans': '100',
      'tracing.batchDelayMs': '50',
    });
    assert.deepEqual(warnings, []);
    assert.equal(settings.endpoint, 'http://jaeger.observability:4318/v1/traces');
    assert.equal(settings.samplingRatio, 0.005);
    assert.equal(settings.forcedTracesPerSecond, 3);
    assert.deepEqual(settings.propagation, ['b3', 'b3multi']);
    assert.deepEqual(settings.resourceAttributes, { 'deployment.environment': 'dev', team: 'shop' });
    assert.equal(settings.exportTimeoutMs, 2000);
    assert.equal(settings.maxQueueSpans, 100);
    assert.equal(settings.batchDelayMs, 50);
  });

  it('keeps defaults for bad values and says why', () => {
    const { settings, warnings } = tracingFromData({
      'tracing.otlpEndpoint': 'ftp://x',
      'tracing.samplingPercent': '150',
      'tracing.forcedTracesPerSecond': '-1',
      'tracing.propagation': 'jaeger',
    });
    assert.equal(settings.endpoint, undefined);
    assert.equal(settings.samplingRatio, 0.01);
    assert.equal(settings.forcedTracesPerSecond, 10);
    assert.equal(warnings.length, 4);
  });

  it('is streamed to every namespace (only the mesh ConfigMap) and reaches the proxy view', () => {
    const cm = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'sluice-mesh-config', namespace: 'sluice-system', labels: { a: 'b' } },
      data: { 'tracing.samplingPercent': '100' },
    };
    const stripped = stripObject(cm)!;
    assert.deepEqual(stripped, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'sluice-mesh-config', namespace: 'sluice-system' },
      data: { 'tracing.samplingPercent': '100' },
    });
    assert.ok(inScope(stripped, 'shop'));
    assert.equal(stripObject({ ...cm, metadata: { name: 'other', namespace: 'sluice-system' } }), undefined);
    const view = buildProxyView([stripped], 'shop', 'cluster.local');
    assert.deepEqual(view.meshConfig, { 'tracing.samplingPercent': '100' });
    assert.equal(buildProxyView([], 'shop', 'cluster.local').meshConfig, undefined);
  });
});
