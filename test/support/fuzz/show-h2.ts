// Prints the frames of one generated HTTP/2 sequence (for reproducing a fuzz finding):
// node test/support/fuzz/show-h2.ts SEED INDEX
import { Prng } from './prng.ts';
import { H2_PREFACE, h2Sequence } from './h2-frames.ts';

export function h2SequenceAt(seed: number, index: number): { bytes: Buffer; kind: string } {
  const root = new Prng((seed ^ 0x9e3779b9) >>> 0);
  let seq: { bytes: Buffer; kind: string } = { bytes: Buffer.alloc(0), kind: '' };
  for (let i = 0; i <= index; i++) seq = h2Sequence(root.fork(), `${seed}-${i}`);
  return seq;
}

export function describeFrames(bytes: Buffer): string[] {
  const out: string[] = [];
  let off = bytes.subarray(0, H2_PREFACE.length).equals(H2_PREFACE) ? H2_PREFACE.length : 0;
  if (off === 0) out.push('(damaged preface)');
  const names = [
    'DATA',
    'HEADERS',
    'PRIORITY',
    'RST_STREAM',
    'SETTINGS',
    'PUSH',
    'PING',
    'GOAWAY',
    'WINDOW_UPDATE',
    'CONTINUATION',
  ];
  while (off + 9 <= bytes.length) {
    const len = bytes.readUIntBE(off, 3);
    const type = bytes[off + 3]!;
    const left = bytes.length - off - 9;
    out.push(
      `${names[type] ?? `type 0x${type.toString(16)}`} flags=0x${bytes[off + 4]!.toString(16)} stream=${bytes.readUInt32BE(off + 5)} length=${len}${len > left ? ` (only ${left} bytes follow)` : ''}`,
    );
    off += 9 + len;
  }
  if (off < bytes.length) out.push(`${bytes.length - off} trailing bytes`);
  return out;
}

if (process.argv[3] !== undefined) {
  const seq = h2SequenceAt(Number(process.argv[2]), Number(process.argv[3]));
  const lines = describeFrames(seq.bytes);
  const collapsed: string[] = [];
  for (const l of lines) {
    const prev = collapsed.at(-1);
    const m = prev === undefined ? null : /^(.*?)(?: ×(\d+))?$/.exec(prev);
    if (m && m[1] === l) collapsed[collapsed.length - 1] = `${l} ×${Number(m[2] ?? 1) + 1}`;
    else collapsed.push(l);
  }
  process.stdout.write(`${seq.kind}, ${seq.bytes.length} bytes\n${collapsed.join('\n')}\n`);
}
