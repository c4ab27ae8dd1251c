import type { PathModifierSpec, RouteFilter } from './k8s-objects.ts';
import type { BackendTarget, HeaderEdit, Mirror, Redirect, Rewrite } from './model.ts';
import { compileHeaderEdit } from './header-edits.ts';

const HOSTNAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const REDIRECT_CODES = new Set([301, 302, 303, 307, 308]);
const NOT_REPEATABLE = new Set([
  'RequestHeaderModifier',
  'ResponseHeaderModifier',
  'RequestRedirect',
  'URLRewrite',
  'CORS',
]);

export interface CompiledFilters {
  requestHeaders: HeaderEdit | undefined;
  responseHeaders: HeaderEdit | undefined;
  redirect: Redirect | undefined;
  rewrite: Rewrite | undefined;
  mirrors: Mirror[];
  /** ExtensionRef filters cannot be resolved by Sluice: the spec says such requests must fail, not skip. */
  unresolved: string | undefined;
}

export type BackendResolver = (ref: NonNullable<RouteFilter['requestMirror']>['backendRef']) => BackendTarget;

function compilePathModifier(spec: PathModifierSpec | undefined): PathModifier | string | undefined {
  if (spec === undefined) return undefined;
  if (spec.type === 'ReplaceFullPath' && typeof spec.replaceFullPath === 'string') {
    return spec.replaceFullPath.startsWith('/')
      ? { type: 'ReplaceFullPath', value: spec.replaceFullPath }
      : 'replaceFullPath must start with /';
  }
  if (spec.type === 'ReplacePrefixMatch' && typeof spec.replacePrefixMatch === 'string') {
    return spec.replacePrefixMatch.startsWith('/')
      ? { type: 'ReplacePrefixMatch', value: spec.replacePrefixMatch }
      : 'replacePrefixMatch must start with /';
  }
  return `path modifier type ${JSON.stringify(spec.type)} needs its matching value`;
}

type PathModifier = NonNullable<Rewrite['path']>;

function compileHostname(value: unknown): string | undefined | Error {
  if (value === undefined) return undefined;
  return typeof value === 'string' && value.length <= 253 && HOSTNAME.test(value)
    ? value
    : new Error(`invalid hostname ${JSON.stringify(value)}`);
}

/**
 * Compiles a filter list in order. Returns an error message when the list is invalid as a whole (the
 * rule is then dropped and reported), following the CRD's validation rules.
 */
export function compileFilters(
  filters: RouteFilter[] | undefined,
  kind: 'HTTPRoute' | 'GRPCRoute',
  resolveBackend: BackendResolver,
): CompiledFilters | string {
  const out: CompiledFilters = {
    requestHeaders: undefined,
    responseHeaders: undefined,
    redirect: undefined,
    rewrite: undefined,
    mirrors: [],
    unresolved: undefined,
  };
  const seen = new Set<string>();
  for (const f of Array.isArray(filters) ? filters : []) {
    const type = typeof f.type === 'string' ? f.type : '';
    if (NOT_REPEATABLE.has(type) && seen.has(type)) return `${type} filter cannot be repeated`;
    seen.add(type);
    switch (type) {
      case 'RequestHeaderModifier':
      case 'ResponseHeaderModifier': {
        const spec = type === 'RequestHeaderModifier' ? f.requestHeaderModifier : f.responseHeaderModifier;
        if (spec === undefined) return `filter ${type} needs its configuration`;
        const edit = compileHeaderEdit(spec);
        if (typeof edit === 'string') return `${type}: ${edit}`;
        if (type === 'RequestHeaderModifier') out.requestHeaders = edit;
        else out.responseHeaders = edit;
        break;
      }
      case 'RequestRedirect':
      case 'URLRewrite': {
        if (kind === 'GRPCRoute') return `${type} is not a GRPCRoute filter`;
        const spec = type === 'RequestRedirect' ? f.requestRedirect : f.urlRewrite;
        if (spec === undefined) return `filter ${type} needs its configuration`;
        const hostname = compileHostname(spec.hostname);
        if (hostname instanceof Error) return `${type}: ${hostname.message}`;
        const path = compilePathModifier(spec.path);
        if (typeof path === 'string') return `${type}: ${path}`;
        if (type === 'URLRewrite') {
          out.rewrite = { hostname, path };
          break;
        }
        const r = f.requestRedirect!;
        const scheme = r.scheme;
        if (scheme !== undefined && scheme !== 'http' && scheme !== 'https') {
          return `RequestRedirect: unsupported scheme ${JSON.stringify(scheme)}`;
        }
        const statusCode = r.statusCode ?? 302;
        if (!REDIRECT_CODES.has(statusCode)) return `RequestRedirect: unsupported status code ${statusCode}`;
        if (r.port !== undefined && (!Number.isInteger(r.port) || r.port < 1 || r.port > 65535)) {
          return `RequestRedirect: invalid port ${JSON.stringify(r.port)}`;
        }
        out.redirect = { scheme, hostname, port: r.port, path, statusCode };
        break;
      }
      case 'RequestMirror': {
        const spec = f.requestMirror;
        if (spec?.backendRef === undefined) return 'RequestMirror needs a backendRef';
        let fraction = 1;
        if (spec.percent !== undefined && spec.fraction !== undefined) {
          return 'RequestMirror: only one of percent or fraction may be specified';
        }
        if (spec.percent !== undefined) {
          if (!Number.isInteger(spec.percent) || spec.percent < 0 || spec.percent > 100) {
            return 'RequestMirror: percent must be an integer from 0 to 100';
          }
          fraction = spec.percent / 100;
        } else if (spec.fraction !== undefined) {
          const { numerator, denominator = 100 } = spec.fraction;
          if (!Number.isInteger(numerator) || !Number.isInteger(denominator) || denominator < 1) {
            return 'RequestMirror: fraction needs integer numerator and positive denominator';
          }
          if (numerator! < 0 || numerator! > denominator) {
            return 'RequestMirror: numerator must be between 0 and the denominator';
          }
          fraction = numerator! / denominator;
        }
        out.mirrors.push({ backend: resolveBackend(spec.backendRef), fraction });
        break;
      }
      case 'ExtensionRef':
        out.unresolved = 'ExtensionRef filters are not supported by Sluice';
        break;
      default:
        return `unsupported filter type ${JSON.stringify(type)}`;
    }
  }
  if (out.redirect && out.rewrite) return 'RequestRedirect and URLRewrite filters cannot be used together';
  return out;
}
