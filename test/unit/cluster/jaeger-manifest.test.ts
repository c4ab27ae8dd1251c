// examples/observability/ agrees with the code that builds and queries Jaeger: the configuration, the image,
// the ports, and a mesh config whose endpoint the sidecars accept and that points at that Service.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { JAEGER_IMAGE } from '../../../cluster/jaeger-image.ts';
import { JAEGER_OTLP_HTTP_PORT, JAEGER_QUERY_PORT, jaegerConfig } from '../../../cluster/jaeger-build.ts';
import { tracingFromData } from '../../../protocol/tracing-config.ts';

type Doc = {
  kind: string;
  metadata: { name: string; namespace?: string };
  data?: Record<string, string>;
  spec?: Record<string, unknown>;
};

const docs = (file: string): Doc[] =>
  parseAllDocuments(readFileSync(`examples/observability/${file}`, 'utf8')).map((d) => d.toJS() as Doc);

describe('examples/observability', () => {
  const jaeger = docs('jaeger.yaml');
  const find = (kind: string): Doc => {
    const found = jaeger.find((d) => d.kind === kind);
    assert.ok(found, kind);
    return found;
  };

  it("runs Jaeger with jaeger-build.ts's configuration and the image jaeger-image.ts loads", () => {
    assert.equal(
      find('ConfigMap').data?.['config.yaml'],
      jaegerConfig({ listen: '0.0.0.0', queryHost: '0.0.0.0' }),
    );
    const text = JSON.stringify(find('Deployment'));
    assert.ok(text.includes(`"image":"${JAEGER_IMAGE}"`));
    const ports = (find('Service').spec?.ports as { port: number }[]).map((p) => p.port);
    assert.deepEqual(ports, [JAEGER_OTLP_HTTP_PORT, JAEGER_QUERY_PORT]);
  });

  it('points the mesh config at that Service, with settings the sidecars accept', () => {
    const [config] = docs('mesh-config.yaml');
    assert.equal(
      `${config?.metadata.namespace}/${config?.metadata.name}`,
      'sluice-system/sluice-mesh-config',
    );
    const { settings, warnings } = tracingFromData(config?.data);
    assert.deepEqual(warnings, []);
    const service = find('Service').metadata;
    assert.equal(
      settings.endpoint,
      `http://${service.name}.${service.namespace}:${JAEGER_OTLP_HTTP_PORT}/v1/traces`,
    );
  });
});
