import type { CompiledRoute, MatchEntry, MeshModel, MeshService, RouteKind, RouteType } from './model.ts';
import { servicePortKey } from './model.ts';
import { compareGrpcEntries, compareHttpEntries } from './precedence.ts';

/** The routing table one client namespace sees for one Service port. Built once, read per request. */
export interface PortRouting {
  service: MeshService;
  port: number;
  /** undefined: no route applies, traffic passes through to the Service. */
  type: RouteType | undefined;
  kind: RouteKind | undefined;
  routes: readonly CompiledRoute[];
  /** Attached routes that do not apply to this client, with why (for explain and status). */
  ignored: readonly { route: CompiledRoute; reason: string }[];
  /** Entries by first path segment (HTTP only), each list merged with `wildcard` in precedence order. */
  bySegment: ReadonlyMap<string, readonly MatchEntry[]>;
  /** Entries that can match any first segment (PathPrefix "/", regex paths, every gRPC entry). */
  wildcard: readonly MatchEntry[];
}

/**
 * Applies GAMMA's producer/consumer rules: consumer routes (in the client's namespace, attached to a
 * Service elsewhere) replace the producer routes (in the Service's namespace) for that client; routes in
 * any other namespace do not apply. Among the chosen routes a GRPCRoute wins over an HTTPRoute; the two
 * kinds never merge.
 */
export function buildPortRouting(
  model: MeshModel,
  clientNamespace: string,
  service: MeshService,
  port: number,
): PortRouting {
  const attached = model.attached.get(servicePortKey(service.namespace, service.name, port)) ?? [];
  const ignored: { route: CompiledRoute; reason: string }[] = [];
  const consumer = attached.filter(
    (r) => r.namespace === clientNamespace && r.namespace !== service.namespace,
  );
  const producer = attached.filter((r) => r.namespace === service.namespace);
  const type: RouteType | undefined =
    consumer.length > 0 ? 'consumer' : producer.length > 0 ? 'producer' : undefined;
  const chosen = type === 'consumer' ? consumer : producer;
  if (type === 'consumer') {
    for (const r of producer) {
      ignored.push({
        route: r,
        reason: `producer route overridden by consumer routes in namespace ${clientNamespace}`,
      });
    }
  }
  return routeTable(service, port, type, chosen, ignored);
}

/**
 * The routing table for a set of routes that all apply (the mesh's chosen producer or consumer routes, a
 * gateway listener's routes for one hostname). A GRPCRoute wins over an HTTPRoute; the two kinds never merge.
 */
export function routeTable(
  service: MeshService,
  port: number,
  type: RouteType | undefined,
  routes: readonly CompiledRoute[],
  ignored: { route: CompiledRoute; reason: string }[] = [],
): PortRouting {
  let chosen = routes;
  const kind: RouteKind | undefined = chosen.some((r) => r.kind === 'GRPCRoute')
    ? 'GRPCRoute'
    : chosen.length > 0
      ? 'HTTPRoute'
      : undefined;
  if (kind === 'GRPCRoute') {
    for (const r of chosen) {
      if (r.kind === 'HTTPRoute')
        ignored.push({ route: r, reason: 'a GRPCRoute on the same Service port takes precedence' });
    }
    chosen = chosen.filter((r) => r.kind === 'GRPCRoute');
  }
  const entries = chosen.flatMap((r) => r.entries);
  entries.sort(kind === 'GRPCRoute' ? compareGrpcEntries : compareHttpEntries);
  return { service, port, type, kind, routes: chosen, ignored, ...indexBySegment(entries) };
}

/** First path segment of a path ("/a/b" → "a", "/" → ""). */
export function firstSegment(path: string): string {
  const end = path.indexOf('/', 1);
  return end === -1 ? path.slice(1) : path.slice(1, end);
}

function indexBySegment(sorted: MatchEntry[]): Pick<PortRouting, 'bySegment' | 'wildcard'> {
  const segmentOf = (e: MatchEntry): string | undefined => {
    const m = e.match;
    if (m.kind === 'GRPCRoute') return undefined;
    if (m.pathType === 'RegularExpression' || (m.pathType === 'PathPrefix' && m.path === '/')) {
      return undefined;
    }
    return firstSegment(m.path);
  };
  const segments = new Set<string>();
  for (const e of sorted) {
    const s = segmentOf(e);
    if (s !== undefined) segments.add(s);
  }
  const bySegment = new Map<string, MatchEntry[]>();
  for (const s of segments)
    bySegment.set(
      s,
      sorted.filter((e) => segmentOf(e) === s || segmentOf(e) === undefined),
    );
  return { bySegment, wildcard: sorted.filter((e) => segmentOf(e) === undefined) };
}
