import { createRequire } from 'node:module';
import type * as Http from 'node:http';

/**
 * node:http's values, required rather than imported: importing it makes Node build its ES module namespace,
 * which reads every export, and the lazy WebSocket, CloseEvent and MessageEvent getters then load Node's
 * bundled undici (about 3 MB of an idle sidecar's RSS, ADR 0016) for nothing. Types: `import type`.
 */
export const nodeHttp = createRequire(import.meta.url)('node:http') as typeof Http;
