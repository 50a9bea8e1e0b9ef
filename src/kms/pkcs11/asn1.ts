/**
 * The few DER pieces the PKCS#11 driver needs: named-curve OIDs for CKA_EC_PARAMS, and the DER OCTET
 * STRING that wraps CKA_EC_POINT. Public keys become SPKI through node:crypto's JWK import.
 */
import { createPublicKey } from 'node:crypto';
import { err } from '../../errors.js';

export type EcSpec = 'ec-p256' | 'ec-p384' | 'secp256k1';

export const CURVES: Record<EcSpec, { params: Buffer; crv: string; size: number }> = {
  // 1.2.840.10045.3.1.7
  'ec-p256': { params: Buffer.from('06082a8648ce3d030107', 'hex'), crv: 'P-256', size: 32 },
  // 1.3.132.0.34
  'ec-p384': { params: Buffer.from('06052b81040022', 'hex'), crv: 'P-384', size: 48 },
  // 1.3.132.0.10
  secp256k1: { params: Buffer.from('06052b8104000a', 'hex'), crv: 'secp256k1', size: 32 },
};

/** id-Ed25519 (1.3.101.112), what SoftHSM 2.6 takes; PKCS#11 3.0 also allows PrintableString "edwards25519" */
export const ED25519_PARAMS = Buffer.from('06032b6570', 'hex');
const ED25519_PRINTABLE = Buffer.concat([Buffer.from([0x13, 12]), Buffer.from('edwards25519')]);

export function ecSpecOfParams(params: Buffer): EcSpec | 'ed25519' | undefined {
  for (const [spec, c] of Object.entries(CURVES)) if (c.params.equals(params)) return spec as EcSpec;
  if (params.equals(ED25519_PARAMS) || params.equals(ED25519_PRINTABLE)) return 'ed25519';
  return undefined;
}

/** DER OCTET STRING around `v` (CKA_EC_POINT is an encoded OCTET STRING per PKCS#11 2.40) */
export function octetString(v: Buffer): Buffer {
  const len =
    v.length < 128
      ? Buffer.from([v.length])
      : v.length < 256
        ? Buffer.from([0x81, v.length])
        : Buffer.from([0x82, v.length >> 8, v.length & 0xff]);
  return Buffer.concat([Buffer.from([0x04]), len, v]);
}

/**
 * CKA_EC_POINT -> the raw point. Most modules (SoftHSM included) return a DER OCTET STRING; some return
 * the bare point. `rawLen` is the expected raw length (65/97 for uncompressed points, 32 for Ed25519).
 */
export function unwrapEcPoint(v: Buffer, rawLen: number): Buffer {
  if (v.length === rawLen) return v;
  if (v[0] === 0x04) {
    let o = 1;
    let len = v[o++]!;
    if (len === 0x81) len = v[o++]!;
    else if (len === 0x82) {
      len = (v[o]! << 8) | v[o + 1]!;
      o += 2;
    }
    if (o + len === v.length && len === rawLen) return v.subarray(o);
  }
  throw err('INTERNAL', `pkcs11: the token returned an EC point of unexpected form (${v.length} bytes)`);
}

export function ecSpki(spec: EcSpec, point: Buffer): Buffer {
  const c = CURVES[spec];
  const raw = unwrapEcPoint(point, 1 + 2 * c.size);
  if (raw[0] !== 0x04) throw err('INTERNAL', 'pkcs11: the token returned a compressed EC point');
  const x = raw.subarray(1, 1 + c.size).toString('base64url');
  const y = raw.subarray(1 + c.size).toString('base64url');
  return createPublicKey({ key: { kty: 'EC', crv: c.crv, x, y }, format: 'jwk' }).export({ format: 'der', type: 'spki' });
}

export function ed25519Spki(point: Buffer): Buffer {
  const x = unwrapEcPoint(point, 32).toString('base64url');
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' }).export({ format: 'der', type: 'spki' });
}

export function rsaSpki(modulus: Buffer, exponent: Buffer): Buffer {
  return createPublicKey({
    key: { kty: 'RSA', n: modulus.toString('base64url'), e: exponent.toString('base64url') },
    format: 'jwk',
  }).export({ format: 'der', type: 'spki' });
}
