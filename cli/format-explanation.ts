import type { Explanation, ExplanationDetails } from '../mesh-model/explain.ts';
import type { HeaderEdit } from '../mesh-model/model.ts';

function edit(label: string, e: HeaderEdit | undefined): string[] {
  if (!e) return [];
  return [
    ...e.set.map(([k, v]) => `${label} set ${k}: ${v}`),
    ...e.add.map(([k, v]) => `${label} add ${k}: ${v}`),
    ...e.remove.map((k) => `${label} remove ${k}`),
  ];
}

/** Human-readable form of an explanation (same facts as the JSON). */
export function formatExplanation(e: Explanation & { details: ExplanationDetails }): string {
  const lines: string[] = [];
  const svc = `${e.service.namespace}/${e.service.name}:${e.service.port}`;
  lines.push(`Service:   ${svc}`);
  lines.push(
    e.route
      ? `Route:     ${e.route.kind} ${e.route.namespace}/${e.route.name} (${e.route.type}), rule ${e.ruleIndex}`
      : 'Route:     none',
  );
  const status = e.status === null ? '' : ` ${e.status}`;
  lines.push(`Action:    ${e.action}${status}${e.details.reason ? ` (${e.details.reason})` : ''}`);
  if (e.location) lines.push(`Location:  ${e.location}`);
  if (e.backends.length > 0) {
    const total = e.backends.reduce((s, b) => s + b.weight, 0);
    lines.push('Backends:');
    for (const b of e.backends) {
      const share = total === 0 ? 0 : Math.round((b.weight / total) * 1000) / 10;
      lines.push(`  ${b.namespace}/${b.name}:${b.port}  weight ${b.weight} (${share}%)`);
    }
  }
  if (e.details.endpoints.length > 0) {
    lines.push('Endpoints:');
    for (const ep of e.details.endpoints)
      lines.push(`  ${ep.backend}  ${ep.address}  ${ep.tier}${ep.pod ? ` (pod ${ep.pod})` : ''}`);
  }
  if (e.route && e.backend && e.backends.length > 1) {
    lines.push(
      `Chosen:    ${e.backend.namespace}/${e.backend.name}:${e.backend.port} (the only one with weight)`,
    );
  }
  lines.push(`Request:   ${e.request.method} ${e.request.path}`);
  for (const [k, v] of Object.entries(e.request.headers)) lines.push(`  ${k}: ${v}`);
  const r = e.responseHeaders;
  const responseEdits = [
    ...Object.entries(r.set).map(([k, v]) => `set ${k}: ${v}`),
    ...Object.entries(r.add).map(([k, v]) => `add ${k}: ${v}`),
    ...r.remove.map((k) => `remove ${k}`),
  ];
  if (responseEdits.length > 0) lines.push('Response headers:', ...responseEdits.map((l) => `  ${l}`));
  const d = e.details;
  if (d.backendFilters.length > 0) {
    lines.push(
      e.backend
        ? 'Backend filters (already applied above, the backend cannot vary):'
        : 'Backend filters (the request above has the rule filters only; the chosen backend adds its own):',
    );
  }
  for (const f of d.backendFilters) {
    lines.push(
      `Backend ${f.backend}:`,
      ...edit('request', f.request)
        .concat(edit('response', f.response))
        .map((l) => `  ${l}`),
    );
  }
  for (const m of d.mirrors)
    lines.push(`Mirror:    ${m.backend.namespace}/${m.backend.name}:${m.backend.port} (${m.percent}%)`);
  if (d.requestTimeoutMs !== null) lines.push(`Timeout:   request ${d.requestTimeoutMs} ms`);
  if (d.backendRequestTimeoutMs !== null)
    lines.push(`Timeout:   backend request ${d.backendRequestTimeoutMs} ms`);
  if (d.retry) {
    lines.push(
      `Retry:     attempts ${d.retry.attempts ?? 'default'}, backoff ${d.retry.backoffMs ?? 'default'} ms, codes ${d.retry.codes.join(',') || 'none'}`,
    );
  }
  for (const w of e.warnings) lines.push(`Warning:   ${w}`);
  return `${lines.join('\n')}\n`;
}
