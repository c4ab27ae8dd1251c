// Which top-level folder may import which (README, "Layout"): one direction only, so that a wrong import
// fails `npm run lint`. Each entry lists the folders of ours that the files in `folder` must NOT import.
const OURS = [
  'lib',
  'protocol',
  'pki',
  'mesh-model',
  'io',
  'controller',
  'injector',
  'sidecar',
  'cli',
  'cluster',
  'demo',
  'conformance',
  'images',
  'test',
  'bench',
];
const except = (...allowed) => OURS.filter((name) => !allowed.includes(name));
const TOOLS = ['cluster', 'demo', 'conformance', 'images', 'test', 'bench'];

/** folder → what it may import (besides itself). */
export const LAYERS = {
  lib: [],
  'mesh-model': ['lib'],
  pki: ['lib'],
  protocol: ['lib', 'mesh-model'],
  io: ['lib', 'mesh-model'],
  controller: ['lib', 'protocol', 'pki', 'mesh-model', 'io'],
  injector: ['lib', 'protocol', 'pki', 'mesh-model', 'io'],
  sidecar: ['lib', 'protocol', 'pki', 'mesh-model', 'io'],
  cli: except(...TOOLS),
  cluster: ['lib', 'pki', 'mesh-model'],
  demo: ['lib', 'pki', 'mesh-model', 'cluster'],
  conformance: ['lib', 'pki', 'mesh-model', 'cluster', 'demo'],
  images: [],
};

function restrict(folder, allowed) {
  const forbidden = OURS.filter((name) => name !== folder && !allowed.includes(name));
  const patterns = [
    {
      regex: `^(\\.\\./)+(${forbidden.join('|')})/`,
      message: `${folder}/ may import only ${allowed.length ? allowed.map((a) => `${a}/`).join(', ') : 'its own files'} (README, "Layout").`,
    },
  ];
  if (folder === 'sidecar') {
    // ADR 0001: the sidecar never loads @peculiar/x509 (test/unit/layout.test.ts checks the loaded graph).
    patterns.push({
      regex: '(^@peculiar/|^(\\.\\./)+pki/(x509-lib|ca|csr)\\.ts$)',
      message:
        'the sidecar must not load @peculiar/x509 (ADR 0001): no pki/ca.ts, pki/csr.ts or pki/x509-lib.ts.',
    });
  }
  return {
    files: [`${folder}/**/*.ts`],
    rules: { 'no-restricted-imports': ['error', { patterns }] },
  };
}

export const layoutRules = Object.entries(LAYERS).map(([folder, allowed]) => restrict(folder, allowed));
