/**
 * Public-key encryption.
 * - RSA-OAEP with SHA-256 and MGF1-SHA-256 (optional label).
 * - ECIES on P-256: ephemeral ECDH, HKDF-SHA256 (salt empty, info = "keyport-ecies-v1" ‖ ephemeral
 *   public point) → 256-bit AES-GCM key; output = ephemeral point (65 bytes, uncompressed) ‖ nonce(12)
 *   ‖ ciphertext ‖ tag(16).
 */
import {
  constants,
  diffieHellman,
  createPublicKey,
  generateKeyPairSync,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { err } from '../errors.js';
import { gcmOpen, gcmSeal } from './aead.js';
import { hkdfSha256 } from './mac.js';

export function rsaOaepEncrypt(publicKey: KeyObject, plaintext: Buffer, label?: Buffer): Buffer {
  try {
    return publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: label }, plaintext);
  } catch {
    throw err('INVALID_INPUT', 'plaintext too long for RSA-OAEP-SHA256 with this key (max modulus bytes − 66)');
  }
}

export function rsaOaepDecrypt(privateKey: KeyObject, ciphertext: Buffer, label?: Buffer): Buffer {
  try {
    return privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: label }, ciphertext);
  } catch {
    throw err('INVALID_CIPHERTEXT', 'RSA-OAEP decryption failed: wrong key or corrupted ciphertext');
  }
}

const ECIES_INFO = Buffer.from('keyport-ecies-v1');
const POINT = 65;

function eciesKey(shared: Buffer, ephemeral: Buffer): Buffer {
  return hkdfSha256(shared, Buffer.alloc(0), Buffer.concat([ECIES_INFO, ephemeral]), 32);
}

export function eciesEncrypt(publicKey: KeyObject, plaintext: Buffer, aad?: Buffer): Buffer {
  const eph = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const shared = diffieHellman({ privateKey: eph.privateKey, publicKey });
  const jwk = eph.publicKey.export({ format: 'jwk' });
  const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
  const nonce = randomBytes(12);
  return Buffer.concat([point, nonce, gcmSeal(eciesKey(shared, point), nonce, plaintext, aad)]);
}

export function eciesDecrypt(privateKey: KeyObject, data: Buffer, aad?: Buffer): Buffer {
  if (data.length < POINT + 12 + 16) throw err('INVALID_CIPHERTEXT', 'ECIES ciphertext is too short');
  const point = data.subarray(0, POINT);
  let eph: KeyObject;
  try {
    if (point[0] !== 4) throw new Error('not an uncompressed point');
    // importing as a JWK validates that the point is on the curve
    eph = createPublicKey({
      key: { kty: 'EC', crv: 'P-256', x: point.subarray(1, 33).toString('base64url'), y: point.subarray(33, 65).toString('base64url') },
      format: 'jwk',
    });
  } catch {
    throw err('INVALID_CIPHERTEXT', 'ECIES ciphertext has an invalid ephemeral key');
  }
  const shared = diffieHellman({ privateKey, publicKey: eph });
  return gcmOpen(eciesKey(shared, point), data.subarray(POINT, POINT + 12), data.subarray(POINT + 12), aad);
}
