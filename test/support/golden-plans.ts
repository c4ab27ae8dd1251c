// The golden request-plan corpus (test/golden/*.in.yaml → *.out.yaml), format in test/golden/README.md.
// Shared by the pure test (test/unit/golden-plans.test.ts) and the sidecar test
// (test/integration/golden-sidecar.test.ts), so both read the cases the same way.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import type { K8sObject } from '../../mesh-model/k8s-objects.ts';
import type { MeshModel, MeshService } from '../../mesh-model/model.ts';
import type { HeaderMap } from '../../mesh-model/header-edits.ts';
import { buildMeshModel } from '../../mesh-model/translate.ts';
import { buildPortRouting } from '../../mesh-model/port-routing.ts';
import { resolveService } from '../../mesh-model/explain.ts';
import { plan, type RequestPlan } from '../../mesh-model/request-plan.ts';
import { parseRequestTarget } from '../../mesh-model/request-target.ts';
import { summarizePlan, type PlanSummary } from '../../mesh-model/plan-summary.ts';

export const GOLDEN_DIR = new URL('../golden/', import.meta.url).pathname;

export interface GoldenRequest {
  name: string;
  method: string;
  url: string;
  /**
   * The request-target sent as is instead of the URL's path and query (origin-form or absolute-form, not
   * normalised first); the URL still names the Service dialled and the Host header.
   */
  target: string | undefined;
  headers: Record<string, string>;
  /** Sent as a unary gRPC call over h2c (POST, content-type application/grpc, te: trailers). */
  grpc: boolean;
  /** The number in [0, 1) that decides the weighted backend choice. */
  random: number;
}

export interface GoldenCase {
  name: string;
  from: string;
  objects: K8sObject[];
  model: MeshModel;
  requests: GoldenRequest[];
}

export interface PlannedRequest {
  request: GoldenRequest;
  service: MeshService;
  port: number;
  /** Request headers as the sidecar receives them (lowercased, host included). */
  received: HeaderMap;
  plan: RequestPlan;
  summary: PlanSummary;
}

/** The case names: every `<name>.in.yaml` in test/golden. */
export function goldenCaseNames(): string[] {
  return readdirSync(GOLDEN_DIR)
    .filter((f) => f.endsWith('.in.yaml'))
    .map((f) => f.slice(0, -'.in.yaml'.length))
    .sort();
}

export function outFile(name: string): string {
  return join(GOLDEN_DIR, `${name}.out.yaml`);
}

export function readGoldenCase(name: string): GoldenCase {
  const doc = parse(readFileSync(join(GOLDEN_DIR, `${name}.in.yaml`), 'utf8')) as {
    from: string;
    random?: number;
    manifests: K8sObject[];
    requests: Partial<GoldenRequest>[];
  };
  const requests = doc.requests.map((r, i): GoldenRequest => {
    const grpc = r.grpc === true;
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries((r.headers ?? {}) as Record<string, unknown>))
      headers[k.toLowerCase()] = String(v);
    if (grpc) Object.assign(headers, { 'content-type': 'application/grpc', te: 'trailers' });
    return {
      name: r.name ?? `request ${i + 1}`,
      method: grpc ? 'POST' : (r.method ?? 'GET'),
      url: r.url!,
      target: r.target,
      headers,
      grpc,
      random: r.random ?? doc.random ?? 0,
    };
  });
  return { name, from: doc.from, objects: doc.manifests, model: buildMeshModel(doc.manifests), requests };
}

/** The pure plan of every request of a case. */
export function planGoldenCase(c: GoldenCase): PlannedRequest[] {
  return c.requests.map((request) => {
    const url = new URL(request.url);
    const service = resolveService(c.model, url.hostname, c.from);
    const port = url.port === '' ? 80 : Number(url.port);
    const target = parseRequestTarget(request.target ?? url.pathname + url.search);
    if (!target.ok) throw new Error(`${c.name}: ${request.name}: ${target.reason}`);
    // As the sidecar does: an absolute-form target's authority wins over Host.
    const authority = target.authority ?? url.host;
    const received: HeaderMap =
      target.authority === undefined
        ? { host: url.host, ...request.headers }
        : { ...request.headers, host: target.authority };
    const routing = buildPortRouting(c.model, c.from, service, port);
    const p = plan(
      routing,
      {
        method: request.method,
        path: target.path,
        query: target.query,
        scheme: 'http',
        authority,
        headers: received,
      },
      request.random,
    );
    return { request, service, port, received, plan: p, summary: summarizePlan(p, received) };
  });
}

export interface GoldenOutput {
  /** Warnings from reading the manifests (as `route explain` prints them). */
  warnings: string[];
  requests: { name: string; request: string; plan: PlanSummary }[];
}

/** What a .out.yaml holds: the model's warnings, then one entry per request, in order. */
export function goldenOutput(c: GoldenCase): GoldenOutput {
  return {
    warnings: [...c.model.warnings],
    requests: planGoldenCase(c).map((r) => ({
      name: r.request.name,
      request:
        r.request.target === undefined
          ? `${r.request.method} ${r.request.url}`
          : `${r.request.method} ${r.request.target} (to ${r.request.url})`,
      plan: r.summary,
    })),
  };
}
