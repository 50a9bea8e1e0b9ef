/**
 * Who signs a topology transaction: any key wherever it lives. A TopologySigner signs the 34-byte hash and
 * returns the signature in Canton's format (DER for ECDSA, 64 bytes for Ed25519). Signers exist over a
 * keyring key (local store, envelope store or KMS-held external key), over a KMS key addressed directly
 * (the offline root: a key the node's store never references), and over an in-memory private key (tests).
 * Every ECDSA signature leaves here in low-S form (s <= n/2), as every other keyport signature does: a KMS or
 * OpenSSL returns either twin, and only one of them may be what keyport hands out.
 */
import { type KeyObject, sign as nodeSign } from 'node:crypto';
import { err } from '../../errors.js';
import type { KeyType } from '../../crypto/keytypes.js';
import { keyTypeOf, publicKeyObject, spkiOf } from '../../crypto/keys.js';
import { lowS } from '../../crypto/ecdsa-encoding.js';
import type { Keyring } from '../../keys/types.js';
import type { KeyUsage } from '../../store/types.js';
import type { Driver, SigningAlgoSpec } from '../../kms/driver.js';
import { keyFingerprint } from './hash.js';
import { ALGO_OF } from './keys.js';
import { type Signature, SignatureFormat, SigningAlgorithmSpec } from './messages.js';

export interface TopologySigner {
  /** Canton fingerprint of the signing key (= `signed_by`) */
  readonly fingerprint: string;
  /** the key's type: ec-p256, ec-p384, secp256k1 or ed25519 */
  readonly keySpec: KeyType;
  /** SPKI DER of the public key */
  readonly publicKey: Buffer;
  /** sign Canton's 34-byte hash; DER (ECDSA) or 64-byte (Ed25519) */
  sign(data: Buffer): Promise<Buffer>;
}

function checkSpec(type: KeyType, what: string): void {
  if (ALGO_OF[type] === undefined)
    throw err('KEY_USAGE', `${what} is a ${type} key: Canton signs with ec-p256, ec-p384, secp256k1 or ed25519 keys`);
}

/** a key in a keyring (any store; KMS-held keys sign in the KMS); `usage` is what the signature is for */
export async function keyringSigner(
  keyring: Keyring,
  name: string,
  opts: { version?: number; usage?: KeyUsage } = {},
): Promise<TopologySigner> {
  const spki = await keyring.publicKey(name, opts.version);
  const keySpec = keyTypeOf(publicKeyObject(spki));
  checkSpec(keySpec, `key '${name}'`);
  return {
    fingerprint: keyFingerprint(spki),
    keySpec,
    publicKey: spki,
    sign: (data) =>
      keyring.sign(name, data, {
        format: 'der',
        ...(opts.usage ? { usage: opts.usage } : {}),
        ...(opts.version !== undefined ? { version: opts.version } : {}),
      }),
  };
}

const DRIVER_ALGO: Partial<Record<KeyType, SigningAlgoSpec>> = {
  'ec-p256': 'ecdsa-sha256',
  secp256k1: 'ecdsa-sha256',
  'ec-p384': 'ecdsa-sha384',
  ed25519: 'ed25519',
};

/** a KMS key addressed directly by id (the offline root key: HSM/KMS the node never reaches) */
export async function driverSigner(driver: Driver, keyId: string): Promise<TopologySigner> {
  const { spki } = await driver.getPublicKey(keyId);
  const keySpec = keyTypeOf(publicKeyObject(spki));
  checkSpec(keySpec, `KMS key '${keyId}'`);
  return {
    fingerprint: keyFingerprint(spki),
    keySpec,
    publicKey: spki,
    sign: async (data) => lowS(keySpec, await driver.sign(keyId, data, DRIVER_ALGO[keySpec]!), 'der'),
  };
}

/** an in-memory private key */
export function softwareSigner(privateKey: KeyObject): TopologySigner {
  const spki = spkiOf(privateKey);
  const keySpec = keyTypeOf(privateKey);
  checkSpec(keySpec, 'the private key');
  const hash = keySpec === 'ed25519' ? null : keySpec === 'ec-p384' ? 'sha384' : 'sha256';
  return {
    fingerprint: keyFingerprint(spki),
    keySpec,
    publicKey: spki,
    sign: async (data) => lowS(keySpec, nodeSign(hash, data, hash ? { key: privateKey, dsaEncoding: 'der' } : privateKey), 'der'),
  };
}

/** a Canton Signature message over `hash` by `signer` */
export async function signHash(signer: TopologySigner, hash: Buffer): Promise<Signature> {
  const algo = ALGO_OF[signer.keySpec]!;
  const signature = await signer.sign(hash);
  return {
    format: algo === SigningAlgorithmSpec.ED25519 ? SignatureFormat.CONCAT : SignatureFormat.DER,
    signature,
    signedBy: signer.fingerprint,
    signingAlgorithmSpec: algo,
  };
}
