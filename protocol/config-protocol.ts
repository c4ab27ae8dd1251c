// The config stream's wire format (ADR 0005), shared by the controller (config-hub.ts, config-server.ts) and
// the sidecar (sidecar/controller-config-source.ts). One JSON object per line:
//   {"type":"snapshot","version":"E:S","objects":[...]}
//   {"type":"delta","version":"E:S","base":"E:S","upserts":[...],"removals":["Kind/ns/name",...]}
//   {"type":"ping"}
//   {"type":"trust","bundle":PEM,"signer":PEM}
// A trust frame comes first on every stream and again whenever the mesh CA changes: the trust bundle (every
// root a peer's certificate may chain to) and the certificate of the CA that signs now (docs/operations.md).
// Versions are "<epoch>:<sequence>": the epoch changes when a controller process starts, so versions from
// two controllers never look alike. Objects are stripped Kubernetes objects (config-scope.ts).
import { isObject, type K8sObject } from '../mesh-model/k8s-objects.ts';

export const CONFIG_PATH = '/v1/config';
export const CONFIG_PORT = 15012;
export const DEFAULT_CONTROL_PLANE_NAMESPACE = 'sluice-system';
export const DEFAULT_TRUST_DOMAIN = 'cluster.local';
export const CONFIG_CONTENT_TYPE = 'application/x-ndjson';
export const CONTROLLER_NAMESPACE = 'sluice-system';
export const CONTROLLER_SERVICE_ACCOUNT = 'sluice-controller';
/** Frames (lines) larger than this are refused by the sidecar; a snapshot of a large mesh fits easily. */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;
const MAX_VERSION_LENGTH = 128;

/** The SPIFFE ID the sidecar expects the controller to present, by default. */
export function controllerSpiffeId(trustDomain: string): string {
  return `spiffe://${trustDomain}/ns/${CONTROLLER_NAMESPACE}/sa/${CONTROLLER_SERVICE_ACCOUNT}`;
}

export interface SnapshotFrame {
  type: 'snapshot';
  version: string;
  objects: K8sObject[];
}

export interface DeltaFrame {
  type: 'delta';
  version: string;
  base: string;
  upserts: K8sObject[];
  removals: string[];
}

export interface PingFrame {
  type: 'ping';
}

export interface TrustFrame {
  type: 'trust';
  /** PEM: every root of the mesh trust bundle. */
  bundle: string;
  /** PEM: the CA certificate that signs workload certificates now. */
  signer: string;
}

/** A frame type this version does not know (ignored, so the controller can add types later). */
export interface OtherFrame {
  type: 'other';
  name: string;
}

export type ConfigFrame = SnapshotFrame | DeltaFrame | PingFrame | TrustFrame | OtherFrame;

export function trustFrameLine(bundle: string, signer: string): Buffer {
  return Buffer.from(`${JSON.stringify({ type: 'trust', bundle, signer })}\n`);
}

export const PING_LINE = Buffer.from('{"type":"ping"}\n');

function isVersion(value: unknown): value is string {
  return typeof value === 'string' && value !== '' && value.length <= MAX_VERSION_LENGTH;
}

function isStreamedObject(value: unknown): value is K8sObject {
  if (!isObject(value) || typeof value.kind !== 'string') return false;
  const meta = value.metadata;
  return isObject(meta) && typeof meta.name === 'string' && meta.name !== '';
}

/** Parses and checks one line. Returns a reason instead of throwing; a bad frame ends the stream. */
export function parseFrame(line: Buffer | string): ConfigFrame | string {
  let value: unknown;
  try {
    value = JSON.parse(typeof line === 'string' ? line : line.toString('utf8'));
  } catch (err) {
    return `frame is not JSON: ${(err as Error).message}`;
  }
  if (!isObject(value) || typeof value.type !== 'string') return 'frame is not an object with a type';
  switch (value.type) {
    case 'ping':
      return { type: 'ping' };
    case 'snapshot': {
      const { version, objects } = value;
      if (!isVersion(version)) return 'snapshot frame without a valid version';
      if (!Array.isArray(objects) || !objects.every(isStreamedObject)) {
        return 'snapshot frame: objects must be a list of objects with kind and metadata.name';
      }
      return { type: 'snapshot', version, objects };
    }
    case 'delta': {
      const { version, base, upserts, removals } = value;
      if (!isVersion(version) || !isVersion(base)) return 'delta frame without a valid version and base';
      if (!Array.isArray(upserts) || !upserts.every(isStreamedObject)) {
        return 'delta frame: upserts must be a list of objects with kind and metadata.name';
      }
      if (!Array.isArray(removals) || !removals.every((r) => typeof r === 'string')) {
        return 'delta frame: removals must be a list of keys';
      }
      return { type: 'delta', version, base, upserts, removals };
    }
    case 'trust': {
      const { bundle, signer } = value;
      if (typeof bundle !== 'string' || !bundle.includes('-----BEGIN CERTIFICATE-----')) {
        return 'trust frame without a PEM bundle';
      }
      if (typeof signer !== 'string' || !signer.includes('-----BEGIN CERTIFICATE-----')) {
        return 'trust frame without a PEM signer';
      }
      return { type: 'trust', bundle, signer };
    }
    default:
      return { type: 'other', name: value.type.slice(0, 64) };
  }
}

/**
 * Splits a byte stream into lines without copying more than once per line and without holding more than
 * `maxLineBytes` of an unfinished line. Empty lines are skipped.
 */
export class LineSplitter {
  readonly #max: number;
  #parts: Buffer[] = [];
  #length = 0;

  constructor(maxLineBytes: number) {
    this.#max = maxLineBytes;
  }

  /** The complete lines in `chunk` (with what came before it); throws when a line exceeds the limit. */
  push(chunk: Buffer): Buffer[] {
    const lines: Buffer[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl === -1) break;
      const piece = chunk.subarray(start, nl);
      this.#check(this.#length + piece.length);
      const line = this.#length === 0 ? piece : Buffer.concat([...this.#parts, piece]);
      this.#parts = [];
      this.#length = 0;
      if (line.length > 0) lines.push(line);
      start = nl + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.#check(this.#length + rest.length);
      this.#parts.push(rest);
      this.#length += rest.length;
    }
    return lines;
  }

  /** Bytes of an unfinished line held. */
  get pendingBytes(): number {
    return this.#length;
  }

  #check(length: number): void {
    if (length > this.#max) throw new RangeError(`frame larger than ${this.#max} bytes`);
  }
}
