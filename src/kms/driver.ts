/**
 * The KMS Driver API, modelled on Canton's v1 KMS driver: one small interface every KMS backend
 * (aws, gcp, azure, pkcs11, kmip, local, third-party `driver:` modules) implements. Drivers never
 * re-implement crypto that src/crypto has: local public-key operations (verify, encrypt) are done by
 * the caller with the SPKI from getPublicKey.
 */
export type Health =
  | { state: 'ok' }
  | { state: 'degraded'; reason: string }
  | { state: 'failed'; reason: string }
  | { state: 'fatal'; reason: string };

export type SigningKeySpec = 'ec-p256' | 'ec-p384' | 'secp256k1' | 'ed25519' | 'rsa-2048' | 'rsa-3072';
export type SigningAlgoSpec = 'ecdsa-sha256' | 'ecdsa-sha384' | 'ed25519' | 'rsa-pss-sha256';
export type EncryptionKeySpec = 'rsa-2048' | 'rsa-3072' | 'ec-p256';
export type EncryptionAlgoSpec = 'rsa-oaep-sha256' | 'ecies-p256-hkdf-sha256-aes-gcm';

export interface DriverPublicKey {
  /** SubjectPublicKeyInfo, DER */
  spki: Buffer;
  spec: SigningKeySpec | EncryptionKeySpec;
}

export interface KeyMaterialForImport {
  kind: 'symmetric' | 'signing' | 'encryption';
  spec: SigningKeySpec | EncryptionKeySpec | 'aes256';
  /** 32 raw bytes for symmetric keys; PKCS#8 DER for private keys */
  secret: Buffer;
}

export interface DriverKeyInfo {
  keyId: string;
  name?: string;
  kind?: 'symmetric' | 'signing' | 'encryption';
  spec?: string;
  state?: 'enabled' | 'disabled' | 'pending-deletion' | 'unknown';
}

/**
 * What a KMS says a key is and may do (AWS DescribeKey KeySpec/KeyUsage, PKCS#11 object attributes,
 * …), read before keyport adopts a key it did not make, so a key that cannot serve the requested
 * role is refused at registration instead of failing at its first use.
 */
export interface DriverKeyDescription {
  keyId: string;
  /** keyport's spec when keyport can use a key of this shape; undefined for any other (e.g. ECC_NIST_P521, HMAC) */
  spec?: SigningKeySpec | EncryptionKeySpec | 'aes256';
  /** the KMS lets the key sign */
  sign: boolean;
  /** the KMS lets the key decrypt (asymmetric) or encrypt and decrypt (symmetric) */
  decrypt: boolean;
  /** the key's full resource name where the KMS has one (AWS: its ARN) */
  arn?: string;
  /** the key in the KMS's own words, for messages: `ECC_NIST_P521 with KeyUsage SIGN_VERIFY` */
  native: string;
  /** how this KMS says "may sign" and "may decrypt", for messages: `KeyUsage SIGN_VERIFY` */
  words: { sign: string; decrypt: string };
}

/**
 * Per-call options (src/cancel.ts, shared with record stores): the caller's AbortSignal (a timeout or a
 * client gone) cancels the call — drivers hand it to their SDK; a driver that cannot cancel may ignore
 * it (instrument() stops waiting anyway).
 */
export type { CallOptions } from '../cancel.js';
import type { CallOptions } from '../cancel.js';

export interface Driver {
  /** scheme the driver registered for (awskms, gcpkms, …) */
  readonly name: string;
  /** never throws */
  health(): Promise<Health>;
  supportedSigningKeySpecs(): SigningKeySpec[];
  supportedSigningAlgoSpecs(): SigningAlgoSpec[];
  supportedEncryptionKeySpecs(): EncryptionKeySpec[];
  supportedEncryptionAlgoSpecs(): EncryptionAlgoSpec[];
  /** @returns the KMS key id */
  generateSigningKeyPair(spec: SigningKeySpec, name?: string, opts?: CallOptions): Promise<string>;
  generateEncryptionKeyPair(spec: EncryptionKeySpec, name?: string, opts?: CallOptions): Promise<string>;
  generateSymmetricKey(name?: string, opts?: CallOptions): Promise<string>;
  sign(keyId: string, data: Buffer, algo: SigningAlgoSpec, opts?: CallOptions): Promise<Buffer>;
  decryptAsymmetric(keyId: string, ciphertext: Buffer, algo: EncryptionAlgoSpec, opts?: CallOptions): Promise<Buffer>;
  encryptSymmetric(keyId: string, plaintext: Buffer, opts?: CallOptions): Promise<Buffer>;
  decryptSymmetric(keyId: string, ciphertext: Buffer, opts?: CallOptions): Promise<Buffer>;
  getPublicKey(keyId: string, opts?: CallOptions): Promise<DriverPublicKey>;
  /** resolves when the key exists and is usable; fails with NOT_FOUND / KEY_DISABLED */
  keyExistsAndIsActive(keyId: string, opts?: CallOptions): Promise<void>;
  deleteKey(keyId: string, opts?: CallOptions): Promise<void>;
  /** BYOK; absent where the KMS cannot import */
  importKey?(material: KeyMaterialForImport, name?: string, opts?: CallOptions): Promise<string>;
  /**
   * why this KMS will not import a key of this kind and spec, from its documented limits (and the
   * operator's connection settings), or undefined when it will; no KMS call. Absent: the KMS imports
   * every spec it can hold (see importRefusal below). Plans consult it before anything is attempted.
   */
  importRefusal?(kind: KeyMaterialForImport['kind'], spec: KeyMaterialForImport['spec']): string | undefined;
  /** absent where the KMS cannot list */
  listKeys?(): AsyncIterable<DriverKeyInfo>;
  /** what the key is and may do, as the KMS records it; absent where the KMS cannot tell */
  describeKey?(keyId: string, opts?: CallOptions): Promise<DriverKeyDescription>;
  /** resolve a user-given reference (alias, ARN, label) to the key id the driver uses */
  resolveKeyId?(ref: string, opts?: CallOptions): Promise<string>;
  close?(): Promise<void>;
  /**
   * true when the driver runs each of its KMS requests through src/kms/retry.ts itself (per KMS
   * operation: limiter, throttling, unknown-outcome creates); instrument() then makes one attempt
   * per Driver call instead of retrying whole calls
   */
  readonly retriesRequests?: boolean;
}

/**
 * Whether `d` imports a key of this kind and spec: the reason it will not, or undefined. A driver
 * without importKey imports nothing; one without importRefusal imports what it can hold (aes256
 * symmetric keys, its supported signing and encryption key specs).
 */
export function importRefusal(d: Driver, kind: KeyMaterialForImport['kind'], spec: KeyMaterialForImport['spec']): string | undefined {
  if (!d.importKey) return `${d.name} cannot import key material (no BYOK)`;
  if (d.importRefusal) return d.importRefusal(kind, spec);
  if (kind === 'symmetric') return spec === 'aes256' ? undefined : `${d.name} imports only aes256 symmetric keys, not ${spec}`;
  const held: readonly string[] = kind === 'signing' ? d.supportedSigningKeySpecs() : d.supportedEncryptionKeySpecs();
  return held.includes(spec) ? undefined : `${d.name} holds no ${spec} ${kind} keys`;
}

/** A factory registered per URI scheme (the smallstep model). */
export type DriverFactory = (params: Record<string, string>, uri: string) => Promise<Driver>;
