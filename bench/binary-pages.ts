// Which parts of the node binary a process has in its RSS: its mappings' resident pages (/proc/PID/pagemap,
// root only) attributed to the binary's symbols (readelf), then grouped by what they are (ICU data, V8's
// compilers, OpenSSL, ...). For bench/idle-smaps.ts.
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';

const PAGE = 4096;

interface Symbol {
  offset: number; // in the file
  size: number;
  name: string;
}

/** Groups by symbol name (mangled: `_ZN2v88internal8compiler` is v8::internal::compiler). */
const GROUPS: [string, RegExp][] = [
  ['ICU data', /^icudt\d+_dat$/],
  ['ICU code', /^_ZN\d*icu_\d+|^u[a-z]+_\w+_\d+$|^_ZNK\d*icu_/],
  ['V8 TurboFan', /^_ZN\w*2v88internal8compiler|^_ZNK2v88internal8compiler/],
  ['V8 Maglev', /^_ZN\w*2v88internal6maglev|^_ZNK2v88internal6maglev/],
  ['V8 embedded builtins', /^Builtins_/],
  ['V8 other', /^_ZN\w*2v8|^_ZNK2v8|^_ZTVN2v8|v8dbg_/],
  ['Node', /^_ZN\w*4node|^_ZNK4node|^_ZTVN4node/],
  [
    'OpenSSL',
    /^(ossl_|OSSL_|EVP_|SSL_|ssl\d*_|tls\d*_|X509|x509|BN_|bn_|EC_|ec_|RSA_|rsa_|ASN1_|asn1_|CRYPTO_|OPENSSL_|ERR_|BIO_|PEM_|sha\d+|SHA\d+|aes|AES|ChaCha|gcm|dtls|d2i_|i2d_|OBJ_|PKCS|EVP|CMS_|OCSP_|DH_|DSA_|ECDSA_|HMAC|MD5|RAND_|rand_|CONF_|v3_|ct_|SCT_|UI_|ENGINE_|async_|conf_|evp_|engine_|lh_|OPENSSL)/,
  ],
  ['libuv', /^uv_|^uv__/],
  ['nghttp2, llhttp', /^nghttp2|^llhttp|^_ZN\w*7llhttp/],
  ['zlib, brotli, zstd', /^(deflate|inflate|crc32|adler32|Brotli|zstd|ZSTD|_tr_|zng_|Cr_z_)/i],
  ['c-ares, ada, simdutf, sqlite', /^(ares_|_ZN\w*3ada|_ZN\w*7simdutf|sqlite3)/],
];

function groupOf(name: string): string {
  for (const [group, pattern] of GROUPS) if (pattern.test(name)) return group;
  return 'other symbols';
}

const cache = new Map<
  string,
  { symbols: Symbol[]; sections: { name: string; offset: number; size: number }[] }
>();

function elf(path: string): {
  symbols: Symbol[];
  sections: { name: string; offset: number; size: number }[];
} {
  const known = cache.get(path);
  if (known) return known;
  const sectionVaddr = new Map<number, { vaddr: number; offset: number }>();
  const sections: { name: string; offset: number; size: number }[] = [];
  for (const line of execFileSync('readelf', ['-SW', path], { encoding: 'utf8', maxBuffer: 1 << 26 }).split(
    '\n',
  )) {
    const m = /^\s*\[\s*(\d+)\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)/.exec(line);
    if (!m) continue;
    sectionVaddr.set(Number(m[1]), { vaddr: parseInt(m[3]!, 16), offset: parseInt(m[4]!, 16) });
    sections.push({ name: m[2]!, offset: parseInt(m[4]!, 16), size: parseInt(m[5]!, 16) });
  }
  const symbols: Symbol[] = [];
  const text = execFileSync('readelf', ['-sW', path], { encoding: 'utf8', maxBuffer: 1 << 28 });
  for (const line of text.split('\n')) {
    const m = /^\s*\d+:\s+([0-9a-f]+)\s+(\S+)\s+(FUNC|OBJECT)\s+\S+\s+\S+\s+(\d+)\s+(\S+)/.exec(line);
    if (!m) continue;
    const size = m[2]!.startsWith('0x') ? parseInt(m[2]!, 16) : Number(m[2]);
    const section = sectionVaddr.get(Number(m[4]));
    if (!size || !section) continue;
    symbols.push({ offset: parseInt(m[1]!, 16) - section.vaddr + section.offset, size, name: m[5]! });
  }
  symbols.sort((a, b) => a.offset - b.offset);
  const result = { symbols, sections };
  cache.set(path, result);
  return result;
}

/** The symbol whose bytes cover `offset`, else the first one starting within the page. */
function symbolAt(symbols: Symbol[], offset: number): Symbol | undefined {
  let lo = 0;
  let hi = symbols.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (symbols[mid]!.offset <= offset) lo = mid;
    else hi = mid - 1;
  }
  // Large objects (ICU data) may start before a run of small ones: look back a few.
  for (let i = lo; i >= Math.max(0, lo - 64); i--) {
    const s = symbols[i]!;
    if (s.offset <= offset && offset < s.offset + s.size) return s;
  }
  const next = symbols[lo + 1];
  return next && next.offset < offset + PAGE ? next : undefined;
}

/** kB of `binary`'s resident pages in process `pid`, by group (symbols) or section (between symbols). */
export function binaryPages(pid: number, binary: string): Record<string, number> {
  const { symbols, sections } = elf(binary);
  const byGroup: Record<string, number> = {};
  const pagemap = openSync(`/proc/${pid}/pagemap`, 'r');
  try {
    for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ ([0-9a-f]+) \S+ \S+\s+(.*)$/.exec(line);
      if (!m || m[4] !== binary) continue;
      const start = parseInt(m[1]!, 16);
      const pages = (parseInt(m[2]!, 16) - start) / PAGE;
      const entries = Buffer.alloc(pages * 8);
      readSync(pagemap, entries, 0, entries.length, (start / PAGE) * 8);
      for (let i = 0; i < pages; i++) {
        if (!(entries.readBigUInt64LE(i * 8) >> 63n)) continue; // not present
        const offset = parseInt(m[3]!, 16) + i * PAGE;
        const symbol = symbolAt(symbols, offset);
        const group = symbol
          ? groupOf(symbol.name)
          : `${sections.find((s) => s.offset <= offset && offset < s.offset + s.size)?.name ?? '?'} (no symbol)`;
        byGroup[group] = (byGroup[group] ?? 0) + PAGE / 1024;
      }
    }
  } finally {
    closeSync(pagemap);
  }
  return byGroup;
}
