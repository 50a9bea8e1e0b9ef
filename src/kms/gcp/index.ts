/**
 * `gcpkms:project=P;location=L;keyring=K[;endpoint=URL][;credentials=PATH][;protection-level=software|hsm][;timeout-ms=10000]`
 * Google Cloud KMS through @google-cloud/kms (gRPC, loaded lazily). A key URI adds `key-id=NAME` (a
 * CryptoKey id in the key ring) or a full resource name
 * `projects/P/locations/L/keyRings/K/cryptoKeys/NAME[/cryptoKeyVersions/N]`.
 *
 *  - The key id keyport stores is the full CryptoKey resource name. Asymmetric CryptoKeys have no
 *    primary version in GCP: operations use the newest ENABLED version (or the version named).
 *  - signing: EC_SIGN_P256_SHA256, EC_SIGN_P384_SHA384, EC_SIGN_SECP256K1_SHA256 (HSM only in GCP),
 *    RSA_SIGN_PSS_2048/3072_SHA256. The digest is computed here and sent with its CRC32C; the
 *    signature's CRC32C is checked. EC signatures are DER, as GCP returns them.
 *  - encryption: RSA_DECRYPT_OAEP_2048/3072_SHA256 (decrypt in KMS, encrypt locally with the SPKI).
 *  - symmetric: GOOGLE_SYMMETRIC_ENCRYPTION Encrypt/Decrypt with the primary version; the ciphertext
 *    is GCP's opaque blob. CRC32C of plaintext/ciphertext checked both ways.
 *  - the key ring is created on first use (ALREADY_EXISTS is fine).
 *  - deleteKey destroys every version (GCP schedules destruction; a CryptoKey name is never freed, so
 *    generate*(name) of a deleted name adds a fresh version to the old CryptoKey when its algorithm fits).
 *  - importKey: an import job RSA_OAEP_3072_SHA256_AES_256; the key material (32 raw bytes, or PKCS#8
 *    DER) is wrapped with an ephemeral AES-256 key by AES-KWP (RFC 5649), the AES key with RSA-OAEP-
 *    SHA-256 under the job's public key, and the two concatenated. A KMS that lacks import jobs gives
 *    UNSUPPORTED.
 *  - `endpoint=host:port` or `http://host:port` talks plaintext gRPC without Google credentials (an
 *    emulator); `endpoint=https://host[:port]` is a private/regional endpoint with normal auth.
 *  - gax makes one attempt per call (keyport retries above the driver); each call has timeout-ms.
 */
import { createRequire } from 'node:module';
import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import { err, isKeyportError } from '../../errors.js';
import { rsaAesKeyWrap } from '../../crypto/keywrap.js';
import type {
  Driver,
  DriverKeyDescription,
  DriverFactory,
  DriverKeyInfo,
  DriverPublicKey,
  EncryptionAlgoSpec,
  EncryptionKeySpec,
  Health,
  KeyMaterialForImport,
  SigningAlgoSpec,
  SigningKeySpec,
} from '../driver.js';
import { ID_RE, parseGcpParams, parseKeyRef, type GcpParams, type KeyRef } from './params.js';
import { clip, HINT, mapGcpError } from './errors.js';

export { parseGcpEndpoint, parseGcpParams, parseKeyRef, type GcpParams, type KeyRef } from './params.js';
export { mapGcpError } from './errors.js';

// ---------------------------------------------------------------------------------------------
// CRC32C (Castagnoli), as Cloud KMS uses for request/response integrity

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

export function crc32c(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** an Int64Value from a response (number, string or Long-like) equals crc */
function crcMatches(v: unknown, crc: number): boolean {
  if (v === null || v === undefined) return true; // not given: nothing to check
  const raw = typeof v === 'object' && 'value' in (v as object) ? (v as { value: unknown }).value : v;
  if (raw === null || raw === undefined) return true;
  return String(raw) === String(crc);
}

/**
 * GCP's RSA_OAEP_*_SHA256_AES_256 import wrapping: RSA-OAEP-SHA-256(ephemeral AES-256 key) followed by
 * AES-KWP (RFC 5649, AES key wrap with padding) of the key material under that AES key.
 */
export function wrapRsaAes(wrappingKeyPem: string, secret: Buffer): Buffer {
  return rsaAesKeyWrap(wrappingKeyPem, secret);
}

// ---------------------------------------------------------------------------------------------
// specs

const SIGNING: Partial<Record<SigningKeySpec, string>> = {
  'ec-p256': 'EC_SIGN_P256_SHA256',
  'ec-p384': 'EC_SIGN_P384_SHA384',
  secp256k1: 'EC_SIGN_SECP256K1_SHA256',
  'rsa-2048': 'RSA_SIGN_PSS_2048_SHA256',
  'rsa-3072': 'RSA_SIGN_PSS_3072_SHA256',
};
const ENCRYPTION: Partial<Record<EncryptionKeySpec, string>> = {
  'rsa-2048': 'RSA_DECRYPT_OAEP_2048_SHA256',
  'rsa-3072': 'RSA_DECRYPT_OAEP_3072_SHA256',
};
const SYMMETRIC = 'GOOGLE_SYMMETRIC_ENCRYPTION';
const SPEC_OF: Record<string, SigningKeySpec | EncryptionKeySpec> = {
  EC_SIGN_P256_SHA256: 'ec-p256',
  EC_SIGN_P384_SHA384: 'ec-p384',
  EC_SIGN_SECP256K1_SHA256: 'secp256k1',
  RSA_SIGN_PSS_2048_SHA256: 'rsa-2048',
  RSA_SIGN_PSS_3072_SHA256: 'rsa-3072',
  RSA_SIGN_PKCS1_2048_SHA256: 'rsa-2048',
  RSA_SIGN_PKCS1_3072_SHA256: 'rsa-3072',
  RSA_DECRYPT_OAEP_2048_SHA256: 'rsa-2048',
  RSA_DECRYPT_OAEP_3072_SHA256: 'rsa-3072',
};
/** which GCP algorithms each keyport signing algorithm may use */
const SIGN_ALGOS: Partial<Record<SigningAlgoSpec, { hash: 'sha256' | 'sha384'; gcp: string[] }>> = {
  'ecdsa-sha256': { hash: 'sha256', gcp: ['EC_SIGN_P256_SHA256', 'EC_SIGN_SECP256K1_SHA256'] },
  'ecdsa-sha384': { hash: 'sha384', gcp: ['EC_SIGN_P384_SHA384'] },
  'rsa-pss-sha256': { hash: 'sha256', gcp: ['RSA_SIGN_PSS_2048_SHA256', 'RSA_SIGN_PSS_3072_SHA256', 'RSA_SIGN_PSS_4096_SHA256'] },
};
const DECRYPT_ALGOS = ['RSA_DECRYPT_OAEP_2048_SHA256', 'RSA_DECRYPT_OAEP_3072_SHA256', 'RSA_DECRYPT_OAEP_4096_SHA256'];
const GONE = new Set(['DESTROYED', 'DESTROY_SCHEDULED', 'IMPORT_FAILED', 'GENERATION_FAILED', 'EXTERNAL_DESTRUCTION_FAILED']);
const IMPORT_METHOD = 'RSA_OAEP_3072_SHA256_AES_256';
const SYM_LIMIT = 64 * 1024;

function purposeOf(algorithm: string): string {
  if (algorithm === SYMMETRIC) return 'ENCRYPT_DECRYPT';
  if (/^(EC|RSA)_SIGN_/.test(algorithm)) return 'ASYMMETRIC_SIGN';
  if (/^RSA_DECRYPT_/.test(algorithm)) return 'ASYMMETRIC_DECRYPT';
  return 'OTHER';
}

// ---------------------------------------------------------------------------------------------
// the client

/** the slice of KeyManagementServiceClient this driver uses (responses are gax [response, …] tuples) */
type Call = (req: Record<string, unknown>, opts?: Record<string, unknown>) => Promise<unknown[]>;
interface KmsApi {
  getKeyRing: Call;
  createKeyRing: Call;
  getCryptoKey: Call;
  createCryptoKey: Call;
  getCryptoKeyVersion: Call;
  createCryptoKeyVersion: Call;
  destroyCryptoKeyVersion: Call;
  updateCryptoKeyPrimaryVersion: Call;
  listCryptoKeys: Call;
  listCryptoKeyVersions: Call;
  asymmetricSign: Call;
  asymmetricDecrypt: Call;
  encrypt: Call;
  decrypt: Call;
  getPublicKey: Call;
  createImportJob: Call;
  getImportJob: Call;
  importCryptoKeyVersion: Call;
  close(): Promise<void>;
}

interface VersionMsg {
  name?: string;
  state?: string;
  algorithm?: string;
  importFailureReason?: string;
  generationFailureReason?: string;
}
interface CryptoKeyMsg {
  name?: string;
  purpose?: string;
  primary?: VersionMsg | null;
  versionTemplate?: { algorithm?: string; protectionLevel?: string } | null;
}

export const factory: DriverFactory = async (params, uri) => {
  const p = parseGcpParams(params);
  let mod: typeof import('@google-cloud/kms');
  let gax: { grpc: { credentials: { createInsecure(): unknown } } };
  try {
    mod = await import('@google-cloud/kms');
    // the gax (and so the grpc-js) instance @google-cloud/kms itself uses: grpc-js checks credentials
    // with instanceof, so insecure credentials must come from the very same copy
    const req = createRequire(import.meta.url);
    gax = createRequire(req.resolve('@google-cloud/kms'))('google-gax');
  } catch (e) {
    throw err('UNSUPPORTED', `gcpkms: @google-cloud/kms cannot be loaded (${(e as Error).message.split('\n')[0]}): install it`);
  }
  const opts: Record<string, unknown> = { projectId: p.project };
  if (p.endpoint) {
    opts['apiEndpoint'] = p.endpoint.host;
    opts['port'] = p.endpoint.port;
    if (!p.endpoint.tls) {
      opts['sslCreds'] = gax.grpc.credentials.createInsecure();
      // no Google credentials for a plaintext endpoint (an emulator): an auth object that never looks for
      // ADC, a metadata server or a token endpoint
      opts['auth'] = emulatorAuth(p.project);
    }
  }
  if (p.credentials && !(p.endpoint && !p.endpoint.tls)) opts['keyFilename'] = p.credentials;
  let client: KmsApi;
  try {
    client = new mod.KeyManagementServiceClient(opts as never) as unknown as KmsApi;
  } catch (e) {
    throw mapGcpError(e, 'client set-up');
  }
  return new GcpKmsDriver(client, p, uri);
};

function emulatorAuth(project: string): Record<string, unknown> {
  return {
    useJWTAccessWithScope: true,
    defaultServicePath: undefined,
    defaultScopes: undefined,
    getUniverseDomain: async () => 'googleapis.com',
    getProjectId: (cb?: (e: null, p: string) => void) => (cb ? cb(null, project) : Promise.resolve(project)),
    getClient: async () => ({ universeDomain: 'googleapis.com', getRequestHeaders: async () => new Headers() }),
    getRequestHeaders: async () => new Headers(),
  };
}

interface Resolved {
  key: string;
  /** the version used for asymmetric operations, or the primary's for symmetric keys */
  version?: string;
  purpose: string;
  algorithm: string;
}

class GcpKmsDriver implements Driver {
  readonly name = 'gcpkms';
  private ringReady: Promise<void> | undefined;
  private readonly cache = new Map<string, Resolved>();

  constructor(
    private readonly client: KmsApi,
    private readonly p: GcpParams,
    readonly uri: string,
  ) {}

  private async call<T>(method: keyof Omit<KmsApi, 'close'>, req: Record<string, unknown>, what: string, decrypting = false): Promise<T> {
    try {
      const out = await this.client[method](req, { timeout: this.p.timeoutMs, retry: null });
      return out[0] as T;
    } catch (e) {
      throw mapGcpError(e, what, decrypting);
    }
  }

  async health(): Promise<Health> {
    try {
      await this.call('getKeyRing', { name: this.p.ring }, `GetKeyRing ${this.p.ring}`);
      return { state: 'ok' };
    } catch (e) {
      if (isKeyportError(e, 'NOT_FOUND')) return { state: 'ok' }; // created on first use
      return { state: 'failed', reason: isKeyportError(e) ? e.message : 'GCP KMS is not reachable' };
    }
  }

  supportedSigningKeySpecs(): SigningKeySpec[] {
    return Object.keys(SIGNING) as SigningKeySpec[];
  }
  supportedSigningAlgoSpecs(): SigningAlgoSpec[] {
    return Object.keys(SIGN_ALGOS) as SigningAlgoSpec[];
  }
  supportedEncryptionKeySpecs(): EncryptionKeySpec[] {
    return Object.keys(ENCRYPTION) as EncryptionKeySpec[];
  }
  supportedEncryptionAlgoSpecs(): EncryptionAlgoSpec[] {
    return ['rsa-oaep-sha256'];
  }

  private ensureRing(): Promise<void> {
    if (!this.ringReady) {
      const parent = `projects/${this.p.project}/locations/${this.p.location}`;
      this.ringReady = this.call('createKeyRing', { parent, keyRingId: this.p.keyring, keyRing: {} }, `CreateKeyRing ${this.p.ring}`).then(
        () => undefined,
        (e: unknown) => {
          if (isKeyportError(e, 'EXISTS')) return;
          this.ringReady = undefined;
          throw e;
        },
      );
    }
    return this.ringReady;
  }

  private ref(keyId: string): KeyRef {
    return parseKeyRef(keyId, this.p.ring);
  }

  /** wait until a version leaves PENDING_GENERATION / PENDING_IMPORT */
  private async waitVersion(name: string, limitMs = Math.max(this.p.timeoutMs, 60_000)): Promise<VersionMsg> {
    const end = Date.now() + limitMs;
    for (let delay = 100; ; delay = Math.min(delay * 2, 2_000)) {
      const v = await this.call<VersionMsg>('getCryptoKeyVersion', { name }, `GetCryptoKeyVersion ${name}`);
      if (v.state !== 'PENDING_GENERATION' && v.state !== 'PENDING_IMPORT') return v;
      if (Date.now() + delay > end) throw err('TIMEOUT', `GCP KMS version ${name} is still ${v.state}: retry later`);
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  private async versions(key: string): Promise<VersionMsg[]> {
    const out: VersionMsg[] = [];
    let pageToken: string | undefined;
    do {
      // autoPaginate off: one request per page, each with its own deadline
      const res = await this.client
        .listCryptoKeyVersions(
          { parent: key, pageSize: 1000, ...(pageToken ? { pageToken } : {}) },
          { timeout: this.p.timeoutMs, retry: null, autoPaginate: false },
        )
        .catch((e: unknown) => {
          throw mapGcpError(e, `ListCryptoKeyVersions ${key}`);
        });
      out.push(...((res[0] as VersionMsg[] | undefined) ?? []));
      pageToken = (res[2] as { nextPageToken?: string } | undefined)?.nextPageToken || undefined;
    } while (pageToken);
    return out;
  }

  private newestEnabled(vs: VersionMsg[]): VersionMsg | undefined {
    const num = (v: VersionMsg) => Number(/\/(\d+)$/.exec(v.name ?? '')?.[1] ?? -1);
    return vs.filter((v) => v.state === 'ENABLED').sort((a, b) => num(b) - num(a))[0];
  }

  /** which key / version an operation uses; KEY_DISABLED when none is usable */
  private async resolve(keyId: string, fresh = false): Promise<Resolved> {
    const r = this.ref(keyId);
    const cacheKey = r.version ?? r.key;
    if (!fresh) {
      const c = this.cache.get(cacheKey);
      if (c) return c;
    }
    let res: Resolved;
    if (r.version) {
      const v = await this.call<VersionMsg>('getCryptoKeyVersion', { name: r.version }, `GetCryptoKeyVersion ${r.version}`);
      if (v.state !== 'ENABLED')
        throw err('KEY_DISABLED', `GCP KMS key version ${r.version} is ${v.state ?? 'not enabled'}: ${HINT.KEY_DISABLED}`);
      const algorithm = v.algorithm ?? '';
      res = { key: r.key, version: r.version, purpose: purposeOf(algorithm), algorithm };
    } else {
      const k = await this.call<CryptoKeyMsg>('getCryptoKey', { name: r.key }, `GetCryptoKey ${r.key}`);
      const purpose = k.purpose ?? '';
      if (purpose === 'ENCRYPT_DECRYPT') {
        if (k.primary?.state !== 'ENABLED') {
          throw err(
            'KEY_DISABLED',
            `GCP KMS key ${r.key} has no enabled primary version (${k.primary?.state ?? 'none'}): ${HINT.KEY_DISABLED}`,
          );
        }
        res = { key: r.key, ...(k.primary.name ? { version: k.primary.name } : {}), purpose, algorithm: k.primary.algorithm ?? SYMMETRIC };
      } else {
        const v = this.newestEnabled(await this.versions(r.key));
        if (!v?.name) throw err('KEY_DISABLED', `GCP KMS key ${r.key} has no ENABLED version: ${HINT.KEY_DISABLED}`);
        res = { key: r.key, version: v.name, purpose, algorithm: v.algorithm ?? k.versionTemplate?.algorithm ?? '' };
      }
    }
    this.cache.set(cacheKey, res);
    return res;
  }

  /** run op on the resolved key; a stale cached version (disabled/destroyed meanwhile) is resolved again once */
  private async withKey<T>(keyId: string, op: (r: Resolved) => Promise<T>): Promise<T> {
    const r = await this.resolve(keyId);
    try {
      return await op(r);
    } catch (e) {
      if (isKeyportError(e) && (e.code === 'KEY_DISABLED' || e.code === 'NOT_FOUND')) {
        this.forget(keyId);
        const again = await this.resolve(keyId, true);
        if (again.version !== r.version) return op(again);
      }
      throw e;
    }
  }

  private forget(keyId: string): void {
    try {
      const r = this.ref(keyId);
      this.cache.delete(r.key);
      if (r.version) this.cache.delete(r.version);
    } catch {
      /* not a valid ref: nothing cached */
    }
  }

  private async create(purpose: string, algorithm: string, name: string | undefined, protection: 'SOFTWARE' | 'HSM'): Promise<string> {
    const id = name ?? `keyport-${randomBytes(8).toString('hex')}`;
    if (!ID_RE.test(id)) throw err('INVALID_NAME', `GCP KMS key names are 1-63 characters of [a-zA-Z0-9_-]; '${id}' is not`);
    await this.ensureRing();
    const key = `${this.p.ring}/cryptoKeys/${id}`;
    let created: CryptoKeyMsg;
    try {
      created = await this.call<CryptoKeyMsg>(
        'createCryptoKey',
        {
          parent: this.p.ring,
          cryptoKeyId: id,
          cryptoKey: { purpose, versionTemplate: { algorithm, protectionLevel: protection }, labels: { 'managed-by': 'keyport' } },
        },
        `CreateCryptoKey ${key}`,
      );
    } catch (e) {
      if (isKeyportError(e, 'EXISTS')) return this.reviveDeleted(key, purpose, algorithm);
      throw e;
    }
    if (purpose !== 'ENCRYPT_DECRYPT') {
      // asymmetric versions are generated asynchronously: wait until version 1 is usable
      const v = await this.waitVersion(`${created.name ?? key}/cryptoKeyVersions/1`);
      if (v.state !== 'ENABLED')
        throw err('UNAVAILABLE', `GCP KMS could not generate ${key}: version 1 is ${v.state} ${v.generationFailureReason ?? ''}`.trim());
    }
    return created.name ?? key;
  }

  /**
   * GCP never frees a CryptoKey name: a key keyport deleted (every version destroyed) is given a new
   * version when the same name is generated again with the same algorithm.
   */
  private async reviveDeleted(key: string, purpose: string, algorithm: string): Promise<string> {
    const k = await this.call<CryptoKeyMsg>('getCryptoKey', { name: key }, `GetCryptoKey ${key}`);
    const vs = await this.versions(key);
    const live = vs.some((v) => !GONE.has(v.state ?? ''));
    if (live || k.purpose !== purpose || k.versionTemplate?.algorithm !== algorithm) {
      throw err('EXISTS', `GCP KMS key ${key} already exists: pick another name (GCP never frees a key name)`);
    }
    const v = await this.call<VersionMsg>('createCryptoKeyVersion', { parent: key, cryptoKeyVersion: {} }, `CreateCryptoKeyVersion ${key}`);
    const ready = v.state === 'ENABLED' || !v.name ? v : await this.waitVersion(v.name);
    if (ready.state !== 'ENABLED') throw err('UNAVAILABLE', `GCP KMS could not make a new version of ${key}: it is ${ready.state}`);
    if (purpose === 'ENCRYPT_DECRYPT' && ready.name) {
      await this.call(
        'updateCryptoKeyPrimaryVersion',
        { name: key, cryptoKeyVersionId: ready.name.split('/').pop() },
        `UpdateCryptoKeyPrimaryVersion ${key}`,
      );
    }
    this.cache.delete(key);
    return key;
  }

  async generateSigningKeyPair(spec: SigningKeySpec, name?: string): Promise<string> {
    const a = SIGNING[spec];
    if (!a) throw err('UNSUPPORTED', `GCP KMS cannot make ${spec} signing keys: use one of ${this.supportedSigningKeySpecs().join(', ')}`);
    // GCP offers secp256k1 only at protection level HSM
    return this.create('ASYMMETRIC_SIGN', a, name, spec === 'secp256k1' ? 'HSM' : this.p.protection);
  }

  async generateEncryptionKeyPair(spec: EncryptionKeySpec, name?: string): Promise<string> {
    const a = ENCRYPTION[spec];
    if (!a) throw err('UNSUPPORTED', `GCP KMS cannot make ${spec} encryption keys: use rsa-2048 or rsa-3072`);
    return this.create('ASYMMETRIC_DECRYPT', a, name, this.p.protection);
  }

  async generateSymmetricKey(name?: string): Promise<string> {
    return this.create('ENCRYPT_DECRYPT', SYMMETRIC, name, this.p.protection);
  }

  async sign(keyId: string, data: Buffer, algo: SigningAlgoSpec): Promise<Buffer> {
    const a = SIGN_ALGOS[algo];
    if (!a) throw err('UNSUPPORTED', `GCP KMS cannot sign with ${algo}: use one of ${this.supportedSigningAlgoSpecs().join(', ')}`);
    const digest = createHash(a.hash).update(data).digest();
    return this.withKey(keyId, async (r) => {
      if (r.purpose !== 'ASYMMETRIC_SIGN')
        throw err('KEY_USAGE', `GCP KMS key ${r.key} is a ${r.purpose} key, not a signing key: ${HINT.KEY_USAGE}`);
      if (!a.gcp.includes(r.algorithm)) throw err('KEY_USAGE', `GCP KMS key ${r.key} is ${r.algorithm}, which cannot sign with ${algo}`);
      const out = await this.call<{ signature?: Uint8Array; signatureCrc32c?: unknown; verifiedDigestCrc32c?: boolean; name?: string }>(
        'asymmetricSign',
        { name: r.version, digest: { [a.hash]: digest }, digestCrc32c: { value: crc32c(digest) } },
        `AsymmetricSign ${r.version}`,
      );
      if (!out.signature || out.signature.length === 0) throw err('INTERNAL', `GCP KMS AsymmetricSign ${r.version} returned no signature`);
      const sig = Buffer.from(out.signature);
      if (out.verifiedDigestCrc32c === false || !crcMatches(out.signatureCrc32c, crc32c(sig))) {
        throw err(
          'UNAVAILABLE',
          `GCP KMS AsymmetricSign ${r.version}: the request or response was corrupted in transit (CRC32C mismatch): retry`,
        );
      }
      return sig;
    });
  }

  async decryptAsymmetric(keyId: string, ciphertext: Buffer, algo: EncryptionAlgoSpec): Promise<Buffer> {
    if (algo !== 'rsa-oaep-sha256') throw err('UNSUPPORTED', `GCP KMS cannot decrypt ${algo}: use rsa-oaep-sha256`);
    if (ciphertext.length === 0) throw err('INVALID_CIPHERTEXT', 'empty ciphertext: nothing to decrypt');
    return this.withKey(keyId, async (r) => {
      if (r.purpose !== 'ASYMMETRIC_DECRYPT' || !DECRYPT_ALGOS.includes(r.algorithm)) {
        throw err('KEY_USAGE', `GCP KMS key ${r.key} is ${r.algorithm || r.purpose}, not an RSA-OAEP-SHA-256 decryption key`);
      }
      const out = await this.call<{ plaintext?: Uint8Array; plaintextCrc32c?: unknown; verifiedCiphertextCrc32c?: boolean }>(
        'asymmetricDecrypt',
        { name: r.version, ciphertext, ciphertextCrc32c: { value: crc32c(ciphertext) } },
        `AsymmetricDecrypt ${r.version}`,
        true,
      );
      const pt = Buffer.from(out.plaintext ?? new Uint8Array());
      if (out.verifiedCiphertextCrc32c === false || !crcMatches(out.plaintextCrc32c, crc32c(pt))) {
        throw err('UNAVAILABLE', `GCP KMS AsymmetricDecrypt ${r.version}: corrupted in transit (CRC32C mismatch): retry`);
      }
      return pt;
    });
  }

  async encryptSymmetric(keyId: string, plaintext: Buffer): Promise<Buffer> {
    if (plaintext.length === 0 || plaintext.length > SYM_LIMIT) {
      throw err('INVALID_INPUT', `GCP KMS encrypts 1 to ${SYM_LIMIT} bytes, not ${plaintext.length}: wrap a data key instead`);
    }
    return this.withKey(keyId, async (r) => {
      if (r.purpose !== 'ENCRYPT_DECRYPT')
        throw err('KEY_USAGE', `GCP KMS key ${r.key} is a ${r.purpose} key, not a symmetric encryption key`);
      const out = await this.call<{ ciphertext?: Uint8Array; ciphertextCrc32c?: unknown; verifiedPlaintextCrc32c?: boolean }>(
        'encrypt',
        { name: r.key, plaintext, plaintextCrc32c: { value: crc32c(plaintext) } },
        `Encrypt ${r.key}`,
      );
      if (!out.ciphertext || out.ciphertext.length === 0) throw err('INTERNAL', `GCP KMS Encrypt ${r.key} returned no ciphertext`);
      const ct = Buffer.from(out.ciphertext);
      if (out.verifiedPlaintextCrc32c === false || !crcMatches(out.ciphertextCrc32c, crc32c(ct))) {
        throw err('UNAVAILABLE', `GCP KMS Encrypt ${r.key}: corrupted in transit (CRC32C mismatch): retry`);
      }
      return ct;
    });
  }

  async decryptSymmetric(keyId: string, ciphertext: Buffer): Promise<Buffer> {
    if (ciphertext.length === 0) throw err('INVALID_CIPHERTEXT', 'empty ciphertext: nothing to decrypt');
    const r = this.ref(keyId);
    // decryption picks the version from the ciphertext: no version resolution, a disabled primary is fine
    const out = await this.call<{ plaintext?: Uint8Array; plaintextCrc32c?: unknown }>(
      'decrypt',
      { name: r.key, ciphertext, ciphertextCrc32c: { value: crc32c(ciphertext) } },
      `Decrypt ${r.key}`,
      true,
    );
    const pt = Buffer.from(out.plaintext ?? new Uint8Array());
    if (!crcMatches(out.plaintextCrc32c, crc32c(pt)))
      throw err('UNAVAILABLE', `GCP KMS Decrypt ${r.key}: corrupted in transit (CRC32C mismatch): retry`);
    return pt;
  }

  async getPublicKey(keyId: string): Promise<DriverPublicKey> {
    return this.withKey(keyId, async (r) => {
      if (r.purpose === 'ENCRYPT_DECRYPT') throw err('KEY_USAGE', `GCP KMS key ${r.key} is symmetric: it has no public key`);
      const out = await this.call<{ pem?: string; algorithm?: string; pemCrc32c?: unknown }>(
        'getPublicKey',
        { name: r.version },
        `GetPublicKey ${r.version}`,
      );
      if (!out.pem) throw err('INTERNAL', `GCP KMS GetPublicKey ${r.version} returned no key`);
      if (!crcMatches(out.pemCrc32c, crc32c(Buffer.from(out.pem, 'utf8'))))
        throw err('UNAVAILABLE', `GCP KMS GetPublicKey ${r.version}: corrupted in transit (CRC32C mismatch): retry`);
      const algorithm = out.algorithm || r.algorithm;
      const spec = SPEC_OF[algorithm];
      if (!spec) throw err('UNSUPPORTED', `GCP KMS key ${r.key} has algorithm ${algorithm || 'unknown'}, which keyport does not use`);
      let spki: Buffer;
      try {
        spki = createPublicKey(out.pem).export({ type: 'spki', format: 'der' });
      } catch {
        throw err('INTERNAL', `GCP KMS GetPublicKey ${r.version} returned a PEM that is not a public key`);
      }
      return { spki, spec };
    });
  }

  async keyExistsAndIsActive(keyId: string): Promise<void> {
    await this.resolve(keyId, true);
  }

  /**
   * What the key is, from its CryptoKey purpose and its version's algorithm (GetCryptoKey /
   * GetCryptoKeyVersion), for the registration check (src/keys/adopt.ts): an RSA_SIGN_* key is not an
   * encryption key, an RSA_SIGN_PKCS1_* key cannot sign the way keyport signs RSA (PSS), an
   * RSA_DECRYPT_OAEP_*_SHA1 key cannot decrypt the way keyport encrypts (OAEP-SHA256).
   * NOT VERIFIED against Cloud KMS: no emulator can be had here (test/kms/gcp.test.ts runs it only
   * when KEYPORT_GCPKMS_ENDPOINT names one).
   */
  async describeKey(keyId: string): Promise<DriverKeyDescription> {
    const r = await this.resolve(keyId, true);
    const spec = r.algorithm === SYMMETRIC ? 'aes256' : SPEC_OF[r.algorithm];
    const signs = r.purpose === 'ASYMMETRIC_SIGN' && Object.values(SIGN_ALGOS).some((a) => a?.gcp.includes(r.algorithm));
    const decrypts =
      (r.purpose === 'ASYMMETRIC_DECRYPT' && DECRYPT_ALGOS.includes(r.algorithm)) ||
      (r.purpose === 'ENCRYPT_DECRYPT' && r.algorithm === SYMMETRIC);
    return {
      keyId,
      ...(spec ? { spec } : {}),
      sign: signs,
      decrypt: decrypts,
      arn: r.key,
      native: `${r.algorithm || 'a key of unknown algorithm'} with purpose ${r.purpose || 'unknown'}`,
      words: {
        sign: 'purpose ASYMMETRIC_SIGN (EC_SIGN_* or RSA_SIGN_PSS_*)',
        decrypt: 'purpose ASYMMETRIC_DECRYPT (RSA_DECRYPT_OAEP_*_SHA256) or ENCRYPT_DECRYPT',
      },
    };
  }

  async resolveKeyId(ref: string): Promise<string> {
    const r = this.ref(ref);
    if (r.version) {
      await this.call('getCryptoKeyVersion', { name: r.version }, `GetCryptoKeyVersion ${r.version}`);
      return r.version;
    }
    const k = await this.call<CryptoKeyMsg>('getCryptoKey', { name: r.key }, `GetCryptoKey ${r.key}`);
    return k.name ?? r.key;
  }

  async deleteKey(keyId: string): Promise<void> {
    const r = this.ref(keyId);
    this.forget(keyId);
    const targets = r.version
      ? [await this.call<VersionMsg>('getCryptoKeyVersion', { name: r.version }, `GetCryptoKeyVersion ${r.version}`)]
      : await (async () => {
          await this.call('getCryptoKey', { name: r.key }, `GetCryptoKey ${r.key}`); // NOT_FOUND for an unknown key
          return this.versions(r.key);
        })();
    for (const v of targets) {
      if (!v.name || GONE.has(v.state ?? '')) continue;
      try {
        await this.call('destroyCryptoKeyVersion', { name: v.name }, `DestroyCryptoKeyVersion ${v.name}`);
      } catch (e) {
        // a version still pending generation/import cannot be destroyed yet; everything else is an error
        if (isKeyportError(e, 'KEY_DISABLED') && (v.state === 'PENDING_GENERATION' || v.state === 'PENDING_IMPORT')) continue;
        throw e;
      }
    }
  }

  async *listKeys(): AsyncIterable<DriverKeyInfo> {
    let pageToken: string | undefined;
    do {
      const res = await this.client
        .listCryptoKeys(
          { parent: this.p.ring, pageSize: 1000, ...(pageToken ? { pageToken } : {}) },
          { timeout: this.p.timeoutMs, retry: null, autoPaginate: false },
        )
        .catch((e: unknown) => {
          const m = mapGcpError(e, `ListCryptoKeys ${this.p.ring}`);
          if (m.code === 'NOT_FOUND') return [[], null, {}] as unknown[]; // no ring yet: no keys
          throw m;
        });
      for (const k of (res[0] as CryptoKeyMsg[] | undefined) ?? []) {
        if (!k.name) continue;
        const info = await this.info(k);
        if (info) yield info;
      }
      pageToken = (res[2] as { nextPageToken?: string } | undefined)?.nextPageToken || undefined;
    } while (pageToken);
  }

  private async info(k: CryptoKeyMsg): Promise<DriverKeyInfo | undefined> {
    const purpose = k.purpose ?? '';
    const kind: DriverKeyInfo['kind'] =
      purpose === 'ENCRYPT_DECRYPT'
        ? 'symmetric'
        : purpose === 'ASYMMETRIC_SIGN'
          ? 'signing'
          : purpose === 'ASYMMETRIC_DECRYPT'
            ? 'encryption'
            : undefined;
    const algorithm = k.primary?.algorithm ?? k.versionTemplate?.algorithm ?? '';
    const spec = algorithm === SYMMETRIC ? 'aes256' : (SPEC_OF[algorithm] ?? (algorithm || undefined));
    const vs = purpose === 'ENCRYPT_DECRYPT' && k.primary ? [k.primary] : await this.versions(k.name!);
    if (vs.length > 0 && vs.every((v) => v.state === 'DESTROYED')) return undefined; // gone for good
    const states = new Set(vs.map((v) => v.state));
    const state: DriverKeyInfo['state'] = states.has('ENABLED')
      ? 'enabled'
      : states.has('DISABLED')
        ? 'disabled'
        : states.has('DESTROY_SCHEDULED')
          ? 'pending-deletion'
          : 'unknown';
    return { keyId: k.name!, name: k.name!.split('/').pop()!, ...(kind ? { kind } : {}), ...(spec ? { spec } : {}), state };
  }

  async importKey(material: KeyMaterialForImport, name?: string): Promise<string> {
    let purpose: string;
    let algorithm: string;
    if (material.kind === 'symmetric') {
      if (material.spec !== 'aes256' || material.secret.length !== 32)
        throw err('INVALID_INPUT', 'GCP KMS imports symmetric keys of exactly 32 bytes (aes256)');
      purpose = 'ENCRYPT_DECRYPT';
      algorithm = SYMMETRIC;
    } else {
      const a = material.kind === 'signing' ? SIGNING[material.spec as SigningKeySpec] : ENCRYPTION[material.spec as EncryptionKeySpec];
      if (!a) throw err('UNSUPPORTED', `GCP KMS cannot import a ${material.spec} ${material.kind} key`);
      purpose = material.kind === 'signing' ? 'ASYMMETRIC_SIGN' : 'ASYMMETRIC_DECRYPT';
      algorithm = a;
    }
    const protection = material.spec === 'secp256k1' ? 'HSM' : this.p.protection;
    const id = name ?? `keyport-${randomBytes(8).toString('hex')}`;
    if (!ID_RE.test(id)) throw err('INVALID_NAME', `GCP KMS key names are 1-63 characters of [a-zA-Z0-9_-]; '${id}' is not`);
    await this.ensureRing();
    const unsupported = (e: unknown) => {
      if (isKeyportError(e, 'UNSUPPORTED'))
        return err('UNSUPPORTED', `this GCP KMS endpoint does not implement key import (import jobs): ${e.message}`);
      return e;
    };
    // 1. an import job, usable once ACTIVE
    let job: { name?: string; state?: string; publicKey?: { pem?: string } | null };
    try {
      job = await this.call(
        'createImportJob',
        {
          parent: this.p.ring,
          importJobId: `keyport-import-${randomBytes(8).toString('hex')}`,
          importJob: { importMethod: IMPORT_METHOD, protectionLevel: protection },
        },
        `CreateImportJob ${this.p.ring}`,
      );
      const end = Date.now() + Math.max(this.p.timeoutMs, 60_000);
      for (let delay = 100; job.state === 'PENDING_GENERATION'; delay = Math.min(delay * 2, 2_000)) {
        if (Date.now() + delay > end) throw err('TIMEOUT', `GCP KMS import job ${job.name} is still being generated: retry later`);
        await new Promise((r) => setTimeout(r, delay));
        job = await this.call('getImportJob', { name: job.name }, `GetImportJob ${job.name}`);
      }
    } catch (e) {
      throw unsupported(e);
    }
    if (job.state !== 'ACTIVE' || !job.publicKey?.pem || !job.name)
      throw err('UNAVAILABLE', `GCP KMS import job ${job.name ?? ''} is ${job.state ?? 'unusable'}: retry`);
    // 2. the CryptoKey, without a first version
    const key = `${this.p.ring}/cryptoKeys/${id}`;
    try {
      await this.call(
        'createCryptoKey',
        {
          parent: this.p.ring,
          cryptoKeyId: id,
          skipInitialVersionCreation: true,
          cryptoKey: {
            purpose,
            importOnly: true,
            versionTemplate: { algorithm, protectionLevel: protection },
            labels: { 'managed-by': 'keyport' },
          },
        },
        `CreateCryptoKey ${key}`,
      );
    } catch (e) {
      if (isKeyportError(e, 'EXISTS'))
        throw err('EXISTS', `GCP KMS key ${key} already exists: pick another name (GCP never frees a key name)`);
      throw e;
    }
    // 3. RSA_OAEP_3072_SHA256_AES_256
    let wrapped: Buffer;
    try {
      wrapped = wrapRsaAes(job.publicKey.pem, material.secret);
    } catch {
      throw err('INTERNAL', `GCP KMS import job ${job.name} has a wrapping key node:crypto cannot use`);
    }
    // 4. import, then wait until the version is ENABLED (or IMPORT_FAILED)
    let v: VersionMsg;
    try {
      v = await this.call<VersionMsg>(
        'importCryptoKeyVersion',
        { parent: key, algorithm, importJob: job.name, wrappedKey: wrapped },
        `ImportCryptoKeyVersion ${key}`,
      );
    } catch (e) {
      throw unsupported(e);
    } finally {
      wrapped.fill(0);
    }
    if (v.name && v.state !== 'ENABLED') v = await this.waitVersion(v.name);
    if (v.state !== 'ENABLED') {
      throw err(
        'INVALID_INPUT',
        `GCP KMS refused the key material for ${key}: ${v.state ?? 'unknown state'}${v.importFailureReason ? ` (${clip(v.importFailureReason)})` : ''}`,
      );
    }
    if (purpose === 'ENCRYPT_DECRYPT' && v.name) {
      await this.call(
        'updateCryptoKeyPrimaryVersion',
        { name: key, cryptoKeyVersionId: v.name.split('/').pop() },
        `UpdateCryptoKeyPrimaryVersion ${key}`,
      );
    }
    return key;
  }

  async close(): Promise<void> {
    try {
      await this.client.close();
    } catch {
      /* closing twice or a never-opened channel: nothing to do */
    }
  }
}
