/**
 * Envelope sealing: secret key material encrypted under a wrapper key held by a KMS. A sealed blob
 * records the wrapper's KeyRef (scheme + key identity, never an address); the connection to the wrapper
 * comes from the configured Connections. Sealing happens only under a reference the caller names (the
 * store's protection setting or a configured wrapper), never under one a record names.
 */
import { existsSync } from 'node:fs';
import { err, isKeyportError } from '../errors.js';
import { type KeyRef, parseStoredKeyRef } from '../kms/address.js';
import type { CallOptions } from '../cancel.js';
import type { Connections } from '../kms/connections.js';
import type { SealedBlob } from './types.js';

export class WrapperKeys {
  constructor(readonly connections: Connections) {}

  /**
   * Check that a configured wrapper key exists, is usable and round-trips. A local: wrapper file is
   * created only when `mayCreate` (a store that never sealed anything under it); a lost one is an error,
   * never silently replaced.
   */
  async check(ref: KeyRef, opts: { mayCreate?: boolean } = {}): Promise<KeyRef> {
    const { driver, keyId, address } = await this.connections.key(ref, 'wrapper key');
    const file = address.localFile;
    if (file && !existsSync(file) && !opts.mayCreate)
      throw err(
        'NOT_FOUND',
        `wrapper key file ${file} does not exist and keys in this store were sealed under it: restore it from a backup (keyport never ` +
          `creates a wrapper key again)`,
      );
    await driver.keyExistsAndIsActive(keyId).catch((e) => {
      // a new local wrapper file is created on first use by encrypt
      if (!(isKeyportError(e, 'NOT_FOUND') && driver.name === 'local' && opts.mayCreate)) throw e;
    });
    const probe = Buffer.from('keyport-wrapper-probe');
    const back = await driver.decryptSymmetric(keyId, await driver.encryptSymmetric(keyId, probe));
    if (!back.equals(probe)) throw err('VERIFY_FAILED', `wrapper key ${ref} does not round-trip`);
    return ref;
  }

  /** seal under a wrapper the caller chose (the store's setting or a configured wrapper) */
  async seal(wrapper: KeyRef, secret: Buffer, opts?: CallOptions): Promise<SealedBlob> {
    const { driver, keyId, address } = await this.connections.key(wrapper, 'wrapper key');
    // the configured local file, never a path the store named: a lost wrapper is never made again
    const file = address.localFile;
    if (file && !existsSync(file))
      throw err(
        'NOT_FOUND',
        `wrapper key file ${file} does not exist: restore it from a backup (keyport never creates a wrapper key again)`,
      );
    const blob = await driver.encryptSymmetric(keyId, secret, opts);
    return { wrapper: wrapper.toString(), blob: blob.toString('base64') };
  }

  async unseal(s: SealedBlob, opts?: CallOptions): Promise<Buffer> {
    const ref = parseStoredKeyRef(s.wrapper, 'sealed key');
    const { driver, keyId, address } = await this.connections.key(ref, 'wrapper key');
    // the local driver makes a missing key file on first use: opening must never make a wrapper
    const file = address.localFile;
    if (file && !existsSync(file))
      throw err(
        'NOT_FOUND',
        `wrapper key file ${file} does not exist: restore it from a backup (keyport never creates a wrapper key again)`,
      );
    try {
      return await driver.decryptSymmetric(keyId, Buffer.from(s.blob, 'base64'), opts);
    } catch (e) {
      if (isKeyportError(e, 'INVALID_CIPHERTEXT'))
        throw err('INVALID_CIPHERTEXT', `sealed key does not open with wrapper ${ref}: wrong or rotated wrapper key`);
      throw e;
    }
  }
}
