// OTel HTTP semantic conventions: a method outside the standard nine is reported as _OTHER, in metric
// labels (bounded label sets) and in spans (with the method itself in http.request.method_original).
const KNOWN_METHODS = new Set([
  'CONNECT',
  'DELETE',
  'GET',
  'HEAD',
  'OPTIONS',
  'PATCH',
  'POST',
  'PUT',
  'TRACE',
]);

/** The http.request.method value: the method, or _OTHER for one outside the standard nine. */
export function otelMethod(method: string | undefined): string {
  return method !== undefined && KNOWN_METHODS.has(method) ? method : '_OTHER';
}
