// Preload (`--import`) that sets V8 flags NODE_OPTIONS refuses (--trace-gc, --trace-deopt, --trace-opt), from
// BENCH_V8_FLAGS: how bench/idle-reopt-mesh.ts traces the sidecars it starts.
import { setFlagsFromString } from 'node:v8';

for (const flag of (process.env.BENCH_V8_FLAGS ?? '').split(' ').filter(Boolean)) setFlagsFromString(flag);
