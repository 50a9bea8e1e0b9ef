/**
 * MinIO KES's symmetric ciphertext format, used by every aes256 encrypt/decrypt in keyport so that
 * data sealed by KES stays readable and KES can read ours.
 *
 * Binary form: sealed ‖ tag(16) ‖ iv(16) ‖ nonce(12). For an AES256 key the AEAD key is
 * HMAC-SHA256(key, iv) and the AEAD AES-256-GCM; for a ChaCha20 key it is HChaCha20(key, iv[0:16])
 * and the AEAD ChaCha20-Poly1305. Associated data = the caller's context.
 * Legacy forms (older KES), decrypted only: JSON {"aead": "AES-256-GCM-HMAC-SHA-256" | "ChaCha20Poly1305",
 * "id"?, "iv": b64, "nonce": b64, "bytes": b64} and MessagePack [algorithm, id, iv, nonce, bytes]
 * (KES v0.24 internal/crypto/ciphertext.go).
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
    s[a] = (s[a]! + s[b]!) >>> 0;
    s[d] = rotl(s[d]! ^ s[a]!, 16);
    s[c] = (s[c]! + s[d]!) >>> 0;
    s[b] = rotl(s[b]! ^ s[c]!, 12);
    s[a] = (s[a]! + s[b]!) >>> 0;
    s[d] = rotl(s[d]! ^ s[a]!, 8);
    s[c] = (s[c]! + s[d]!) >>> 0;
    s[b] = rotl(s[b]! ^ s[c]!, 7);
  };
  for (let i = 0; i < 10; i++) {
    qr(0, 4, 8, 12);
    qr(1, 5, 9, 13);
    qr(2, 6, 10, 14);
    qr(3, 7, 11, 15);
    qr(0, 5, 10, 15);
    qr(1, 6, 11, 12);
    qr(2, 7, 8, 13);
    qr(3, 4, 9, 14);
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

const LEGACY_AEAD: Record<string, KesAlgorithm> = { 'AES-256-GCM-HMAC-SHA-256': 'AES256', ChaCha20Poly1305: 'ChaCha20' };
const MSGP_ALGORITHM: Record<string, KesAlgorithm> = {
  AES256: 'AES256',
  'AES256-GCM_SHA256': 'AES256',
  ChaCha20: 'ChaCha20',
  'XCHACHA20-POLY1305': 'ChaCha20',
};

interface Legacy {
  alg: KesAlgorithm;
  iv: Buffer;
  nonce: Buffer;
  sealed: Buffer;
}

/** Go's base64.StdEncoding as encoding/json uses it for []byte; undefined when not valid */
function b64(v: unknown): Buffer | undefined {
  if (v === null || v === undefined) return Buffer.alloc(0);
  if (typeof v !== 'string') return undefined;
  const t = v.replace(/[\r\n]/g, '');
  if (t.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(t)) return undefined;
  return Buffer.from(t, 'base64');
}

/** encoding/json matches field names exactly, else case-insensitively */
function field(o: Record<string, unknown>, name: string): unknown {
  if (Object.hasOwn(o, name)) return o[name];
  let v: unknown;
  for (const [k, x] of Object.entries(o)) if (k.toLowerCase() === name) v = x;
  return v;
}

/** legacy JSON ciphertext (KES before msgpack): {"aead", "id"?, "iv", "nonce", "bytes"} */
function parseJson(ct: Buffer): Legacy | undefined {
  let j: unknown;
  try {
    j = JSON.parse(ct.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!j || typeof j !== 'object' || Array.isArray(j)) return undefined;
  const o = j as Record<string, unknown>;
  const alg = LEGACY_AEAD[String(field(o, 'aead'))];
  const iv = b64(field(o, 'iv'));
  const nonce = b64(field(o, 'nonce'));
  const sealed = b64(field(o, 'bytes'));
  if (!alg || !iv || !nonce || !sealed || iv.length !== IV || nonce.length !== NONCE) return undefined;
  return { alg, iv, nonce, sealed };
}

/** legacy MessagePack ciphertext: fixarray(5) [str algorithm, str id, bin iv(16), bin nonce(12), bin bytes] */
function parseMsgpack(ct: Buffer): Legacy | undefined {
  let i = 1; // 0x95 = fixarray of 5
  const len = (n: number) => {
    if (i + n > ct.length) throw new RangeError();
    const v = n === 1 ? ct[i]! : n === 2 ? ct.readUInt16BE(i) : ct.readUInt32BE(i);
    i += n;
    return v;
  };
  const take = (n: number) => {
    if (i + n > ct.length) throw new RangeError();
    const b = ct.subarray(i, i + n);
    i += n;
    return b;
  };
  const str = () => {
    const t = ct[i++];
    if (t === undefined) throw new RangeError();
    if (t >= 0xa0 && t <= 0xbf) return take(t & 0x1f).toString('utf8');
    if (t === 0xd9) return take(len(1)).toString('utf8');
    if (t === 0xda) return take(len(2)).toString('utf8');
    if (t === 0xdb) return take(len(4)).toString('utf8');
    throw new RangeError();
  };
  const bin = () => {
    const t = ct[i++];
    if (t === 0xc4) return take(len(1));
    if (t === 0xc5) return take(len(2));
    if (t === 0xc6) return take(len(4));
    throw new RangeError();
  };
  try {
    const alg = MSGP_ALGORITHM[str()];
    str(); // key id
    const iv = bin();
    const nonce = bin();
    const sealed = bin();
    if (!alg || iv.length !== IV || nonce.length !== NONCE || i !== ct.length) return undefined;
    return { alg, iv, nonce, sealed };
  } catch {
    return undefined;
  }
}

/**
 * Decrypt every form KES produced: the binary form of KES v0.23+, and the older MessagePack (first
 * byte 0x95) and JSON (first byte '{') forms. Like KES, a legacy-looking ciphertext that does not
 * parse is tried as the binary form. A legacy ciphertext names its AEAD; it is honoured, so
 * ChaCha20-Poly1305 data of KES versions whose keys had no type still opens.
 */
export function kesDecrypt(key: Buffer, ciphertext: Buffer, context?: Buffer, algorithm: KesAlgorithm = 'AES256'): Buffer {
  checkKey(key);
  const first = ciphertext[0];
  const legacy = first === 0x7b ? parseJson(ciphertext) : first === 0x95 ? parseMsgpack(ciphertext) : undefined;
  if (legacy) return open(legacy.alg, key, legacy.iv, legacy.nonce, legacy.sealed, context);
  if (ciphertext.length < TAG + IV + NONCE) throw err('INVALID_CIPHERTEXT', 'ciphertext is too short to be a KES ciphertext');
  const n = ciphertext.length;
  const nonce = ciphertext.subarray(n - NONCE);
  const iv = ciphertext.subarray(n - NONCE - IV, n - NONCE);
  return open(algorithm, key, iv, nonce, ciphertext.subarray(0, n - NONCE - IV), context);
}
