/**
 * Canton's key and signature vocabulary ⇄ keyport's key types, and signature verification exactly as Canton
 * does it (ECDSA-with-SHA-256/384 DER, or Ed25519, over the 34-byte hash; signer must be the key's fingerprint;
 * algorithm consistent with the key spec; format allowed for the algorithm).
 */
import { type KeyObject, verify as nodeVerify } from 'node:crypto';
import { err } from '../../errors.js';
import type { KeyType } from '../../crypto/keytypes.js';
import { keyTypeOf, publicKeyObject } from '../../crypto/keys.js';
import { keyFingerprint } from './hash.js';
import {
  CryptoKeyFormat,
  EncryptionKeySpec,
  type EncryptionPublicKey,
  type PublicKey,
  type Signature,
  SignatureFormat,
  SigningAlgorithmSpec,
  SigningKeySpec,
  SigningKeyUsage,
  type SigningPublicKey,
} from './messages.js';

export const SIGNING_SPEC_OF: Partial<Record<KeyType, number>> = {
  ed25519: SigningKeySpec.EC_CURVE25519,
  'ec-p256': SigningKeySpec.EC_P256,
  'ec-p384': SigningKeySpec.EC_P384,
  secp256k1: SigningKeySpec.EC_SECP256K1,
};

export const ENCRYPTION_SPEC_OF: Partial<Record<KeyType, number>> = {
  'ec-p256': EncryptionKeySpec.EC_P256,
  'rsa-2048': EncryptionKeySpec.RSA_2048,
};

export const ALGO_OF: Partial<Record<KeyType, number>> = {
  ed25519: SigningAlgorithmSpec.ED25519,
  'ec-p256': SigningAlgorithmSpec.EC_DSA_SHA_256,
  secp256k1: SigningAlgorithmSpec.EC_DSA_SHA_256,
  'ec-p384': SigningAlgorithmSpec.EC_DSA_SHA_384,
};

export function signingKeyTypeOfSpec(spec: number): KeyType | undefined {
  return (Object.entries(SIGNING_SPEC_OF) as [KeyType, number][]).find(([, v]) => v === spec)?.[0];
}

/** the usages Canton writes for a node key: namespace keys [NAMESPACE]; others get PROOF_OF_OWNERSHIP added */
export function cantonUsages(usages: ('namespace' | 'sequencer-auth' | 'protocol')[]): number[] {
  const set = new Set<number>();
  for (const u of usages)
    set.add(
      u === 'namespace'
        ? SigningKeyUsage.NAMESPACE
        : u === 'sequencer-auth'
          ? SigningKeyUsage.SEQUENCER_AUTHENTICATION
          : SigningKeyUsage.PROTOCOL,
    );
  // SigningPublicKey.create adds PROOF_OF_OWNERSHIP unless the result is an invalid combination
  // ({PROOF_OF_OWNERSHIP} alone, or {NAMESPACE, PROOF_OF_OWNERSHIP})
  if (!(set.size === 1 && set.has(SigningKeyUsage.NAMESPACE))) set.add(SigningKeyUsage.PROOF_OF_OWNERSHIP);
  return [...set].sort((a, b) => a - b);
}

export function signingPublicKey(spki: Buffer, type: KeyType, usage: number[]): SigningPublicKey {
  const keySpec = SIGNING_SPEC_OF[type];
  if (keySpec === undefined)
    throw err('KEY_USAGE', `a ${type} key cannot be a Canton signing key: use ec-p256, ec-p384, ed25519 or secp256k1`);
  return { format: CryptoKeyFormat.DER_X509_SPKI, publicKey: spki, scheme: 0, usage, keySpec };
}

export function encryptionPublicKey(spki: Buffer, type: KeyType): EncryptionPublicKey {
  const keySpec = ENCRYPTION_SPEC_OF[type];
  if (keySpec === undefined) throw err('KEY_USAGE', `a ${type} key cannot be a Canton encryption key: use rsa-2048 or ec-p256`);
  return { format: CryptoKeyFormat.DER_X509_SPKI, publicKey: spki, scheme: 0, keySpec };
}

/** Canton's id of a public key (signing or encryption) */
export function publicKeyId(k: SigningPublicKey | EncryptionPublicKey): string {
  if (k.format !== CryptoKeyFormat.DER_X509_SPKI && k.format !== CryptoKeyFormat.RAW && k.format !== CryptoKeyFormat.DER)
    throw err('UNSUPPORTED', `public key format ${k.format} is not supported`);
  if (k.format === CryptoKeyFormat.RAW) return keyFingerprint(Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), k.publicKey]));
  return keyFingerprint(k.publicKey);
}

export function publicKeyOf(k: PublicKey): SigningPublicKey | EncryptionPublicKey {
  return (k.signing ?? k.encryption)!;
}

function spkiOf(k: SigningPublicKey): Buffer {
  if (k.format === CryptoKeyFormat.RAW) return Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), k.publicKey]);
  return k.publicKey;
}

/** the key spec Canton would assume (key_spec, else the deprecated scheme) */
function effectiveSpec(k: SigningPublicKey): number {
  if (k.keySpec !== SigningKeySpec.UNSPECIFIED) return k.keySpec;
  return [0, SigningKeySpec.EC_CURVE25519, SigningKeySpec.EC_P256, SigningKeySpec.EC_P384][k.scheme] ?? 0;
}

const ALGO_FOR_SPEC: Record<number, number[]> = {
  [SigningKeySpec.EC_CURVE25519]: [SigningAlgorithmSpec.ED25519],
  [SigningKeySpec.EC_P256]: [SigningAlgorithmSpec.EC_DSA_SHA_256],
  [SigningKeySpec.EC_SECP256K1]: [SigningAlgorithmSpec.EC_DSA_SHA_256],
  [SigningKeySpec.EC_P384]: [SigningAlgorithmSpec.EC_DSA_SHA_384],
};

/**
 * Verify one signature over `data` (a 34-byte hash) with `key`, by Canton's rules. Returns null when it
 * verifies, else the reason. Session-key delegations are reported, not followed.
 */
export function verifyCantonSignature(key: SigningPublicKey, data: Buffer, sig: Signature): string | null {
  const id = publicKeyId(key);
  if (sig.signedBy !== id) return `signed by ${sig.signedBy}, not by key ${id}`;
  if (sig.signatureDelegation) return 'signed through a session-key delegation, which this verifier does not follow';
  const spec = effectiveSpec(key);
  const allowed = ALGO_FOR_SPEC[spec];
  if (!allowed) return `key ${id} has unsupported key spec ${spec}`;
  const algo = sig.signingAlgorithmSpec === SigningAlgorithmSpec.UNSPECIFIED ? allowed[0]! : sig.signingAlgorithmSpec;
  if (!allowed.includes(algo)) return `signing algorithm ${algo} does not fit key spec ${spec}`;
  let format = sig.format;
  if (format === SignatureFormat.RAW || format === SignatureFormat.UNSPECIFIED)
    format = algo === SigningAlgorithmSpec.ED25519 ? SignatureFormat.CONCAT : SignatureFormat.DER;
  const wantFormat = algo === SigningAlgorithmSpec.ED25519 ? SignatureFormat.CONCAT : SignatureFormat.DER;
  if (format !== wantFormat) return `signature format ${format} is not allowed for algorithm ${algo}`;
  let pub: KeyObject;
  try {
    pub = publicKeyObject(spkiOf(key));
  } catch {
    return `key ${id} is not a valid public key`;
  }
  const hash = algo === SigningAlgorithmSpec.EC_DSA_SHA_384 ? 'sha384' : algo === SigningAlgorithmSpec.EC_DSA_SHA_256 ? 'sha256' : null;
  let ok = false;
  try {
    ok = nodeVerify(hash, data, hash ? { key: pub, dsaEncoding: 'der' } : pub, sig.signature);
  } catch {
    ok = false;
  }
  return ok ? null : `signature by ${id} does not verify`;
}

export function keyTypeOfSpki(spki: Buffer): KeyType {
  return keyTypeOf(publicKeyObject(spki));
}
