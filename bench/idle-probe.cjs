// Preload (`--require`) for bench/idle-smaps.ts: on SIGUSR2 the process writes V8's heap spaces, its memory
// usage and, where koffi loads, glibc's malloc totals to $IDLE_PROBE_OUT. CommonJS so that an empty script
// measured with it does not also start the ES module loader; koffi is required only at the signal, after the
// parent has read /proc/PID/smaps.
'use strict';
const { getHeapSpaceStatistics, getHeapStatistics } = require('node:v8');
const { writeFileSync } = require('node:fs');

function mallinfo() {
  try {
    const koffi = require('koffi');
    const fields = [
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
    const Mallinfo2 = koffi.struct('mallinfo2', Object.fromEntries(fields.map((f) => [f, 'size_t'])));
    const i = koffi.load('libc.so.6').func('mallinfo2', Mallinfo2, [])();
    const n = (f) => Number(i[f]);
    return {
      arena: n('arena'),
      mmapped: n('hblkhd'),
      inUse: n('uordblks') + n('hblkhd'),
      free: n('fordblks'),
    };
  } catch (err) {
    return { error: String(err) };
  }
}

// IDLE_PROBE_RELEASE_MS: that long after start, what the sidecar's idle memory release runs (V8's
// last-resort full GC, then glibc's malloc_trim), to measure what one at start-up would give.
const releaseMs = Number(process.env.IDLE_PROBE_RELEASE_MS);
if (releaseMs > 0) {
  setTimeout(() => {
    require('node:v8').setFlagsFromString('--expose-gc');
    require('node:vm').runInNewContext('gc')({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    require('koffi').load('libc.so.6').func('int malloc_trim(size_t pad)')(0);
  }, releaseMs).unref();
}

process.on('SIGUSR2', () => {
  const out = process.env.IDLE_PROBE_OUT;
  if (!out) return;
  const spaces = Object.fromEntries(
    getHeapSpaceStatistics().map((s) => [
      s.space_name,
      { physical: s.physical_space_size, used: s.space_used_size },
    ]),
  );
  const heap = getHeapStatistics();
  const usage = process.memoryUsage();
  writeFileSync(out, JSON.stringify({ spaces, heap, usage, malloc: mallinfo() }));
});
