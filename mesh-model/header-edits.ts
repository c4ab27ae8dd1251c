import type { HeaderModifierSpec } from './k8s-objects.ts';
import type { HeaderEdit } from './model.ts';

const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;

/** Compiles a header modifier; returns an error message for invalid input. */
export function compileHeaderEdit(spec: HeaderModifierSpec | undefined): HeaderEdit | string {
  const set: [string, string][] = [];
  const add: [string, string][] = [];
  const remove: string[] = [];
  for (const [list, out] of [
    [spec?.set, set],
    [spec?.add, add],
  ] as const) {
    for (const h of Array.isArray(list) ? list : []) {
      if (typeof h.name !== 'string' || !HEADER_NAME.test(h.name))
        return `invalid header name ${JSON.stringify(h.name)}`;
      if (typeof h.value !== 'string' || /[\r\n\0]/.test(h.value))
        return `invalid value for header ${h.name}`;
      out.push([h.name.toLowerCase(), h.value]);
    }
  }
  for (const name of Array.isArray(spec?.remove) ? spec.remove : []) {
    if (typeof name !== 'string' || !HEADER_NAME.test(name))
      return `invalid header name ${JSON.stringify(name)}`;
    remove.push(name.toLowerCase());
  }
  return { set, add, remove };
}

export type HeaderMap = Record<string, string | string[] | undefined>;

/**
 * Applies set, then add (appended with ","), then remove. Edits in place: callers pass a copy they own.
 * Returns the same map for chaining.
 */
export function applyHeaderEdit(headers: HeaderMap, edit: HeaderEdit): HeaderMap {
  for (const [name, value] of edit.set) headers[name] = value;
  for (const [name, value] of edit.add) {
    const existing = headers[name];
    headers[name] =
      existing === undefined ? value : `${Array.isArray(existing) ? existing.join(',') : existing},${value}`;
  }
  for (const name of edit.remove) delete headers[name];
  return headers;
}

export function isEmptyEdit(edit: HeaderEdit): boolean {
  return edit.set.length === 0 && edit.add.length === 0 && edit.remove.length === 0;
}
