/** Canton topology transactions: wire format, hashes, fingerprints, builders, signers, verification. */
export * from './messages.js';
export * from './hash.js';
export * from './keys.js';
export * from './signer.js';
export * from './builders.js';
export * from './verify.js';
export { Writer, Reader, Fields } from './wire.js';
