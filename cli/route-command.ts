import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { parseFlags, UsageError } from '../lib/usage-error.ts';
import { ManifestError, readManifests } from '../io/manifest-files.ts';
import { buildMeshModel } from '../mesh-model/translate.ts';
import { buildEndpoints } from '../mesh-model/endpoints.ts';
import { explain, ExplainInputError, explanationJson } from '../mesh-model/explain.ts';
import { formatExplanation } from './format-explanation.ts';
import { buildGatewayView, planGatewayRequest, selectListener } from '../mesh-model/gateway-view.ts';
import { parseRequestTarget } from '../mesh-model/request-target.ts';
import { summarizePlan } from '../mesh-model/plan-summary.ts';
import type { K8sObject } from '../mesh-model/k8s-objects.ts';
import type { HeaderMap } from '../mesh-model/header-edits.ts';
import { runRouteTests } from './route-test.ts';

/** Manifests carry no trust domain; identities in what explain prints use the default one. */
const TRUST_DOMAIN = 'cluster.local';

const USAGE = `usage:
  sluice route explain -f FILE_OR_DIR [-f ...] --from NAMESPACE [-H 'Name: value']... [--output text|json|plan]
                     [--random R] [--merge-slashes] [--escaped-slashes reject|keep] METHOD URL
    (the URL's path is normalised as the sidecar does, with sluice proxy's flags of the same names)
  sluice route explain -f FILE_OR_DIR [-f ...] --gateway NAMESPACE/NAME [-H 'Name: value']... [--random R] METHOD URL
    (a request entering that Gateway: the URL's host is the Host, its port the listener port; prints the plan)
  sluice route test FILE...`;

export function parseHeaderFlag(text: string): [string, string] {
  const colon = text.indexOf(':');
  const name = colon === -1 ? '' : text.slice(0, colon).trim();
  if (!/^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/.test(name)) {
    throw new UsageError(`malformed header '${text}' (expected 'Name: value')`);
  }
  return [name, text.slice(colon + 1).trim()];
}

function explainCommand(args: string[]): number {
  const { values, positionals } = parseFlags(() =>
    parseArgs({
      args,
      allowPositionals: true,
      options: {
        file: { type: 'string', short: 'f', multiple: true },
        from: { type: 'string' },
        header: { type: 'string', short: 'H', multiple: true },
        output: { type: 'string', short: 'o' },
        random: { type: 'string' },
        'merge-slashes': { type: 'boolean' },
        'escaped-slashes': { type: 'string' },
        gateway: { type: 'string' },
      },
    }),
  );
  if (!values.file?.length) throw new UsageError('route explain needs at least one -f FILE_OR_DIR');
  if (values.gateway !== undefined) return explainGateway(values.file, values.gateway, positionals, values);
  if (!values.from) throw new UsageError('route explain needs --from NAMESPACE (the client namespace)');
  if (values.output !== undefined && !['json', 'text', 'plan'].includes(values.output)) {
    throw new UsageError(`unknown output format '${values.output}' (text, json or plan)`);
  }
  const random = values.random === undefined ? 0 : Number(values.random);
  if (values.random !== undefined && (values.random.trim() === '' || !(random >= 0 && random < 1))) {
    throw new UsageError(`--random must be a number in [0, 1), not '${values.random}'`);
  }
  const escapedSlashes = values['escaped-slashes'] ?? 'reject';
  if (escapedSlashes !== 'reject' && escapedSlashes !== 'keep')
    throw new UsageError(`--escaped-slashes must be reject or keep, got '${escapedSlashes}'`);
  if (positionals.length !== 2) throw new UsageError('route explain needs METHOD and URL');
  const [method, url] = positionals as [string, string];
  try {
    const objects = readManifests(values.file);
    const model = buildMeshModel(objects);
    const result = explain(model, {
      endpoints: buildEndpoints(objects, model.services, TRUST_DOMAIN),
      from: values.from,
      method,
      url,
      headers: (values.header ?? []).map(parseHeaderFlag),
      random,
      normalize: { mergeSlashes: values['merge-slashes'] === true, escapedSlashes },
    });
    process.stdout.write(
      values.output === 'json'
        ? `${JSON.stringify(explanationJson(result), null, 2)}\n`
        : values.output === 'plan'
          ? stringify(result.details.planSummary, { lineWidth: 0 })
          : formatExplanation(result),
    );
    return 0;
  } catch (err) {
    if (err instanceof ManifestError || err instanceof ExplainInputError) throw new UsageError(err.message);
    throw err;
  }
}

function explainGateway(
  files: string[],
  gateway: string,
  positionals: string[],
  values: { header?: string[]; random?: string; 'merge-slashes'?: boolean; 'escaped-slashes'?: string },
): number {
  const [namespace, name, ...more] = gateway.split('/');
  if (!namespace || !name || more.length > 0)
    throw new UsageError(`--gateway must be NAMESPACE/NAME, not '${gateway}'`);
  if (positionals.length !== 2) throw new UsageError('route explain needs METHOD and URL');
  const [method, text] = positionals as [string, string];
  const random = values.random === undefined ? 0 : Number(values.random);
  if (!(random >= 0 && random < 1))
    throw new UsageError(`--random must be a number in [0, 1), not '${values.random}'`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`'${text}' is not an http(s) URL`);
  }
  const scheme = url.protocol.slice(0, -1);
  if (scheme !== 'http' && scheme !== 'https') throw new UsageError(`'${text}' is not an http(s) URL`);
  let objects: K8sObject[];
  try {
    objects = readManifests(files);
  } catch (err) {
    if (err instanceof ManifestError) throw new UsageError(err.message);
    throw err;
  }
  const view = buildGatewayView(objects, namespace, name, TRUST_DOMAIN);
  if (!view)
    throw new UsageError(
      `Gateway ${gateway} not found, or not of a GatewayClass of sluice.dev/gateway-controller`,
    );
  const port = url.port === '' ? (scheme === 'https' ? 443 : 80) : Number(url.port);
  const target = parseRequestTarget(url.pathname + url.search);
  if (!target.ok) throw new UsageError(`'${text}': ${target.reason}`);
  const headers: HeaderMap = { host: url.host };
  for (const [k, v] of (values.header ?? []).map(parseHeaderFlag)) headers[k.toLowerCase()] = v;
  const escapedSlashes = values['escaped-slashes'] === 'keep' ? 'keep' : 'reject';
  const plan = planGatewayRequest(
    view,
    port,
    {
      method,
      path: target.path,
      query: target.query,
      scheme,
      authority: url.host,
      headers,
      normalize: { mergeSlashes: values['merge-slashes'] === true, escapedSlashes },
    },
    random,
  );
  const listener = selectListener(view, port, url.hostname)?.name ?? null;
  process.stdout.write(stringify({ listener, ...summarizePlan(plan, headers) }, { lineWidth: 0 }));
  return 0;
}

export function main(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'explain':
      return Promise.resolve(explainCommand(rest));
    case 'test':
      if (rest.length === 0 || rest.includes('-h') || rest.includes('--help')) throw new UsageError(USAGE);
      return Promise.resolve(runRouteTests(rest));
    case '-h':
    case '--help':
      process.stdout.write(`${USAGE}\n`);
      return Promise.resolve(0);
    default:
      throw new UsageError(sub === undefined ? USAGE : `unknown route subcommand '${sub}'\n${USAGE}`);
  }
}
