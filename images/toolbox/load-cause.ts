/**
 * The cause string `load` records for a failed request (without the host label that load.ts puts first):
 * the method (GET, POST or gRPC), what went wrong, and the first line of the reply's body or grpc-message,
 * e.g. `POST status 502 (the app reset the request before answering …)` or `gRPC ECONNRESET`.
 */

/** The longest reply line kept: enough to name the cause, short enough to count causes by. */
export const REPLY_LINE_MAX = 120;

/** The first non-empty line of a reply body or grpc-message, at most REPLY_LINE_MAX characters. */
export function replyLine(text: string): string {
  const line =
    text
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l !== '') ?? '';
  return line.length > REPLY_LINE_MAX ? `${line.slice(0, REPLY_LINE_MAX - 1)}…` : line;
}

/** A grpc-message is percent-encoded (gRPC over HTTP/2); an undecodable one is kept as it came. */
export function decodeGrpcMessage(message: string): string {
  try {
    return decodeURIComponent(message);
  } catch {
    return message;
  }
}

export function failureCause(method: string, detail: string, reply?: string | null): string {
  const line = reply == null ? '' : replyLine(reply);
  return line === '' ? `${method} ${detail}` : `${method} ${detail} (${line})`;
}
