/**
 * Envelope sealing: secret key material encrypted under a wrapper key held by a KMS. One place opens
 * wrapper drivers (one per wrapper URI, reused) and seals / unseals blobs; the keyring caches what it
 * unseals. A blob records the wrapper URI that sealed it, so a store mid-rotation stays readable.
 */
import { err, isKeyportError } from '../errors.js';
import { splitKeyUri, redactUri } from '../config/uri.js';
import { openInstrumentedDriver } from '../kms/instrument.js';
import type { Driver } from '../kms/driver.js';
import type { SealedBlob } from './types.js';

interface Opened {
  driver: Driver;
  keyId: string;
}

/**
 * Two wrapper URIs name the same key when scheme and key reference agree; endpoint, port and
 * credentials may differ (a KMS that moved, rotated credentials). Sealed blobs record the URI they
 * were sealed under; the store's current setting wins for reaching the same key.
 */
export function sameWrapperKey(a: string, b: string): boolean {
  if (a === b) return true;
  try {
    const x = splitKeyUri(a);
    const y = splitKeyUri(b);
    return x.kms.scheme === y.kms.scheme && x.keyRef === y.keyRef;
  } catch {
    return false;
  }
}

export class WrapperKeys {
  private open = new Map<string, Promise<Opened>>();

  private get(wrapper: string): Promise<Opened> {
    let p = this.open.get(wrapper);
    if (!p) {
      p = (async () => {
        const { kms, keyRef } = splitKeyUri(wrapper);
        // retries, timeouts and the KMS audit log come with every driver keyport opens
        const driver = await openInstrumentedDriver(kms);
        const keyId = driver.resolveKeyId ? await driver.resolveKeyId(keyRef) : keyRef;
        return { driver, keyId };
      })();
      p.catch(() => this.open.delete(wrapper));
      this.open.set(wrapper, p);
    }
    return p;
  }

  /** check that the wrapper key exists, is usable and round-trips */
  async check(wrapper: string): Promise<void> {
    const { driver, keyId } = await this.get(wrapper);
    await driver.keyExistsAndIsActive(keyId).catch((e) => {
      // local wrapper files are created on first use by encrypt
      if (!(isKeyportError(e, 'NOT_FOUND') && driver.name === 'local')) throw e;
    });
    const probe = Buffer.from('keyport-wrapper-probe');
    const back = await driver.decryptSymmetric(keyId, await driver.encryptSymmetric(keyId, probe));
    if (!back.equals(probe)) throw err('VERIFY_FAILED', `wrapper key ${redactUri(wrapper)} does not round-trip`);
  }

  async seal(wrapper: string, secret: Buffer): Promise<SealedBlob> {
    const { driver, keyId } = await this.get(wrapper);
    const blob = await driver.encryptSymmetric(keyId, secret);
    return { wrapper, blob: blob.toString('base64') };
  }

  /** @param current the store's wrapper setting: used instead of the blob's URI when it names the same key */
  async unseal(s: SealedBlob, current?: string): Promise<Buffer> {
    const via = current && current !== s.wrapper && sameWrapperKey(current, s.wrapper) ? current : s.wrapper;
    const { driver, keyId } = await this.get(via);
    try {
      return await driver.decryptSymmetric(keyId, Buffer.from(s.blob, 'base64'));
    } catch (e) {
      if (isKeyportError(e, 'INVALID_CIPHERTEXT'))
        throw err('INVALID_CIPHERTEXT', `sealed key does not open with wrapper ${redactUri(s.wrapper)}: wrong or rotated wrapper key`);
      throw e;
    }
  }

  async close(): Promise<void> {
    for (const p of this.open.values()) await p.then((o) => o.driver.close?.()).catch(() => undefined);
    this.open.clear();
  }
}
