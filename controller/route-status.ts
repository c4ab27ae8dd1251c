// Route status for Service parents (GAMMA): the status.parents entries Sluice's controller writes on
// HTTPRoutes and GRPCRoutes. Pure: the controller feeds it objects from informers and writes the result of
// mergeRouteStatus only when it is defined. Field limits follow the Gateway API v1.6.1 standard CRDs.
//
// Decisions (see the tests for each):
// - One entry per parentRef that is a core Service (kind Service, group "", "core" or unset: the same test
//   the mesh model uses to attach), in parentRefs order, with the parentRef echoed exactly as written.
//   Gateway and other parents get nothing from us; a route without Service parents gets no entry.
// - A Service parent that does not exist, or has no port matching port/sectionName, gets an entry with
//   Accepted=False/NoMatchingParent (the model's problem). The spec allows leaving unresolvable parents out,
//   but Service parents are the mesh's alone, and silence would hide the mistake from the route's author.
// - Accepted=False/UnsupportedValue when no rule is left (the model's route-wide problem). Otherwise
//   Accepted=True, plus PartiallyInvalid=True/UnsupportedValue ("Dropped Rule(s): ...") when some rules
//   were dropped; PartiallyInvalid is never set on a parent that is not accepted, as the spec requires.
// - ResolvedRefs is always present: True/ResolvedRefs, or False with the reason of the first unresolved
//   reference and a message listing all of them (capped to the CRD's 32768 characters).
// - Cross-namespace backendRefs follow the model, which allows them without a ReferenceGrant, so
//   RefNotPermitted is never produced here.
// - Conditions always come in the order Accepted, ResolvedRefs, PartiallyInvalid; observedGeneration is the
//   route's metadata.generation (the model is recompiled from the object when it describes another one).
import type {
  Condition as ModelCondition,
  ConditionStatus,
  StatusParentRef,
} from '../mesh-model/gateway-status.ts';
import { MESH_CONTROLLER_NAME } from '../mesh-model/controller-name.ts';
import { compileRoute } from '../mesh-model/compile-route.ts';
import { echoParentRef } from '../mesh-model/gateway-routes.ts';
import { isObject, isShaped, type K8sObject, type ParentReference } from '../mesh-model/k8s-objects.ts';
import type { CompiledRoute, MeshModel, RouteKind, RouteProblem } from '../mesh-model/model.ts';

/** status.parents maxItems. */
export const MAX_PARENT_STATUSES = 32;
/** Condition message maxLength (the API counts characters; UTF-16 length is never smaller). */
export const MAX_CONDITION_MESSAGE = 32768;
const REASON = /^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/;
const MAX_REASON = 1024;
/** Room kept for "; and N more" when a list of messages is cut short. */
const MORE_RESERVE = 40;

/** metav1.Condition as the route CRDs define it: the model's condition with the times the API adds. */
export interface Condition extends ModelCondition {
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface RouteParentStatus {
  parentRef: StatusParentRef;
  controllerName: string;
  conditions: Condition[];
}

/** An HTTPRoute or GRPCRoute as read from the API server: untrusted, every field optional. */
export type RouteObject = K8sObject;

/** The timestamp format Kubernetes writes for conditions (RFC 3339, whole seconds, UTC). */
export function conditionTime(date: Date = new Date()): string {
  return date.toISOString().replace(/\.\d+Z$/, 'Z');
}

/** The route's current status.parents, whoever wrote them; undefined when there are none. */
export function readParentStatuses(routeObject: RouteObject): RouteParentStatus[] | undefined {
  const status = routeObject.status;
  if (!isObject(status) || !Array.isArray(status.parents)) return undefined;
  return status.parents as RouteParentStatus[];
}

/** Mirrors the model's attachment test, so that every parent the model considers gets an entry. */
function isServiceParent(ref: ParentReference | null | undefined): ref is ParentReference {
  if (!isShaped(ref) || ref.kind !== 'Service') return false;
  return ref.group === undefined || ref.group === '' || ref.group === 'core';
}

/**
 * The compiled form of exactly this object: the one passed in or found in the model when kind, name and
 * generation agree, otherwise compiled now (parentIndex values are only meaningful for the same spec).
 */
function compiledFor(
  route: CompiledRoute | undefined,
  routeObject: RouteObject,
  kind: RouteKind,
  model: MeshModel,
): CompiledRoute | undefined {
  const namespace = routeObject.metadata?.namespace ?? 'default';
  const name = routeObject.metadata?.name;
  const generation = routeObject.metadata?.generation ?? 0;
  const current = (r: CompiledRoute | undefined): r is CompiledRoute =>
    r?.kind === kind && r.namespace === namespace && r.name === name && r.generation === generation;
  if (current(route)) return route;
  const known = model.routes.find(current);
  if (known) return known;
  const compiled = compileRoute(routeObject, kind, model.services);
  return typeof compiled === 'string' ? undefined : compiled;
}

function routeKind(routeObject: RouteObject, route: CompiledRoute | undefined): RouteKind | undefined {
  const kind = routeObject.kind ?? route?.kind;
  return kind === 'HTTPRoute' || kind === 'GRPCRoute' ? kind : undefined;
}

/** Cuts text to max UTF-16 units, never inside a surrogate pair, marking the cut. */
export function capText(text: string, max: number = MAX_CONDITION_MESSAGE): string {
  if (text.length <= max) return text;
  let cut = text.slice(0, Math.max(0, max - 1));
  const last = cut.charCodeAt(cut.length - 1);
  if (last >= 0xd800 && last <= 0xdbff) cut = cut.slice(0, -1);
  return `${cut}…`;
}

/** Joins messages with "; ", keeping whole messages that fit and counting the rest ("; and N more"). */
export function listMessages(messages: readonly string[], max: number = MAX_CONDITION_MESSAGE): string {
  let out = '';
  for (const [i, message] of messages.entries()) {
    const left = messages.length - i - 1;
    const next = out === '' ? message : `${out}; ${message}`;
    if (next.length <= (left === 0 ? max : max - MORE_RESERVE)) {
      out = next;
      continue;
    }
    let omitted = left + 1;
    if (out === '') {
      out = capText(message, left === 0 ? max : max - MORE_RESERVE);
      omitted = left;
    }
    return omitted > 0 ? `${out}; and ${omitted} more` : out;
  }
  return out;
}

function condition(
  type: string,
  status: ConditionStatus,
  reason: string,
  fallbackReason: string,
  message: string,
  now: string,
  generation: number | undefined,
): Condition {
  const safeReason = reason.length <= MAX_REASON && REASON.test(reason) ? reason : fallbackReason;
  const c: Condition = {
    type,
    status,
    reason: safeReason,
    message: capText(message),
    lastTransitionTime: now,
  };
  if (generation !== undefined) c.observedGeneration = generation;
  return c;
}

function parentConditions(
  route: CompiledRoute,
  parentIndex: number,
  now: string,
  generation: number | undefined,
): Condition[] {
  // Problems without parentIndex concern the whole route, hence every parent.
  const problems = route.problems.filter(
    (p: RouteProblem) => p.parentIndex === undefined || p.parentIndex === parentIndex,
  );
  const notAccepted =
    problems.find((p) => p.type === 'Accepted' && p.parentIndex === parentIndex) ??
    problems.find((p) => p.type === 'Accepted');
  const attachment = route.attachments.find((a) => a.parentIndex === parentIndex);
  const conditions: Condition[] = [];
  if (notAccepted) {
    conditions.push(
      condition(
        'Accepted',
        'False',
        notAccepted.reason,
        'UnsupportedValue',
        notAccepted.message,
        now,
        generation,
      ),
    );
  } else if (!attachment) {
    // The model reports every parent it could not attach; this only guards against a model bug.
    conditions.push(
      condition(
        'Accepted',
        'False',
        'NoMatchingParent',
        'NoMatchingParent',
        'parent not attached',
        now,
        generation,
      ),
    );
  } else {
    const svc = attachment.service;
    const ports = attachment.ports.join(', ');
    const message = `attached to Service ${svc.namespace}/${svc.name} port${attachment.ports.length === 1 ? '' : 's'} ${ports}`;
    conditions.push(condition('Accepted', 'True', 'Accepted', 'Accepted', message, now, generation));
  }

  const unresolved = problems.filter((p) => p.type === 'ResolvedRefs');
  const firstUnresolved = unresolved[0];
  conditions.push(
    firstUnresolved
      ? condition(
          'ResolvedRefs',
          'False',
          firstUnresolved.reason,
          'BackendNotFound',
          listMessages(unresolved.map((p) => p.message)),
          now,
          generation,
        )
      : condition(
          'ResolvedRefs',
          'True',
          'ResolvedRefs',
          'ResolvedRefs',
          'all references resolved',
          now,
          generation,
        ),
  );

  const partial = problems.find((p) => p.type === 'PartiallyInvalid');
  if (partial && conditions[0]?.status === 'True') {
    conditions.push(
      condition(
        'PartiallyInvalid',
        'True',
        partial.reason,
        'UnsupportedValue',
        partial.message,
        now,
        generation,
      ),
    );
  }
  return conditions;
}

/**
 * The status.parents Sluice wants for one route: one entry per parentRef that is a Service, in parentRefs
 * order. `route` is the compiled route from `model` when the caller has it; `now` is the
 * lastTransitionTime for conditions (mergeRouteStatus keeps older times where the status is unchanged).
 */
export function desiredParentStatuses(
  route: CompiledRoute | undefined,
  routeObject: RouteObject,
  model: MeshModel,
  now: string,
): RouteParentStatus[] {
  const spec = routeObject.spec;
  const parentRefs = isObject(spec) && Array.isArray(spec.parentRefs) ? spec.parentRefs : [];
  const serviceParents: { index: number; ref: ParentReference }[] = [];
  parentRefs.forEach((ref: ParentReference | null | undefined, index) => {
    if (isServiceParent(ref)) serviceParents.push({ index, ref });
  });
  if (serviceParents.length === 0) return [];
  const kind = routeKind(routeObject, route);
  const compiled = kind && compiledFor(route, routeObject, kind, model);
  // Without a name there is no object the controller could write to.
  if (!compiled) return [];
  const g = routeObject.metadata?.generation;
  const generation = Number.isSafeInteger(g) && g! >= 0 ? g : undefined;

  const out: RouteParentStatus[] = [];
  for (const { index, ref } of serviceParents) {
    const parentRef = echoParentRef(ref);
    // The API rejects a status entry without a parent name (and the spec never has one).
    if (!parentRef) continue;
    out.push({
      parentRef,
      controllerName: MESH_CONTROLLER_NAME,
      conditions: parentConditions(compiled, index, now, generation),
    });
  }
  return out;
}

function isOurs(entry: unknown, controllerName: string): boolean {
  return isObject(entry) && entry.controllerName === controllerName;
}

/** Identity of a parentRef: the fields exactly as written (ours are echoed from spec, so they compare). */
function parentKey(ref: unknown): string {
  const r = isObject(ref) ? ref : {};
  return JSON.stringify(
    ['group', 'kind', 'namespace', 'name', 'sectionName', 'port'].map((f) => r[f] ?? null),
  );
}

/** The desired entry, keeping each condition's lastTransitionTime from `previous` when its status held. */
function keepTransitionTimes(desired: RouteParentStatus, previous: unknown): RouteParentStatus {
  const old =
    isObject(previous) && Array.isArray(previous.conditions) ? (previous.conditions as unknown[]) : [];
  return {
    ...desired,
    conditions: desired.conditions.map((c) => {
      const before = old.find((o) => isObject(o) && o.type === c.type);
      if (
        isObject(before) &&
        before.status === c.status &&
        typeof before.lastTransitionTime === 'string' &&
        before.lastTransitionTime !== ''
      ) {
        return { ...c, lastTransitionTime: before.lastTransitionTime };
      }
      return c;
    }),
  };
}

/** Structural equality of JSON values; key order does not matter, undefined members count as absent. */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    return (
      Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => sameJson(v, b[i]))
    );
  }
  if (!isObject(a) || !isObject(b)) return false;
  const keys = (o: Record<string, unknown>): string[] => Object.keys(o).filter((k) => o[k] !== undefined);
  const ka = keys(a);
  return ka.length === keys(b).length && ka.every((k) => Object.hasOwn(b, k) && sameJson(a[k], b[k]));
}

/**
 * The full status.parents to write, or undefined when it would not change. Entries of other controllers are
 * kept untouched and in place; ours are replaced where they stand, dropped when their parentRef is gone,
 * and new ones appended in parentRefs order. When the list would exceed the CRD's 32 entries, other
 * controllers' entries win and ours are cut from the end: removing theirs would start a write war (they
 * re-add them), and an over-long list would make the API reject the whole update.
 */
export function mergeRouteStatus(
  existing: RouteParentStatus[] | undefined,
  desired: RouteParentStatus[],
  controllerName: string = MESH_CONTROLLER_NAME,
): RouteParentStatus[] | undefined {
  const before: unknown[] = Array.isArray(existing) ? existing : [];
  const wanted = new Map<string, RouteParentStatus>();
  for (const d of desired) {
    const key = parentKey(d.parentRef);
    if (!wanted.has(key)) wanted.set(key, d);
  }
  const placed = new Set<string>();
  const merged: { entry: RouteParentStatus; ours: boolean }[] = [];
  for (const entry of before) {
    if (!isOurs(entry, controllerName)) {
      merged.push({ entry: entry as RouteParentStatus, ours: false });
      continue;
    }
    const key = parentKey((entry as Record<string, unknown>).parentRef);
    const next = wanted.get(key);
    // Gone from spec (or a duplicate of an entry already placed): ours to clean up.
    if (!next || placed.has(key)) continue;
    placed.add(key);
    merged.push({ entry: keepTransitionTimes(next, entry), ours: true });
  }
  for (const [key, d] of wanted) if (!placed.has(key)) merged.push({ entry: d, ours: true });

  let room = MAX_PARENT_STATUSES - merged.filter((m) => !m.ours).length;
  const result: RouteParentStatus[] = [];
  for (const m of merged) {
    if (m.ours) {
      if (room <= 0) continue;
      room--;
    }
    result.push(m.entry);
  }
  return sameJson(result, before) ? undefined : result;
}
