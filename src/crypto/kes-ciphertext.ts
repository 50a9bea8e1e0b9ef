/**
 * MinIO KES's symmetric ciphertext format, used by every aes256 encrypt/decrypt in keyport so that
 * data sealed by KES stays readable and KES can read ours.
 *
 * Binary form: sealed ‖ tag(16) ‖ iv(16) ‖ nonce(12). For an AES256 key the AEAD key is
 * HMAC-SHA256(key, iv) and the AEAD AES-256-GCM; for a ChaCha20 key it is HChaCha20(key, iv[0:16])
 * and the AEAD ChaCha20-Poly1305. Associated data = the caller's context.
 * Legacy JSON form (older KES): {"aead": "AES-256-GCM-HMAC-SHA-256" | "ChaCha20Poly1305", "iv": b64,
 * "nonce": b64, "bytes": b64}.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { err } from '../errors.js';
import { gcmOpen, gcmSeal } from './aead.js';

export type KesAlgorithm = 'AES256' | 'ChaCha20';

const IV = 16;
const NONCE = 12;
const TAG = 16;

function rotl(v: number, n: number) {
  return ((v << n) | (v >>> (32 - n))) >>> 0;
}

/** HChaCha20 (draft-irtf-cfrg-xchacha §2.2): a 256-bit subkey from a key and a 16-byte nonce */
export function hchacha20(key: Buffer, nonce16: Buffer): Buffer {
  const s = new Uint32Array(16);
  s[0] = 0x61707865;
  s[1] = 0x3320646e;
  s[2] = 0x79622d32;
  s[3] = 0x6b206574;
  for (let i = 0; i < 8; i++) s[4 + i] = key.readUInt32LE(i * 4);
  for (let i = 0; i < 4; i++) s[12 + i] = nonce16.readUInt32LE(i * 4);
  const qr = (a: number, b: number, c: number, d: number) => {
    s[a] = (s[a]! + s[b]!) >>> 0; s[d] = rotl(s[d]! ^ s[a]!, 16);
    s[c] = (s[c]! + s[d]!) >>> 0; s[b] = rotl(s[b]! ^ s[c]!, 12);
    s[a] = (s[a]! + s[b]!) >>> 0; s[d] = rotl(s[d]! ^ s[a]!, 8);
    s[c] = (s[c]! + s[d]!) >>> 0; s[b] = rotl(s[b]! ^ s[c]!, 7);
  };
  for (let i = 0; i < 10; i++) {
    qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15);
    qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14);
  }
  const out = Buffer.alloc(32);
  for (let i = 0; i < 4; i++) out.writeUInt32LE(s[i]!, i * 4);
  for (let i = 0; i < 4; i++) out.writeUInt32LE(s[12 + i]!, 16 + i * 4);
  return out;
}

function seal(alg: KesAlgorithm, key: Buffer, iv: Buffer, nonce: Buffer, pt: Buffer, ad?: Buffer): Buffer {
  if (alg === 'AES256') return gcmSeal(createHmac('sha256', key).update(iv).digest(), nonce, pt, ad);
  const c = createCipheriv('chacha20-poly1305', hchacha20(key, iv), nonce, { authTagLength: TAG });
  if (ad?.length) c.setAAD(ad, { plaintextLength: pt.length });
  return Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]);
}

function open(alg: KesAlgorithm, key: Buffer, iv: Buffer, nonce: Buffer, sealed: Buffer, ad?: Buffer): Buffer {
  if (alg === 'AES256') return gcmOpen(createHmac('sha256', key).update(iv).digest(), nonce, sealed, ad);
  if (sealed.length < TAG) throw err('INVALID_CIPHERTEXT', 'ciphertext is too short');
  try {
    const d = createDecipheriv('chacha20-poly1305', hchacha20(key, iv), nonce, { authTagLength: TAG });
    d.setAuthTag(sealed.subarray(sealed.length - TAG));
    if (ad?.length) d.setAAD(ad, { plaintextLength: sealed.length - TAG });
    return Buffer.concat([d.update(sealed.subarray(0, sealed.length - TAG)), d.final()]);
  } catch {
    throw err('INVALID_CIPHERTEXT', 'ciphertext is not authentic: wrong key, wrong context, or corrupted data');
  }
}

function checkKey(key: Buffer) {
  if (key.length !== 32) throw err('INVALID_INPUT', 'a KES key is 32 bytes');
}

export function kesEncrypt(key: Buffer, plaintext: Buffer, context?: Buffer, algorithm: KesAlgorithm = 'AES256'): Buffer {
  checkKey(key);
  const ivNonce = randomBytes(IV + NONCE);
  const iv = ivNonce.subarray(0, IV);
  const nonce = ivNonce.subarray(IV);
  return Buffer.concat([seal(algorithm, key, iv, nonce, plaintext, context), ivNonce]);
}

const LEGACY_AEAD: Record<string, KesAlgorithm> = { 'AES-256-GCM-HMAC-SHA-256': 'AES256', 'ChaCha20Poly1305': 'ChaCha20' };

function b64(v: unknown, what: string): Buffer {
  if (typeof v !== 'string') throw err('INVALID_CIPHERTEXT', `legacy KES ciphertext: '${what}' missing`);
  return Buffer.from(v, 'base64');
}

export function kesDecrypt(key: Buffer, ciphertext: Buffer, context?: Buffer, algorithm: KesAlgorithm = 'AES256'): Buffer {
  checkKey(key);
  if (ciphertext.length > 0 && ciphertext[0] === 0x7b /* { */) {
    let j: Record<string, unknown> | undefined;
    try {
      j = JSON.parse(ciphertext.toString('utf8')) as Record<string, unknown>;
    } catch {
      j = undefined; // a binary ciphertext may start with '{' by chance
    }
    if (j && typeof j === 'object') {
      const alg = LEGACY_AEAD[String(j['aead'])];
      if (!alg) throw err('INVALID_CIPHERTEXT', `legacy KES ciphertext: unknown aead '${String(j['aead']).slice(0, 40)}'`);
      const iv = b64(j['iv'], 'iv');
      const nonce = b64(j['nonce'], 'nonce');
      if (iv.length !== IV || nonce.length !== NONCE) throw err('INVALID_CIPHERTEXT', 'legacy KES ciphertext: bad iv or nonce size');
      return open(alg, key, iv, nonce, b64(j['bytes'], 'bytes'), context);
    }
  }
  if (ciphertext.length < TAG + IV + NONCE) throw err('INVALID_CIPHERTEXT', 'ciphertext is too short to be a KES ciphertext');
  const n = ciphertext.length;
  const nonce = ciphertext.subarray(n - NONCE);
  const iv = ciphertext.subarray(n - NONCE - IV, n - NONCE);
  return open(algorithm, key, iv, nonce, ciphertext.subarray(0, n - NONCE - IV), context);
}
