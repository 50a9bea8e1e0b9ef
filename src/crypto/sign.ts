/**
 * Signatures: ECDSA (DER or raw r‖s, SHA-256 for P-256/secp256k1, SHA-384 for P-384), Ed25519, and
 * RSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt). ECDSA signatures are always low-S (s ≤ n/2), so none
 * can be altered into a second valid one; a strict verify rejects high-S ones. Verify returns false on a
 * bad signature and throws only on unusable keys.
 */
import { sign as nodeSign, verify as nodeVerify, constants, type KeyObject } from 'node:crypto';
import { KEY_TYPE_INFO, type KeyType } from './keytypes.js';
import { isHighS, lowS } from './ecdsa-encoding.js';

export type SignatureFormat = 'der' | 'raw';

function params(type: KeyType, key: KeyObject, format: SignatureFormat) {
  const info = KEY_TYPE_INFO[type];
  switch (info.family) {
    case 'ec':
      return { alg: info.hash!, opts: { key, dsaEncoding: format === 'raw' ? ('ieee-p1363' as const) : ('der' as const) } };
    case 'ed25519':
      return { alg: null, opts: { key } };
    case 'rsa':
      return { alg: 'sha256', opts: { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } };
    default:
      throw new TypeError(`${type} cannot sign`);
  }
}

export function signData(type: KeyType, privateKey: KeyObject, data: Buffer, format: SignatureFormat = 'der'): Buffer {
  const p = params(type, privateKey, format);
  const sig = nodeSign(p.alg, data, p.opts);
  return KEY_TYPE_INFO[type].family === 'ec' ? lowS(type, sig, format) : sig;
}

export interface VerifyOptions {
  /** ECDSA: reject a high-S signature (s > n/2) even where the curve's equation accepts it */
  strict?: boolean;
}

export function verifyData(
  type: KeyType,
  publicKey: KeyObject,
  data: Buffer,
  signature: Buffer,
  format: SignatureFormat = 'der',
  o: VerifyOptions = {},
): boolean {
  const p = params(type, publicKey, format);
  if (o.strict && KEY_TYPE_INFO[type].family === 'ec' && isHighS(type, signature, format)) return false;
  try {
    return nodeVerify(p.alg, data, p.opts, signature);
  } catch {
    return false; // malformed signature encodings are just invalid signatures
  }
}
