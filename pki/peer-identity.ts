import type { PeerCertificate, TLSSocket } from 'node:tls';
import { PkiError } from './errors.ts';
import { parseSpiffeId, parseWorkloadSpiffeId, type WorkloadIdentity } from './spiffe-id.ts';

export class PeerIdentityError extends PkiError {
  override name = 'PeerIdentityError';
}

export interface PeerIdentity extends WorkloadIdentity {
  readonly spiffeId: string;
}

/**
 * Splits Node's `subjectaltname` text ("DNS:a, URI:spiffe://td/x", values needing escapes are written
 * as JSON strings) into [type, value] pairs. Returns undefined when the text is not in that form.
 */
export function parseSubjectAltName(text: string): [string, string][] | undefined {
  const entries: [string, string][] = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon === -1) return undefined;
    const type = text.slice(i, colon);
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      // A JSON string: find its closing quote, skipping escaped characters.
      let j = colon + 2;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (j >= text.length) return undefined;
      try {
        value = JSON.parse(text.slice(colon + 1, j + 1)) as string;
      } catch {
        return undefined;
      }
      end = j + 1;
    } else {
      const comma = text.indexOf(', ', colon + 1);
      end = comma === -1 ? text.length : comma;
      value = text.slice(colon + 1, end);
    }
    entries.push([type, value]);
    if (end === text.length) break;
    if (!text.startsWith(', ', end)) return undefined;
    i = end + 2;
  }
  return entries;
}

/**
 * The SPIFFE ID of a peer certificate as given by TLSSocket.getPeerCertificate(): the certificate must
 * carry exactly one URI SAN, and it must be a valid SPIFFE ID. Throws PeerIdentityError otherwise.
 */
export function spiffeIdFromCertificate(
  cert: Partial<Pick<PeerCertificate, 'subjectaltname'>> | undefined,
): string {
  const text = cert?.subjectaltname;
  if (typeof text !== 'string' || text === '') {
    throw new PeerIdentityError('certificate has no subjectAltName');
  }
  const entries = parseSubjectAltName(text);
  if (!entries) throw new PeerIdentityError('certificate subjectAltName cannot be parsed');
  const uris = entries.filter(([type]) => type === 'URI').map(([, value]) => value);
  if (uris.length !== 1) {
    throw new PeerIdentityError(`certificate must have exactly one URI SAN, it has ${uris.length}`);
  }
  const uri = uris[0]!;
  try {
    parseSpiffeId(uri);
  } catch (err) {
    throw new PeerIdentityError(`certificate URI SAN is not a valid SPIFFE ID: ${(err as Error).message}`);
  }
  return uri;
}

/**
 * After a handshake on a mesh server: the client's workload identity. Requires the chain to have been
 * verified against the trust bundle (socket.authorized) and the SPIFFE ID to be a workload ID in
 * `trustDomain`. Throws PeerIdentityError; the caller should then close the connection.
 */
export function authenticatePeer(socket: TLSSocket, trustDomain: string): PeerIdentity {
  if (!socket.authorized) {
    const reason = socket.authorizationError as unknown;
    const text =
      reason instanceof Error ? reason.message : typeof reason === 'string' ? reason : 'no certificate';
    throw new PeerIdentityError(`peer certificate not verified: ${text}`);
  }
  let spiffeId: string;
  try {
    spiffeId = spiffeIdFromCertificate(socket.getPeerCertificate());
  } catch (err) {
    throw new PeerIdentityError(`peer ${(err as Error).message}`);
  }
  let workload: WorkloadIdentity;
  try {
    workload = parseWorkloadSpiffeId(spiffeId);
  } catch (err) {
    throw new PeerIdentityError((err as Error).message);
  }
  if (workload.trustDomain !== trustDomain) {
    throw new PeerIdentityError(`peer ${spiffeId} is not in trust domain '${trustDomain}'`);
  }
  return { ...workload, spiffeId };
}
