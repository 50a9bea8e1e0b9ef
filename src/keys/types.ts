/**
 * The library API: what the CLI, the server and `keyport migrate` call. One implementation for
 * stores that hold key material (clear or envelope-protected), one for external KMS keys, and a
 * remote one that talks to a keyport/KES server; all behind this interface.
 */
import type { KeyType, Purpose } from '../crypto/keytypes.js';
import type { KeyState, KeyUsage } from '../store/types.js';
import type { CallOptions } from '../cancel.js';
import type { AdoptWant } from './adopt.js';

export interface KeyInfo {
  name: string;
  type: KeyType;
  purpose: Purpose;
  usage: KeyUsage[];
  state: KeyState;
  createdAt: string;
  createdBy: string;
  /** Canton fingerprint (asymmetric, `1220…`) or key check value (aes256) of the newest version */
  fingerprint: string;
  /** newest version number */
  version: number;
  /** when the newest version was made (the key's age for rotation) */
  versionCreatedAt?: string;
  versions: number;
  /** how the secret is held: clear, sealed (envelope) or external (in a KMS) */
  protection: 'clear' | 'sealed' | 'external';
  /** base64 SPKI DER of the newest version (asymmetric keys) */
  publicKey?: string;
}

/** one version of a key (rotation appends; old versions stay usable for decrypt and verify) */
export interface VersionInfo {
  version: number;
  createdAt: string;
  /** Canton fingerprint (asymmetric) or key check value (aes256) */
  fingerprint: string;
  protection: 'clear' | 'sealed' | 'external';
  /** base64 SPKI DER (asymmetric keys) */
  publicKey?: string;
  /** true for the newest version, which new operations use */
  current: boolean;
}

/**
 * Every Keyring call takes a `signal` (CallOptions, src/cancel.ts) — in its options object where it has
 * one, else as a trailing `opts` — that cancels its store, KMS and HTTP calls (a server request that ran
 * out of time): the call fails with TIMEOUT instead of racing its caller. Without one nothing changes.
 */
export interface CreateOptions extends CallOptions {
  type?: KeyType;
  purpose?: Purpose;
  usage?: KeyUsage[];
  createdBy?: string;
}

export interface SignOptions extends CallOptions {
  /** ECDSA signature encoding: DER (default) or raw r‖s (IEEE P1363) */
  format?: 'der' | 'raw';
  /** what the signature is for; checked against the key's usage restrictions */
  usage?: KeyUsage;
  /** sign with this version (default newest) */
  version?: number;
  /** verify: reject an ECDSA signature with high S (keyport only makes low-S ones) */
  strict?: boolean;
}

/** `register`: what the adopted KMS key must be (checked against what the KMS says it is) */
export interface RegisterOptions extends AdoptWant, CallOptions {
  createdBy?: string;
}

export interface RotateOptions extends CallOptions {
  /**
   * the new version is this existing KMS key (id, ARN, alias/NAME or label) in the KMS the key lives in,
   * checked against the key's type and purpose; default: a new key made where the newest version lives
   */
  toKeyId?: string;
}

export interface ExportedKey {
  type: KeyType;
  /** PKCS#8 DER for private keys; 32 raw bytes for aes256 */
  secret: Buffer;
  version: number;
}

export interface Keyring {
  readonly uri: string;
  create(name: string, opts?: CreateOptions): Promise<KeyInfo>;
  /** material: PKCS#8 DER/PEM, or 32 raw bytes for aes256 */
  import(name: string, material: Buffer, opts?: CreateOptions): Promise<KeyInfo>;
  describe(name: string, opts?: CallOptions): Promise<KeyInfo>;
  /** names matching a glob (`*`, `?`, `[…]`), page by page */
  list(pattern?: string, opts?: { after?: string; limit?: number } & CallOptions): Promise<{ names: string[]; next?: string }>;
  delete(name: string, opts?: CallOptions): Promise<void>;
  rotate(name: string, opts?: RotateOptions): Promise<KeyInfo>;
  /**
   * Adopt a key that already exists in the store's KMS (a KMS store, external mode) by its id, ARN,
   * alias or label: only its reference and public key are recorded. UNSUPPORTED where the keyring cannot
   * (a server); USAGE on a store that holds its own keys.
   */
  register(name: string, keyId: string, opts?: RegisterOptions): Promise<KeyInfo>;
  /** every version of a key, oldest first */
  versions(name: string, opts?: CallOptions): Promise<VersionInfo[]>;
  /** every version, oldest first (only where the store allows export) */
  export(name: string, opts?: CallOptions): Promise<ExportedKey[]>;
  publicKey(name: string, version?: number, opts?: CallOptions): Promise<Buffer>;
  sign(name: string, data: Buffer, opts?: SignOptions): Promise<Buffer>;
  verify(name: string, data: Buffer, signature: Buffer, opts?: SignOptions): Promise<boolean>;
  /** aes256: KES ciphertext format, context = associated data; rsa: OAEP-SHA256; ec-p256: ECIES */
  encrypt(name: string, plaintext: Buffer, context?: Buffer, opts?: CallOptions): Promise<Buffer>;
  decrypt(name: string, ciphertext: Buffer, context?: Buffer, opts?: CallOptions): Promise<Buffer>;
  /** KES data key: 32 random bytes and their ciphertext under the key */
  generate(name: string, context?: Buffer, opts?: CallOptions): Promise<{ plaintext: Buffer; ciphertext: Buffer }>;
  /** KES /v1/key/hmac */
  hmac(name: string, message: Buffer, opts?: CallOptions): Promise<Buffer>;
  close(): Promise<void>;
}
