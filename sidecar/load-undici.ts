import { createRequire } from 'node:module';

/**
 * undici, loaded at first use (an HTTP/1.1 upstream pool): about 110 modules and 20-30 MB
 * of RSS that a sidecar whose app speaks only HTTP/2 or opaque TCP never needs (ADR 0016). Synchronous:
 * its callers are.
 */
let undici: typeof import('undici') | undefined;
export const loadUndici = (): typeof import('undici') =>
  (undici ??= createRequire(import.meta.url)('undici') as typeof import('undici'));
