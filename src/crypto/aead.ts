/** AES-GCM with associated data (AES-256 in keyport; other sizes accepted for test vectors). */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { err } from '../errors.js';

const CIPHER: Record<number, 'aes-128-gcm' | 'aes-192-gcm' | 'aes-256-gcm'> = { 16: 'aes-128-gcm', 24: 'aes-192-gcm', 32: 'aes-256-gcm' };

function cipherName(key: Buffer) {
  const c = CIPHER[key.length];
  if (!c) throw err('INVALID_INPUT', `AES-GCM key must be 16, 24 or 32 bytes, got ${key.length}`);
  return c;
}

/** @returns ciphertext ‖ tag */
export function gcmSeal(key: Buffer, nonce: Buffer, plaintext: Buffer, aad?: Buffer, tagLength = 16): Buffer {
  const c = createCipheriv(cipherName(key), key, nonce, { authTagLength: tagLength });
  if (aad?.length) c.setAAD(aad);
  return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
}

/** @param sealed ciphertext ‖ tag; throws INVALID_CIPHERTEXT when authentication fails */
export function gcmOpen(key: Buffer, nonce: Buffer, sealed: Buffer, aad?: Buffer, tagLength = 16): Buffer {
  if (sealed.length < tagLength || nonce.length === 0) throw err('INVALID_CIPHERTEXT', 'ciphertext is too short');
  try {
    const d = createDecipheriv(cipherName(key), key, nonce, { authTagLength: tagLength });
    d.setAuthTag(sealed.subarray(sealed.length - tagLength));
    if (aad?.length) d.setAAD(aad);
    return Buffer.concat([d.update(sealed.subarray(0, sealed.length - tagLength)), d.final()]);
  } catch {
    throw err('INVALID_CIPHERTEXT', 'ciphertext is not authentic: wrong key, wrong context, or corrupted data');
  }
}

/** AES-256-GCM with a random 12-byte nonce: nonce ‖ ciphertext ‖ tag. */
export function aesGcmEncrypt(key: Buffer, plaintext: Buffer, aad?: Buffer): Buffer {
  const nonce = randomBytes(12);
  return Buffer.concat([nonce, gcmSeal(key, nonce, plaintext, aad)]);
}

export function aesGcmDecrypt(key: Buffer, data: Buffer, aad?: Buffer): Buffer {
  if (data.length < 28) throw err('INVALID_CIPHERTEXT', 'ciphertext is too short');
  return gcmOpen(key, data.subarray(0, 12), data.subarray(12), aad);
}
