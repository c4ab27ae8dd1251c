import assert from 'node:assert/strict';
import { KeyObject, X509Certificate } from 'node:crypto';
import { createCa, issueWorkloadCert, loadCa, type CertificateAuthority } from '../../pki/ca.ts';
import { PkiError } from '../../pki/errors.ts';
import { parseIdentity } from '../../pki/identity.ts';
import { generateKeyPair, privateKeyToPem, publicKeyToPem } from '../../pki/keys.ts';
import { createCsr } from '../../pki/create-csr.ts';
import { verifyCsr } from '../../pki/csr.ts';
import { parseCertificates } from '../../pki/pem.ts';
import { parseSubjectAltName, spiffeIdFromCertificate } from '../../pki/peer-identity.ts';
import {
  formatSpiffeId,
  isSpiffeId,
  parseSpiffeId,
  parseWorkloadSpiffeId,
  SpiffeIdError,
  workloadSpiffeId,
} from '../../pki/spiffe-id.ts';
import { x509 } from '../../pki/x509-lib.ts';
import { intermediateCa } from '../support/intermediate-ca.ts';

const TD = 'cluster.local';
const WEB = `spiffe://${TD}/ns/default/sa/web`;
const HOUR = 3600_000;

async function newCa(trustDomain = TD, validityDays?: number): Promise<CertificateAuthority> {
  return loadCa(await createCa({ trustDomain, ...(validityDays === undefined ? {} : { validityDays }) }));
}

async function issue(ca: CertificateAuthority, spiffeId = WEB) {
  const keys = await generateKeyPair();
  const certPem = await issueWorkloadCert({ ca, spiffeId, publicKey: keys.publicKey });
  return { keys, certPem, cert: new X509Certificate(certPem) };
}

describe('pki: SPIFFE IDs', () => {
  const valid: [string, string, string][] = [
    ['spiffe://cluster.local', 'cluster.local', ''],
    ['spiffe://cluster.local/ns/default/sa/web', 'cluster.local', '/ns/default/sa/web'],
    ['spiffe://a_b-c.9/Path.With-Upper_case', 'a_b-c.9', '/Path.With-Upper_case'],
    ['spiffe://td/a/.../b', 'td', '/a/.../b'],
  ];
  for (const [input, trustDomain, path] of valid) {
    it(`parses ${input}`, () => {
      assert.deepEqual(parseSpiffeId(input), { trustDomain, path });
      assert.equal(formatSpiffeId(parseSpiffeId(input)), input);
    });
  }

  const malformed: [string, unknown][] = [
    ['empty', ''],
    ['not a string', 42],
    ['undefined', undefined],
    ['object', { toString: () => 'spiffe://td' }],
    ['no scheme', 'cluster.local/ns/a/sa/b'],
    ['other scheme', 'https://cluster.local/ns/a/sa/b'],
    ['uppercase scheme', 'SPIFFE://cluster.local/ns/a/sa/b'],
    ['scheme only', 'spiffe://'],
    ['missing trust domain', 'spiffe:///ns/a/sa/b'],
    ['single slash', 'spiffe:/cluster.local/ns/a'],
    ['uppercase trust domain', 'spiffe://Cluster.local/ns/a/sa/b'],
    ['port', 'spiffe://cluster.local:8080/ns/a/sa/b'],
    ['user info', 'spiffe://user@cluster.local/ns/a/sa/b'],
    ['query', 'spiffe://cluster.local/ns/a/sa/b?x=1'],
    ['fragment', 'spiffe://cluster.local/ns/a/sa/b#frag'],
    ['trailing slash', 'spiffe://cluster.local/ns/a/sa/b/'],
    ['trust domain with trailing slash', 'spiffe://cluster.local/'],
    ['empty segment', 'spiffe://cluster.local/ns//sa/b'],
    ['dot segment', 'spiffe://cluster.local/ns/./sa/b'],
    ['dot-dot segment', 'spiffe://cluster.local/ns/../sa/b'],
    ['percent-encoding', 'spiffe://cluster.local/ns/a%20b/sa/b'],
    ['space', 'spiffe://cluster.local/ns/a b/sa/b'],
    ['non-ASCII', 'spiffe://cluster.local/ns/é/sa/b'],
    ['NUL byte', 'spiffe://cluster.local/ns/a\u0000/sa/b'],
    ['newline', 'spiffe://cluster.local/ns/a\n/sa/b'],
    ['too long', `spiffe://td/${'a'.repeat(2050)}`],
    ['trust domain too long', `spiffe://${'a'.repeat(256)}`],
  ];
  for (const [name, input] of malformed) {
    it(`rejects ${name}`, () => {
      assert.throws(() => parseSpiffeId(input), SpiffeIdError);
      assert.equal(isSpiffeId(input), false);
    });
  }

  it('builds and parses workload IDs', () => {
    const id = workloadSpiffeId({ trustDomain: TD, namespace: 'default', serviceAccount: 'web.v2' });
    assert.equal(id, 'spiffe://cluster.local/ns/default/sa/web.v2');
    assert.deepEqual(parseWorkloadSpiffeId(id), {
      trustDomain: TD,
      namespace: 'default',
      serviceAccount: 'web.v2',
    });
  });

  const notWorkload = [
    'spiffe://cluster.local',
    'spiffe://cluster.local/ns/default',
    'spiffe://cluster.local/ns/default/sa',
    'spiffe://cluster.local/sa/web/ns/default',
    'spiffe://cluster.local/ns/default/sa/web/extra',
    'spiffe://cluster.local/ns/Default/sa/web', // valid SPIFFE ID, invalid Kubernetes namespace
    'spiffe://cluster.local/ns/default/sa/Web',
    'spiffe://cluster.local/ns/-bad/sa/web',
    `spiffe://cluster.local/ns/${'a'.repeat(64)}/sa/web`,
    'spiffe://cluster.local/ns/a.b/sa/web',
    'spiffe://cluster.local/ns/default/sa/web-',
  ];
  for (const input of notWorkload) {
    it(`rejects workload ID ${input.slice(0, 60)}`, () => {
      assert.throws(() => parseWorkloadSpiffeId(input), SpiffeIdError);
    });
  }

  it('rejects invalid parts when building', () => {
    assert.throws(
      () => workloadSpiffeId({ trustDomain: 'Bad', namespace: 'a', serviceAccount: 'b' }),
      SpiffeIdError,
    );
    assert.throws(
      () => workloadSpiffeId({ trustDomain: TD, namespace: 'a/b', serviceAccount: 'b' }),
      SpiffeIdError,
    );
    assert.throws(
      () => workloadSpiffeId({ trustDomain: TD, namespace: 'a', serviceAccount: '' }),
      SpiffeIdError,
    );
    assert.throws(
      () => workloadSpiffeId({ trustDomain: TD, namespace: '..', serviceAccount: 'b' }),
      SpiffeIdError,
    );
  });
});

describe('pki: peer certificate SAN', () => {
  const cases: [string, string | undefined, string | RegExp][] = [
    ['one URI', `URI:${WEB}`, WEB],
    ['URI among DNS names', `DNS:web, URI:${WEB}, DNS:web.default.svc`, WEB],
    ['no SAN', undefined, /no subjectAltName/],
    ['empty SAN', '', /no subjectAltName/],
    ['DNS only', 'DNS:web.default.svc', /exactly one URI SAN, it has 0/],
    ['two URIs', `URI:${WEB}, URI:spiffe://${TD}/ns/a/sa/b`, /exactly one URI SAN, it has 2/],
    ['non-SPIFFE URI', 'URI:https://example.com/', /not a valid SPIFFE ID/],
    ['quoted URI with comma', 'URI:"spiffe://td/ns/a, URI:spiffe://td/ns/b/sa/c"', /not a valid SPIFFE ID/],
    ['unterminated quote', 'URI:"spiffe://td', /cannot be parsed/],
    ['garbage', 'no colon here', /cannot be parsed/],
  ];
  for (const [name, san, expected] of cases) {
    it(name, () => {
      const cert = san === undefined ? {} : { subjectaltname: san };
      if (typeof expected === 'string') assert.equal(spiffeIdFromCertificate(cert), expected);
      else assert.throws(() => spiffeIdFromCertificate(cert), expected);
    });
  }

  it('splits Node SAN text, decoding quoted values', () => {
    assert.deepEqual(parseSubjectAltName('DNS:a, URI:"x, y", IP Address:127.0.0.1'), [
      ['DNS', 'a'],
      ['URI', 'x, y'],
      ['IP Address', '127.0.0.1'],
    ]);
  });

  it('never throws anything but PkiError on undefined input', () => {
    assert.throws(() => spiffeIdFromCertificate(undefined), PkiError);
  });
});

describe('pki: CA and workload certificates', () => {
  let ca: CertificateAuthority;
  before(async () => {
    ca = await newCa();
  });

  it('creates a self-signed P-256 CA for the trust domain', () => {
    const cert = ca.cert;
    assert.equal(cert.ca, true);
    assert.equal(cert.subject, 'O=sluice');
    assert.equal(cert.issuer, 'O=sluice');
    assert.equal(cert.subjectAltName, `URI:spiffe://${TD}`);
    assert.equal(cert.checkIssued(cert), true);
    assert.equal(cert.verify(cert.publicKey), true);
    assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    const parsed = new x509.X509Certificate(cert.raw);
    const usage = parsed.getExtension(x509.KeyUsagesExtension);
    assert.equal(usage?.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    assert.equal(usage.critical, true);
    assert.equal(parsed.getExtension(x509.BasicConstraintsExtension)?.critical, true);
    const days = (cert.validToDate.getTime() - Date.now()) / (24 * HOUR);
    assert.ok(days > 364.9 && days < 365.1, `validity ${days} days`);
    assert.equal(ca.trustDomain, TD);
  });

  it('issues a leaf that chains to the CA with the workload identity only', async () => {
    const { cert } = await issue(ca);
    assert.equal(cert.checkIssued(ca.cert), true);
    assert.equal(cert.verify(ca.cert.publicKey), true);
    assert.equal(cert.ca, false);
    assert.equal(cert.subjectAltName, `URI:${WEB}`);
    assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']); // serverAuth, clientAuth
    const parsed = new x509.X509Certificate(cert.raw);
    assert.equal(parsed.getExtension(x509.KeyUsagesExtension)?.usages, x509.KeyUsageFlags.digitalSignature);
    assert.equal(parsed.getExtension(x509.SubjectAlternativeNameExtension)?.critical, true);
    const hours = (cert.validToDate.getTime() - Date.now()) / HOUR;
    assert.ok(hours > 23.9 && hours <= 24, `validity ${hours} hours`);
    assert.ok(cert.validFromDate.getTime() < Date.now());
    // Leaves from another CA do not verify against this one.
    const other = await newCa();
    const { cert: foreign } = await issue(other);
    assert.equal(foreign.verify(ca.cert.publicKey), false);
  });

  it('adds DNS names and honours validityHours, capped at the CA expiry', async () => {
    const keys = await generateKeyPair();
    const pem = await issueWorkloadCert({
      ca,
      spiffeId: WEB,
      publicKey: await publicKeyToPem(keys.publicKey),
      validityHours: 2,
      dnsNames: ['web.default.svc', '*.web.default.svc.cluster.local'],
    });
    const cert = new X509Certificate(pem);
    assert.equal(cert.subjectAltName, `URI:${WEB}, DNS:web.default.svc, DNS:*.web.default.svc.cluster.local`);
    assert.ok(cert.validToDate.getTime() - Date.now() <= 2 * HOUR);
    const shortCa = await newCa(TD, 0.5);
    const capped = new X509Certificate(
      await issueWorkloadCert({ ca: shortCa, spiffeId: WEB, publicKey: keys.publicKey, validityHours: 48 }),
    );
    assert.equal(capped.validToDate.getTime(), shortCa.cert.validToDate.getTime());
  });

  it('refuses bad requests with PkiError', async () => {
    const keys = await generateKeyPair();
    const bad: [string, Parameters<typeof issueWorkloadCert>[0]][] = [
      ['other trust domain', { ca, spiffeId: 'spiffe://other.td/ns/a/sa/b', publicKey: keys.publicKey }],
      ['not a workload ID', { ca, spiffeId: `spiffe://${TD}/foo`, publicKey: keys.publicKey }],
      ['no key', { ca, spiffeId: WEB }],
      ['private key', { ca, spiffeId: WEB, publicKey: keys.privateKey }],
      ['garbage public key', { ca, spiffeId: WEB, publicKey: 'not a key' }],
      ['zero hours', { ca, spiffeId: WEB, publicKey: keys.publicKey, validityHours: 0 }],
      ['NaN hours', { ca, spiffeId: WEB, publicKey: keys.publicKey, validityHours: NaN }],
      ['bad DNS name', { ca, spiffeId: WEB, publicKey: keys.publicKey, dnsNames: ['bad_name!'] }],
    ];
    for (const [name, params] of bad) {
      await assert.rejects(issueWorkloadCert(params), PkiError, name);
    }
    const rsa = await globalThis.crypto.subtle.generateKey(
      {
        name: 'RSASSA-PKCS1-v1_5',
        modulusLength: 2048,
        publicExponent: new Uint8Array([1, 0, 1]),
        hash: 'SHA-256',
      },
      true,
      ['sign', 'verify'],
    );
    await assert.rejects(
      issueWorkloadCert({ ca, spiffeId: WEB, publicKey: rsa.publicKey }),
      /expected an ECDSA P-256 key/,
    );
  });

  it('loads a CA only with its own key and CA constraints', async () => {
    const pem = await createCa({ trustDomain: TD });
    const other = await createCa({ trustDomain: TD });
    await assert.rejects(loadCa({ certPem: pem.certPem, keyPem: other.keyPem }), /does not match/);
    await assert.rejects(
      loadCa({ certPem: pem.certPem, keyPem: pem.keyPem, trustDomain: 'x.y' }),
      /trust domain/,
    );
    const leaf = await issue(ca);
    await assert.rejects(
      loadCa({ certPem: leaf.certPem, keyPem: await privateKeyToPem(leaf.keys.privateKey) }),
      /CA:TRUE/,
    );
    await assert.rejects(loadCa({ certPem: 'garbage', keyPem: pem.keyPem }), /no PEM data/);
    await assert.rejects(loadCa({ certPem: pem.certPem, keyPem: 'garbage' }), PkiError);
    await assert.rejects(createCa({ trustDomain: 'Not Valid' }), SpiffeIdError);
  });
});

describe('pki: CSR path', () => {
  let ca: CertificateAuthority;
  before(async () => {
    ca = await newCa();
  });

  it('issues from a CSR with the identity the CA chose, not the one requested', async () => {
    const keys = await generateKeyPair();
    const csrPem = await createCsr({ keys, spiffeId: `spiffe://${TD}/ns/kube-system/sa/admin` });
    const verified = await verifyCsr(csrPem);
    assert.deepEqual(verified.requestedUris, [`spiffe://${TD}/ns/kube-system/sa/admin`]);
    const cert = new X509Certificate(await issueWorkloadCert({ ca, spiffeId: WEB, csrPem }));
    assert.equal(cert.subjectAltName, `URI:${WEB}`);
    assert.equal(cert.checkIssued(ca.cert), true);
    assert.equal(cert.verify(ca.cert.publicKey), true);
    assert.equal(cert.checkPrivateKey(KeyObject.from(keys.privateKey)), true);
  });

  it('rejects a CSR whose signature does not verify', async () => {
    const csrPem = await createCsr({ keys: await generateKeyPair(), spiffeId: WEB });
    const der = parseCertificatesLike(csrPem);
    der[der.length - 3]! ^= 0x01; // inside the signature
    await assert.rejects(
      issueWorkloadCert({ ca, spiffeId: WEB, csrPem: pem('CERTIFICATE REQUEST', der) }),
      /does not verify/,
    );
  });

  it('rejects a CSR signed by a different key (no proof of possession)', async () => {
    const a = await generateKeyPair();
    const b = await generateKeyPair();
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'O=sluice',
      keys: { publicKey: a.publicKey, privateKey: b.privateKey },
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    });
    await assert.rejects(verifyCsr(csr.toString('pem')), /does not verify/);
  });

  it('rejects malformed CSRs and non-P-256 keys', async () => {
    for (const input of [
      '',
      'garbage',
      pem('CERTIFICATE REQUEST', Buffer.from('not der')),
      pem('CERTIFICATE', Buffer.alloc(8)),
    ]) {
      await assert.rejects(issueWorkloadCert({ ca, spiffeId: WEB, csrPem: input }), PkiError);
    }
    const p384 = await globalThis.crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, [
      'sign',
      'verify',
    ]);
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'O=sluice',
      keys: p384,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' },
    });
    await assert.rejects(verifyCsr(csr.toString('pem')), /expected an ECDSA P-256 key, got ec secp384r1/);
    await assert.rejects(
      issueWorkloadCert({
        ca,
        spiffeId: WEB,
        csrPem: await createCsr({ keys: await generateKeyPair() }),
        publicKey: 'x',
      }),
      /exactly one of/,
    );
  });
});

describe('pki: identity check', () => {
  let ca: CertificateAuthority;
  before(async () => {
    ca = await newCa();
  });

  it('accepts a leaf, its key and the bundle', async () => {
    const { keys, certPem } = await issue(ca);
    const identity = parseIdentity({
      certPem,
      keyPem: await privateKeyToPem(keys.privateKey),
      bundlePem: ca.certPem,
    });
    assert.equal(identity.spiffeId, WEB);
    assert.equal(identity.trustDomain, TD);
    assert.ok(identity.notAfter > new Date());
  });

  it('follows intermediates in cert.pem to the bundle', async () => {
    const intermediate = await loadCa(await intermediateCa(ca));
    const { keys, certPem } = await issue(intermediate);
    const keyPem = await privateKeyToPem(keys.privateKey);
    const identity = parseIdentity({
      certPem: certPem + intermediate.certPem,
      keyPem,
      bundlePem: ca.certPem,
    });
    assert.equal(identity.spiffeId, WEB);
    assert.throws(() => parseIdentity({ certPem, keyPem, bundlePem: ca.certPem }), /does not chain/);
  });

  it('rejects inconsistent identities', async () => {
    const { keys, certPem } = await issue(ca);
    const keyPem = await privateKeyToPem(keys.privateKey);
    const otherKey = await privateKeyToPem((await generateKeyPair()).privateKey);
    const otherCa = await newCa();
    assert.throws(
      () => parseIdentity({ certPem, keyPem: otherKey, bundlePem: ca.certPem }),
      /does not match/,
    );
    assert.throws(() => parseIdentity({ certPem, keyPem, bundlePem: otherCa.certPem }), /does not chain/);
    assert.throws(() => parseIdentity({ certPem: ca.certPem, keyPem, bundlePem: ca.certPem }), /is a CA/);
    assert.throws(() => parseIdentity({ certPem, keyPem, bundlePem: certPem }), /not a CA/);
    assert.throws(() => parseIdentity({ certPem: '', keyPem, bundlePem: ca.certPem }), /no PEM data/);
    assert.throws(
      () => parseIdentity({ certPem, keyPem, bundlePem: ca.certPem }, new Date(Date.now() + 25 * HOUR)),
      /expired/,
    );
  });

  it('splits multi-certificate PEM and rejects other blocks', () => {
    assert.equal(parseCertificates(ca.certPem + '\ncomment\n' + ca.certPem, 'x').length, 2);
    assert.throws(() => parseCertificates(pem('PRIVATE KEY', Buffer.alloc(4)), 'x'), /expected CERTIFICATE/);
    assert.throws(() => parseCertificates(pem('CERTIFICATE', Buffer.alloc(4)), 'x'), /cannot be parsed/);
  });
});

function pem(label: string, der: Uint8Array): string {
  return `-----BEGIN ${label}-----\n${Buffer.from(der).toString('base64')}\n-----END ${label}-----\n`;
}

function parseCertificatesLike(text: string): Buffer {
  return Buffer.from(text.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

describe('pki: malformed input never escapes as anything but PkiError', () => {
  // A small deterministic generator (xorshift) so that failures reproduce.
  let seed = 0x2545f491;
  const next = (n: number): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const pieces = [
    'spiffe://',
    'td',
    '/',
    'ns',
    'sa',
    'URI:',
    'DNS:',
    ', ',
    '"',
    '\\',
    ':',
    '.',
    '..',
    '%',
    '@',
    'A',
    '\u0000',
    'é',
    '-',
  ];
  const randomText = (): string =>
    Array.from({ length: next(12) }, () => pieces[next(pieces.length)]).join('');

  it('SPIFFE IDs and SAN text', () => {
    for (let i = 0; i < 3000; i++) {
      const text = randomText();
      for (const f of [
        () => parseSpiffeId(text),
        () => parseWorkloadSpiffeId(text),
        () => spiffeIdFromCertificate({ subjectaltname: text }),
      ]) {
        try {
          f();
        } catch (err) {
          assert.ok(err instanceof PkiError, `${JSON.stringify(text)}: ${String(err)}`);
        }
      }
    }
  });

  it('PEM, certificates and CSRs', async () => {
    const csr = parseCertificatesLike(await createCsr({ keys: await generateKeyPair() }));
    for (let i = 0; i < 300; i++) {
      const der = Buffer.from(csr);
      for (let j = 0; j <= next(4); j++) der[next(der.length)] = next(256);
      const truncated = der.subarray(0, der.length - next(der.length));
      for (const input of [pem('CERTIFICATE REQUEST', der), pem('CERTIFICATE REQUEST', truncated)]) {
        try {
          await verifyCsr(input);
        } catch (err) {
          assert.ok(err instanceof PkiError, String(err));
        }
        try {
          parseCertificates(input.replaceAll('CERTIFICATE REQUEST', 'CERTIFICATE'), 'x');
        } catch (err) {
          assert.ok(err instanceof PkiError, String(err));
        }
      }
    }
  });
});
