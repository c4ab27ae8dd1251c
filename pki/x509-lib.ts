// @peculiar/x509 relies on decorator metadata, which must be loaded before the library itself.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(globalThis.crypto);

export { x509 };
