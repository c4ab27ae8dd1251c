/** Invalid certificate material, key, CSR or identity. The message is one line, fit for a user. */
export class PkiError extends Error {
  override name = 'PkiError';
}
