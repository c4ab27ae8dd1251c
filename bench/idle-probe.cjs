// Preload (`--require`) for bench/idle-smaps.ts: on SIGUSR2 the process writes V8's heap spaces, its memory
// usage and, where koffi loads, glibc's malloc totals to $IDLE_PROBE_OUT. CommonJS so that an empty script
// measured with it does not also start the ES module loader; koffi is required only at the signal, after the
// parent has read /proc/PID/smaps.
'use strict';
const { getHeapSpaceStatistics } = require('node:v8');
const { writeFileSync } = require('node:fs');

function mallinfo() {
  try {
    const i = require('./mallinfo.cjs').loadMallinfo2(require('koffi'))();
    return { inUse: i.uordblks + i.hblkhd, free: i.fordblks };
  } catch (err) {
    return { error: String(err) };
  }
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
  writeFileSync(out, JSON.stringify({ spaces, usage: process.memoryUsage(), malloc: mallinfo() }));
});
