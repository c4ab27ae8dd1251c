import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { parseFlags, UsageError } from '../lib/usage-error.ts';
import { ManifestError, readManifests } from '../io/manifest-files.ts';
import { buildMeshModel } from '../mesh-model/translate.ts';
import { explain, ExplainInputError, explanationJson } from '../mesh-model/explain.ts';
import { formatExplanation } from './format-explanation.ts';
import { runRouteTests } from './route-test.ts';

const USAGE = `usage:
  sluice route explain -f FILE_OR_DIR [-f ...] --from NAMESPACE [-H 'Name: value']... [--output text|json|plan]
                     [--random R] [--merge-slashes] [--escaped-slashes reject|keep] METHOD URL
    (the URL's path is normalised as the sidecar does, with sluice proxy's flags of the same names)
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
      },
    }),
  );
  if (!values.file?.length) throw new UsageError('route explain needs at least one -f FILE_OR_DIR');
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
    const model = buildMeshModel(readManifests(values.file));
    const result = explain(model, {
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
