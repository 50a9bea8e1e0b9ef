/**
 * Fingerprints that identify key material without revealing it.
 * - Asymmetric: Canton's public-key fingerprint, a multihash `1220` ‖ SHA-256(int32 BE hash purpose 12 ‖
 *   key bytes), where key bytes are the SPKI DER, or the raw 32-byte public key for Ed25519.
 * - aes256: a key check value `kcv1` ‖ hex(HMAC-SHA256(key, "keyport-kcv-v1")[0..16]).
 */
import { createHash, createHmac } from 'node:crypto';
import type { KeyType } from './keytypes.js';

const PUBLIC_KEY_FINGERPRINT_PURPOSE = 12;
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export function cantonFingerprint(spki: Buffer, type?: KeyType): string {
  let bytes = spki;
  if (type === 'ed25519' || (spki.length === 44 && spki.subarray(0, 12).equals(ED25519_SPKI_PREFIX))) bytes = spki.subarray(12);
  const purpose = Buffer.alloc(4);
  purpose.writeInt32BE(PUBLIC_KEY_FINGERPRINT_PURPOSE);
  return '1220' + createHash('sha256').update(purpose).update(bytes).digest('hex');
}

/** over the 256-bit key itself (an aes256 secret may carry a KES HMAC key after it) */
export function kcv(secret: Buffer): string {
  return 'kcv1' + createHmac('sha256', secret.subarray(0, 32)).update('keyport-kcv-v1').digest().subarray(0, 16).toString('hex');
}

/** The fingerprint of a key version: KCV for symmetric, Canton fingerprint otherwise. */
export function fingerprintOf(type: KeyType, material: { secret?: Buffer; publicKey?: Buffer }): string {
  if (type === 'aes256') return kcv(material.secret!);
  return cantonFingerprint(material.publicKey!, type);
}
