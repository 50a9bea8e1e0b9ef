/** AES key wrap: RFC 3394 (input a multiple of 8 bytes, ≥ 16) and RFC 5649 (with padding, any length ≥ 1). */
import { constants, createCipheriv, createDecipheriv, createPublicKey, type KeyObject, publicEncrypt, randomBytes } from 'node:crypto';
import { err } from '../errors.js';

const DEFAULT_IV = Buffer.from('a6a6a6a6a6a6a6a6', 'hex');
const PAD_IV = Buffer.from('a65959a6', 'hex');

function alg(kek: Buffer, pad: boolean): string {
  const bits = kek.length * 8;
  if (![128, 192, 256].includes(bits)) throw err('INVALID_INPUT', `key-encryption key must be 16, 24 or 32 bytes, got ${kek.length}`);
  return `id-aes${bits}-wrap${pad ? '-pad' : ''}`;
}

export function aesKeyWrap(kek: Buffer, keyData: Buffer, pad = false): Buffer {
  if (!pad && (keyData.length < 16 || keyData.length % 8 !== 0))
    throw err('INVALID_INPUT', 'RFC 3394 key wrap needs a multiple of 8 bytes, at least 16: use padding (RFC 5649)');
  if (pad && keyData.length === 0) throw err('INVALID_INPUT', 'nothing to wrap');
  const c = createCipheriv(alg(kek, pad), kek, pad ? PAD_IV : DEFAULT_IV);
  return Buffer.concat([c.update(keyData), c.final()]);
}

export function aesKeyUnwrap(kek: Buffer, wrapped: Buffer, pad = false): Buffer {
  const a = alg(kek, pad);
  if (wrapped.length < 16 || wrapped.length % 8 !== 0) throw err('INVALID_CIPHERTEXT', 'wrapped key has a bad length');
  try {
    const d = createDecipheriv(a, kek, pad ? PAD_IV : DEFAULT_IV);
    return Buffer.concat([d.update(wrapped), d.final()]);
  } catch {
    throw err('INVALID_CIPHERTEXT', 'key unwrap failed: wrong key-encryption key or corrupted data');
  }
}

/**
 * The KMS import wrapping AWS (RSA_AES_KEY_WRAP_SHA_256) and GCP (RSA_OAEP_*_SHA256_AES_256) share:
 * RSA-OAEP-SHA-256(a fresh AES-256 key) ‖ AES-KWP (RFC 5649) of the key material under that AES key.
 * The AES key is zeroed after use.
 */
export function rsaAesKeyWrap(wrappingKey: KeyObject | string, keyData: Buffer): Buffer {
  const aes = randomBytes(32);
  try {
    const key = typeof wrappingKey === 'string' ? createPublicKey(wrappingKey) : wrappingKey;
    return Buffer.concat([
      publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, aes),
      aesKeyWrap(aes, keyData, true),
    ]);
  } finally {
    aes.fill(0);
  }
}
