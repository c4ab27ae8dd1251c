// glibc's mallinfo2() through koffi, for the memory benches. CommonJS, so that bench/idle-probe.cjs (preloaded
// into empty scripts) can require it without starting the ES module loader.
'use strict';

const FIELDS = [
  'arena',
  'ordblks',
  'smblks',
  'hblks',
  'hblkhd',
  'usmblks',
  'fsmblks',
  'uordblks',
  'fordblks',
  'keepcost',
];

/** mallinfo2() as a function that returns its fields as numbers. */
function loadMallinfo2(koffi) {
  const Mallinfo2 = koffi.struct('mallinfo2', Object.fromEntries(FIELDS.map((f) => [f, 'size_t'])));
  const call = koffi.load('libc.so.6').func('mallinfo2', Mallinfo2, []);
  return () => {
    const info = call();
    return Object.fromEntries(FIELDS.map((f) => [f, Number(info[f])]));
  };
}

module.exports = { loadMallinfo2 };
