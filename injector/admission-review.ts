// admission.k8s.io/v1 AdmissionReview in, AdmissionReview out. Pure: every input, however malformed, gets
// an answer; the server turns `{ error }` into HTTP 400.
import { isObject } from '../mesh-model/k8s-objects.ts';
import { decideInjection, type DenyCode, type InjectionSettings, type SkipReason } from './pod-injection.ts';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';

/** What happened to one review, for logs and metrics. */
export type Outcome =
  /** `warned`: injected, but the pod was allowed something that can step around capture. */
  | { result: 'injected'; reason?: 'warned' }
  | { result: 'skipped'; reason: SkipReason }
  | { result: 'denied'; reason: DenyCode; message: string }
  | { result: 'ignored'; reason: string };

export interface ReviewContext {
  namespace: string | undefined;
  /** The pod's name, or its generateName followed by `*`. */
  pod: string | undefined;
}

export type ReviewAnswer =
  { review: Record<string, unknown>; outcome: Outcome; context: ReviewContext } | { error: string };

function response(uid: string, fields: Record<string, unknown>): Record<string, unknown> {
  return {
    apiVersion: ADMISSION_API_VERSION,
    kind: 'AdmissionReview',
    response: { uid, allowed: true, ...fields },
  };
}

function podLabel(pod: Record<string, unknown>): string | undefined {
  const metadata = isObject(pod.metadata) ? pod.metadata : {};
  if (typeof metadata.name === 'string' && metadata.name !== '') return metadata.name;
  return typeof metadata.generateName === 'string' ? `${metadata.generateName}*` : undefined;
}

export function answerReview(body: unknown, settings: InjectionSettings): ReviewAnswer {
  if (!isObject(body) || body.kind !== 'AdmissionReview') return { error: 'expected an AdmissionReview' };
  if (body.apiVersion !== ADMISSION_API_VERSION) {
    return { error: `expected apiVersion ${ADMISSION_API_VERSION}, got ${JSON.stringify(body.apiVersion)}` };
  }
  const request = body.request;
  if (!isObject(request) || typeof request.uid !== 'string' || request.uid === '') {
    return { error: 'AdmissionReview has no request.uid' };
  }
  const uid = request.uid;
  const namespace = typeof request.namespace === 'string' ? request.namespace : undefined;
  const kind = isObject(request.kind) ? request.kind : {};
  const ignore = (reason: string): ReviewAnswer => ({
    review: response(uid, { auditAnnotations: { ignored: reason } }),
    outcome: { result: 'ignored', reason },
    context: { namespace, pod: undefined },
  });
  if (kind.group !== '' || kind.kind !== 'Pod') {
    return ignore(`not a Pod: ${String(kind.group)}/${String(kind.kind)}`);
  }
  if (request.operation !== 'CREATE') return ignore(`operation ${String(request.operation)}`);
  if (!isObject(request.object)) return ignore('request has no object');
  const pod = request.object;
  const context = { namespace, pod: podLabel(pod) };

  const decision = decideInjection(pod, settings);
  switch (decision.action) {
    case 'skip':
      return {
        review: response(uid, { auditAnnotations: { skipped: decision.reason } }),
        outcome: { result: 'skipped', reason: decision.reason },
        context,
      };
    case 'deny':
      return {
        review: response(uid, { allowed: false, status: { code: 400, message: decision.message } }),
        outcome: { result: 'denied', reason: decision.code, message: decision.message },
        context,
      };
    case 'inject':
      return {
        review: response(uid, {
          patchType: 'JSONPatch',
          patch: Buffer.from(JSON.stringify(decision.patch)).toString('base64'),
          ...(decision.warnings.length > 0
            ? { warnings: decision.warnings, auditAnnotations: { warnings: decision.warnings.join('; ') } }
            : {}),
        }),
        outcome:
          decision.warnings.length > 0 ? { result: 'injected', reason: 'warned' } : { result: 'injected' },
        context,
      };
  }
}
