/**
 * The one Keyring over any RecordStore. A version's secret is held clear, sealed (envelope
 * protection: a wrapper key in a KMS) or external (generated and used inside a KMS); the store's
 * protection setting decides how new secrets are held. Public-key operations (verify, encrypt) always
 * run locally; private-key operations run here or, for external keys, in the KMS.
 */
import { randomBytes, type KeyObject } from 'node:crypto';
import { err, isKeyportError } from '../errors.js';
import { type CallOptions, checkCancelled } from '../cancel.js';
import { KEY_TYPE_INFO, parseKeyType, type KeyType, type Purpose } from '../crypto/keytypes.js';
import { parseKeyMaterial, privateKeyObject, publicKeyObject, keyTypeOf } from '../crypto/keys.js';
import { fingerprintOf } from '../crypto/fingerprint.js';
import { signData, verifyData } from '../crypto/sign.js';
import { eciesDecrypt, eciesEncrypt, rsaOaepDecrypt, rsaOaepEncrypt } from '../crypto/asym.js';
import { derToRaw, ecdsaSize, lowS } from '../crypto/ecdsa-encoding.js';
import { hmacSha256 } from '../crypto/mac.js';
import { kesDecrypt, kesEncrypt, type KesAlgorithm } from '../crypto/kes-ciphertext.js';
import { parseStoredKeyRef, parseStoredKmsRef, sameKmsRef } from '../kms/address.js';
import { Connections } from '../kms/connections.js';
import type { Driver, SigningAlgoSpec } from '../kms/driver.js';
import type { KeyRecord, RecordStore, VersionRecord, KeyUsage } from '../store/types.js';
import { KEY_USAGES, updateRecord } from '../store/types.js';
import { readProtection, type Protection } from '../store/protection.js';
import { WrapperKeys } from '../store/envelope.js';
import { TtlCache } from './cache.js';
import { type Holding, type ProtectionStrategy, strategyFor } from './strategies.js';
import { checkName, compilePattern } from './names.js';
import { checkAdoptable, describedFromPublicKey, type AdoptWant } from './adopt.js';
import type { CreateOptions, ExportedKey, KeyInfo, Keyring, RegisterOptions, RotateOptions, SignOptions, VersionInfo } from './types.js';

/** the article for a key type or purpose as it is read aloud: an aes256, an ec-p256, an rsa-2048, a secp256k1 */
const an = (word: string) => (/^(?:[aeiou]|rsa)/i.test(word) ? 'an' : 'a');

export interface KeyringOptions {
  /** how long unsealed / parsed secrets stay in memory (ms); default 5 minutes */
  cacheTtlMs?: number;
  /** KES expiry.unused_key (ms), 0 = off */
  cacheUnusedMs?: number;
  /** identity recorded as createdBy */
  actor?: string;
  /**
   * KES `cache.expiry.any`: how long a key record read for a crypto operation (encrypt, decrypt,
   * generate, hmac, sign) may be reused without asking the store again; 0 = always ask (default).
   */
  recordTtlMs?: number;
  /** KES `cache.expiry.offline`: while the store is unreachable, serve records this old (0 = off) */
  offlineMs?: number;
  /** the KMS connections stored key references resolve through (operator configuration only) */
  connections?: Connections;
}

type Secret =
  | { kind: 'sym'; key: Buffer; hmacKey?: Buffer; algorithm: KesAlgorithm }
  | { kind: 'priv'; key: KeyObject }
  | { kind: 'ext'; driver: Driver; keyId: string };

export const SIGN_ALGO: Record<KeyType, SigningAlgoSpec | undefined> = {
  aes256: undefined,
  'ec-p256': 'ecdsa-sha256',
  secp256k1: 'ecdsa-sha256',
  'ec-p384': 'ecdsa-sha384',
  ed25519: 'ed25519',
  'rsa-2048': 'rsa-pss-sha256',
  'rsa-3072': 'rsa-pss-sha256',
};

/**
 * A copy outside node's shared 8 KiB buffer pool: a small cached secret must not pin a whole pool slab
 * (and with it other, unrelated bytes) for as long as it stays in the cache.
 */
function owned(b: Buffer): Buffer {
  const c = Buffer.allocUnsafeSlow(b.length);
  b.copy(c);
  return c;
}

/**
 * Zero a secret that left the cache. Deferred to the next turn of the event loop: an operation that took
 * the secret from the cache uses it synchronously right after its await, before this runs.
 */
function zeroSecret(s: Secret): void {
  if (s.kind !== 'sym') return;
  setImmediate(() => {
    s.key.fill(0);
    s.hmacKey?.fill(0);
  });
}

export function toVersionInfos(r: KeyRecord): VersionInfo[] {
  return r.versions.map((v, i) => ({
    version: v.version,
    createdAt: v.createdAt,
    fingerprint: v.fingerprint,
    protection: v.external ? 'external' : v.sealed ? 'sealed' : 'clear',
    ...(v.publicKey ? { publicKey: v.publicKey } : {}),
    current: i === r.versions.length - 1,
  }));
}

export function toKeyInfo(r: KeyRecord): KeyInfo {
  const v = r.versions[r.versions.length - 1]!;
  return {
    name: r.name,
    type: r.type,
    purpose: r.purpose,
    usage: r.usage,
    state: r.state,
    createdAt: r.createdAt,
    createdBy: r.createdBy,
    fingerprint: v.fingerprint,
    version: v.version,
    versionCreatedAt: v.createdAt,
    versions: r.versions.length,
    protection: v.external ? 'external' : v.sealed ? 'sealed' : 'clear',
    ...(v.publicKey ? { publicKey: v.publicKey } : {}),
  };
}

export class StoreKeyring implements Keyring {
  readonly uri: string;
  readonly connections: Connections;
  readonly wrappers: WrapperKeys;
  private secrets: TtlCache<string, Secret>;
  private protectionCache?: { p: Protection; at: number };
  /**
   * protection the configuration asks for that the store does not have yet, left unapplied because the
   * keyring was opened read-only (openKeyring's readOnly): the next write opening applies it
   */
  pendingProtection?: { mode: 'envelope'; wrapper: string; clearKeys: number } | { mode: 'external'; kms: string };

  constructor(
    readonly store: RecordStore,
    private opts: KeyringOptions = {},
  ) {
    this.uri = store.uri;
    this.connections = opts.connections ?? new Connections();
    this.wrappers = new WrapperKeys(this.connections);
    this.secrets = new TtlCache<string, Secret>(opts.cacheTtlMs ?? 300_000, 10_000, opts.cacheUnusedMs ?? 0, zeroSecret);
  }

  /** the store's protection (re-read at most once a second so replicas follow a change) */
  async protection(signal?: AbortSignal): Promise<Protection> {
    const now = Date.now();
    if (this.protectionCache && now - this.protectionCache.at < 1000) return this.protectionCache.p;
    const p = await readProtection(this.store, { signal });
    this.protectionCache = { p, at: now };
    return p;
  }

  invalidate(): void {
    this.protectionCache = undefined;
    this.secrets.clear();
    this.hot.clear();
  }

  /** the driver for a stored KMS reference, through a configured connection */
  kmsDriver(kmsRef: string): Promise<Driver> {
    return this.connections.kms(parseStoredKmsRef(kmsRef));
  }

  /** the store's protection works here: its wrapper key is configured and round-trips (envelope) */
  async checkProtection(): Promise<Protection> {
    const p = await this.protection();
    if (p.mode === 'envelope') await this.wrappers.check(parseStoredKeyRef(p.wrapper, "the store's wrapper key"));
    return p;
  }

  // ---- records -------------------------------------------------------------------------------

  private hot = new Map<string, { rec: KeyRecord; at: number }>();

  /**
   * a key record; `forUse` lets crypto operations use the KES-style record cache. A cancelled caller
   * gets TIMEOUT here, before the store is asked (or a cached record used).
   */
  private async record(name: string, forUse = false, signal?: AbortSignal): Promise<KeyRecord> {
    checkName(name);
    checkCancelled(`reading key '${name}'`, signal);
    const ttl = this.opts.recordTtlMs ?? 0;
    const offline = this.opts.offlineMs ?? 0;
    const hit = forUse && (ttl > 0 || offline > 0) ? this.hot.get(name) : undefined;
    if (hit && Date.now() - hit.at < ttl) return hit.rec;
    try {
      const rec = await this.store.get(name, { signal });
      if (ttl > 0 || offline > 0) {
        if (this.hot.size >= 10_000) this.hot.delete(this.hot.keys().next().value!);
        this.hot.set(name, { rec, at: Date.now() });
      }
      return rec;
    } catch (e) {
      if (isKeyportError(e, 'NOT_FOUND')) this.hot.delete(name);
      else if (hit && isKeyportError(e) && e.retryable && Date.now() - hit.at < offline) return hit.rec;
      throw e;
    }
  }

  /** forget cached records (after a local write) */
  private forget(name: string): void {
    this.hot.delete(name);
  }

  private version(r: KeyRecord, v?: number): VersionRecord {
    if (v === undefined) return r.versions[r.versions.length - 1]!;
    const found = r.versions.find((x) => x.version === v);
    if (!found) throw err('NOT_FOUND', `key '${r.name}' has no version ${v}`);
    return found;
  }

  /** the strategy of the store's protection mode: how new secrets are made and held */
  async strategy(signal?: AbortSignal): Promise<ProtectionStrategy> {
    return strategyFor(await this.protection(signal), { wrappers: this.wrappers, connections: this.connections });
  }

  /**
   * Hold an incoming secret (migration, import) the way this keyring holds secrets: clear, sealed under
   * the wrapper, or imported into the KMS of an external store.
   */
  async holdIncoming(
    name: string,
    type: KeyType,
    purpose: Purpose,
    secret: Buffer,
    version: number,
    signal?: AbortSignal,
  ): Promise<Holding> {
    return (await this.strategy(signal)).hold(name, type, purpose, secret, version, signal);
  }

  /** the raw secret of a version (PKCS#8 DER or 32 bytes); not for external keys */
  async secretBytes(r: KeyRecord, v: VersionRecord, signal?: AbortSignal): Promise<Buffer> {
    if (v.clear !== undefined) return Buffer.from(v.clear, 'base64');
    if (v.sealed) return this.wrappers.unseal(v.sealed, { signal });
    throw err('UNSUPPORTED', `key '${r.name}' lives in KMS ${parseStoredKmsRef(v.external!.kms)} and cannot be exported`);
  }

  private async secret(r: KeyRecord, v: VersionRecord, signal?: AbortSignal): Promise<Secret> {
    const ck = v.clear ?? v.sealed?.blob ?? `${v.external?.kms}#${v.external?.keyId}`;
    const hit = this.secrets.get(ck);
    if (hit) return hit;
    let s: Secret;
    if (v.external) {
      const { kms, keyId } = v.external;
      s = { kind: 'ext', driver: await this.kmsDriver(kms), keyId };
    } else {
      const bytes = await this.secretBytes(r, v, signal);
      s =
        r.type === 'aes256'
          ? {
              kind: 'sym',
              key: owned(bytes.subarray(0, 32)),
              ...(bytes.length >= 64 ? { hmacKey: owned(bytes.subarray(32, 64)) } : {}),
              algorithm: r.meta?.['kes_algorithm'] === 'ChaCha20' ? 'ChaCha20' : 'AES256',
            }
          : { kind: 'priv', key: privateKeyObject(bytes) };
      bytes.fill(0); // the cache holds its own copies (or a KeyObject): the unsealed bytes go now
    }
    this.secrets.set(ck, s);
    return s;
  }

  private publicOf(r: KeyRecord, v: VersionRecord): KeyObject {
    if (!v.publicKey) throw err('KEY_USAGE', `key '${r.name}' is ${r.type}: it has no public key`);
    return publicKeyObject(v.publicKey);
  }

  private usable(r: KeyRecord, purpose: Purpose, what: string): void {
    if (r.state !== 'active') throw err('KEY_DISABLED', `key '${r.name}' is disabled`);
    if (r.purpose !== purpose) throw err('KEY_USAGE', `key '${r.name}' is ${an(r.type)} ${r.type} ${r.purpose} key: it cannot ${what}`);
  }

  private checkUsage(r: KeyRecord, usage: KeyUsage | undefined): void {
    if (r.usage.includes('any')) return;
    if (!usage) throw err('KEY_USAGE', `key '${r.name}' may only sign for ${r.usage.join(', ')}: say which with --usage`);
    if (!r.usage.includes(usage)) throw err('KEY_USAGE', `key '${r.name}' may only sign for ${r.usage.join(', ')}, not ${usage}`);
  }

  private static purposeFor(type: KeyType, purpose?: Purpose): Purpose {
    const info = KEY_TYPE_INFO[type];
    const p = purpose ?? info.defaultPurpose;
    if (!info.purposes.includes(p))
      throw err('USAGE', `${an(type)} ${type} key cannot be ${an(p)} ${p} key: use ${info.purposes.join(' or ')}`);
    return p;
  }

  private static usageFor(purpose: Purpose, usage?: KeyUsage[]): KeyUsage[] {
    if (!usage || usage.length === 0) return ['any'];
    for (const u of usage)
      if (!(KEY_USAGES as readonly string[]).includes(u)) throw err('USAGE', `unknown usage '${u}': use ${KEY_USAGES.join(', ')}`);
    if (purpose !== 'signing' && !usage.includes('any')) throw err('USAGE', 'usage restrictions apply to signing keys only');
    return usage;
  }

  private newRecord(
    name: string,
    type: KeyType,
    purpose: Purpose,
    usage: KeyUsage[],
    createdBy: string | undefined,
    v: VersionRecord,
    meta?: Record<string, string>,
  ): KeyRecord {
    return {
      name,
      type,
      purpose,
      usage,
      state: 'active',
      createdAt: v.createdAt,
      createdBy: createdBy ?? this.opts.actor ?? 'keyport',
      ...(meta ? { meta } : {}),
      versions: [v],
    };
  }

  /** a new version for a record: generated here, or in the KMS for an external store */
  private async newVersion(name: string, type: KeyType, purpose: Purpose, version: number, signal?: AbortSignal): Promise<VersionRecord> {
    return (await this.strategy(signal)).generate(name, type, purpose, version, signal);
  }

  /**
   * cleanup of a KMS key that will not be recorded (here, and for migrate's imports): never cancelled (a
   * cancelled caller must not leave it behind)
   */
  async dropExternal(v: VersionRecord): Promise<void> {
    if (!v.external) return;
    const d = await this.kmsDriver(v.external.kms);
    await d.deleteKey(v.external.keyId).catch(() => undefined);
  }

  // ---- Keyring -------------------------------------------------------------------------------

  async create(name: string, opts: CreateOptions = {}): Promise<KeyInfo> {
    checkName(name);
    const type = parseKeyType(opts.type);
    const purpose = StoreKeyring.purposeFor(type, opts.purpose);
    const usage = StoreKeyring.usageFor(purpose, opts.usage);
    // everything that can refuse is asked before the key is generated (RSA takes seconds; a KMS key costs)
    if (this.store.capabilities.kesOnly && type !== 'aes256')
      throw err('UNSUPPORTED', `a KES keystore holds only aes256 keys, not ${type}: use a keyport store for other key types`);
    const p = await this.protection(opts.signal);
    const exists = await this.store.get(name, { signal: opts.signal }).then(
      () => true,
      (e) => (isKeyportError(e, 'NOT_FOUND') ? false : Promise.reject(e)),
    );
    if (exists) throw err('EXISTS', `key '${name}' already exists`);
    const v = await this.newVersion(name, type, purpose, 1, opts.signal);
    if (opts.signal?.aborted) {
      await this.dropExternal(v);
      throw err('TIMEOUT', `creating key '${name}' was cancelled: the request ran out of time`);
    }
    const rec = this.newRecord(
      name,
      type,
      purpose,
      usage,
      opts.createdBy,
      v,
      p.mode === 'external' ? { kms_generated: 'true' } : undefined,
    );
    try {
      await this.store.create(rec, { signal: opts.signal });
    } catch (e) {
      await this.dropExternal(v);
      throw e;
    }
    return toKeyInfo(rec);
  }

  async import(name: string, material: Buffer, opts: CreateOptions = {}): Promise<KeyInfo> {
    checkName(name);
    const m = parseKeyMaterial(material, opts.type ? parseKeyType(opts.type) : undefined);
    const purpose = StoreKeyring.purposeFor(m.type, opts.purpose);
    const usage = StoreKeyring.usageFor(purpose, opts.usage);
    // held the way the store's mode holds secrets: clear, sealed, or imported into its KMS
    const v: VersionRecord = {
      version: 1,
      createdAt: new Date().toISOString(),
      ...(m.publicKey ? { publicKey: m.publicKey.toString('base64') } : {}),
      fingerprint: fingerprintOf(m.type, m),
      ...(await this.holdIncoming(name, m.type, purpose, m.secret, 1, opts.signal)),
    };
    const rec = this.newRecord(name, m.type, purpose, usage, opts.createdBy, v);
    try {
      await this.store.create(rec, { signal: opts.signal });
    } catch (e) {
      await this.dropExternal(v);
      throw e;
    }
    return toKeyInfo(rec);
  }

  /**
   * Adopt a key that already exists in the store's KMS (Canton's manual init): reference + public key
   * only. The KMS is the store's own (its external protection setting), reached through a configured
   * connection; `keyId` names the key: id, ARN, alias/NAME, label.
   */
  async register(name: string, keyId: string, opts: RegisterOptions = {}): Promise<KeyInfo> {
    checkName(name);
    if (!keyId) throw err('USAGE', 'register needs the KMS key id, ARN, alias or label');
    const p = await this.protection(opts.signal);
    if (p.mode !== 'external')
      throw err('USAGE', 'register needs a KMS store (e.g. --store awskms:region=…): this store holds its own keys');
    const kmsUri = parseStoredKmsRef(p.kms).toString();
    const driver = await this.kmsDriver(kmsUri);
    const v = await this.adoptedVersion(driver, kmsUri, keyId, 1, opts, opts.signal);
    const rec = this.newRecord(name, v.type, v.purpose, StoreKeyring.usageFor(v.purpose, opts.usage), opts.createdBy, v.version, {
      registered: 'true',
    });
    await this.store.create(rec, { signal: opts.signal });
    return toKeyInfo(rec);
  }

  /**
   * One version adopted from a KMS key keyport did not make: the key must exist, be usable, and fit
   * what is asked (src/keys/adopt.ts); its public key is read and fingerprinted here.
   */
  private async adoptedVersion(
    driver: Driver,
    kmsUri: string,
    keyRef: string,
    version: number,
    want: AdoptWant,
    signal?: AbortSignal,
  ): Promise<{ type: KeyType; purpose: Purpose; version: VersionRecord }> {
    const o = { signal };
    const keyId = driver.resolveKeyId ? await driver.resolveKeyId(keyRef, o) : keyRef;
    await driver.keyExistsAndIsActive(keyId, o);
    const what = `${driver.name} key '${keyRef}'`;
    const createdAt = new Date().toISOString();
    let desc = driver.describeKey ? await driver.describeKey(keyId, o) : undefined;
    // what the KMS's own description rules out is refused before anything else is read (a KMIP private key
    // made outside keyport has no findable public key: its refusal should say what it is, not that)
    if (desc) checkAdoptable(what, driver, desc, want);
    let pub: { spki: Buffer } | undefined;
    if (desc?.spec !== 'aes256') {
      try {
        pub = await driver.getPublicKey(keyId, o);
      } catch (e) {
        if (desc) {
          if (desc.spec) throw e; // a key keyport can use whose public key cannot be read: a real failure
          // else: a key spec keyport does not use; checkAdoptable below says so with the KMS's description
        } else if (isKeyportError(e, 'KEY_USAGE'))
          desc = describedFromPublicKey(keyId, 'aes256'); // no public key: symmetric
        else if (isKeyportError(e, 'UNSUPPORTED')) throw err('KEY_USAGE', `${e.message}: refusing to register it`);
        else throw e;
      }
    }
    const pubType = pub ? keyTypeOf(publicKeyObject(pub.spki)) : undefined;
    if (desc && pubType && desc.spec && desc.spec !== pubType)
      throw err('KEY_USAGE', `${what} is described as ${desc.spec} but its public key is ${pubType}: refusing it`);
    desc ??= describedFromPublicKey(keyId, pubType);
    const { type, purpose } = checkAdoptable(what, driver, desc, want);
    if (type === 'aes256')
      return {
        type,
        purpose,
        version: { version, createdAt, fingerprint: `kms:${keyId}`, external: { kms: kmsUri, keyId, origin: 'registered' } },
      };
    if (!pub) throw err('KEY_USAGE', `${what} is ${desc.native}: it has no public key to record`);
    return {
      type,
      purpose,
      version: {
        version,
        createdAt,
        publicKey: pub.spki.toString('base64'),
        fingerprint: fingerprintOf(type, { publicKey: pub.spki }),
        external: { kms: kmsUri, keyId, origin: 'registered' },
      },
    };
  }

  async describe(name: string, opts: CallOptions = {}): Promise<KeyInfo> {
    return toKeyInfo(await this.record(name, false, opts.signal));
  }

  async list(pattern?: string, opts: { after?: string; limit?: number } & CallOptions = {}): Promise<{ names: string[]; next?: string }> {
    const pat = compilePattern(pattern);
    checkCancelled('listing keys', opts.signal);
    const limit = opts.limit ?? Infinity;
    const names: string[] = [];
    let after = opts.after;
    for (;;) {
      const page = await this.store.list({ prefix: pat.prefix, after, limit: 1000, signal: opts.signal });
      for (const n of page.names) {
        if (!pat.test(n)) continue;
        names.push(n);
        if (names.length >= limit) return { names, next: n };
      }
      if (!page.next) return { names };
      after = page.next;
    }
  }

  async delete(name: string, opts: CallOptions = {}): Promise<void> {
    const r = await this.record(name, false, opts.signal);
    this.forget(name);
    await this.store.delete(name, { signal: opts.signal });
    // keys keyport generated inside a KMS go with their record; registered ones stay in the KMS
    for (const v of r.versions) if (StoreKeyring.generatedHere(r, v)) await this.dropExternal(v);
  }

  /** a version whose KMS key keyport made (and so deletes with the record), not one it adopted */
  private static generatedHere(r: KeyRecord, v: VersionRecord): boolean {
    if (!v.external) return false;
    if (v.external.origin) return v.external.origin === 'generated';
    return r.meta?.['kms_generated'] === 'true';
  }

  /**
   * Add a version. With `toKeyId` the new version is a KMS key that already exists (pre-generated,
   * e.g. for Canton's manual rotation), checked like a registration against the key's type and purpose;
   * without, a new key is made where the newest version lives (a registered key's new KMS key is
   * keyport's own and goes with the record).
   */
  async rotate(name: string, opts: RotateOptions = {}): Promise<KeyInfo> {
    const signal = opts.signal;
    const r = await this.record(name, false, signal);
    const last = r.versions[r.versions.length - 1]!;
    let v: VersionRecord;
    if (opts.toKeyId !== undefined) {
      if (!opts.toKeyId) throw err('USAGE', '--to-key-id needs the KMS key id, ARN, alias or label');
      if (!last.external)
        throw err('UNSUPPORTED', `key '${name}' is held by the store, not a KMS: --to-key-id rotates keys that live in a KMS`);
      if (r.versions.some((x) => x.external && sameKmsRef(x.external.kms, last.external!.kms) && x.external.keyId === opts.toKeyId))
        throw err('EXISTS', `key '${name}' already has KMS key '${opts.toKeyId}' as a version`);
      const driver = await this.kmsDriver(last.external.kms);
      const a = await this.adoptedVersion(
        driver,
        last.external.kms,
        opts.toKeyId,
        last.version + 1,
        { type: r.type, purpose: r.purpose, ...(r.usage.some((u) => u !== 'any') ? { usage: r.usage } : {}) },
        signal,
      );
      if (r.versions.some((x) => x.external?.keyId === a.version.external!.keyId && sameKmsRef(x.external?.kms, a.version.external!.kms)))
        throw err('EXISTS', `key '${name}' already has KMS key '${opts.toKeyId}' as a version`);
      v = a.version;
    } else {
      v = await this.newVersion(name, r.type, r.purpose, last.version + 1, signal);
      // a registered key's new KMS key is keyport's own: it goes with the record
      if (v.external && r.meta?.['registered'] === 'true') v.external = { ...v.external, origin: 'generated' };
    }
    if (signal?.aborted) {
      if (StoreKeyring.generatedHere(r, v)) await this.dropExternal(v);
      checkCancelled(`rotating key '${name}'`, signal);
    }
    // the new version is made outside the write (key generation, a KMS call) and numbered inside it, so
    // rotations racing through several replicas or processes all land as consecutive versions
    let next: KeyRecord;
    try {
      next = await this.updateRecord(name, signal, (cur) => {
        if (cur.createdAt !== r.createdAt || cur.type !== r.type || cur.purpose !== r.purpose) {
          throw err('CONFLICT', `key '${name}' was deleted and created again while it was being rotated: retry`);
        }
        return { ...cur, versions: [...cur.versions, { ...v, version: cur.versions[cur.versions.length - 1]!.version + 1 }] };
      });
    } catch (e) {
      if (StoreKeyring.generatedHere(r, v)) await this.dropExternal(v);
      throw e;
    }
    return toKeyInfo(next);
  }

  /** read-modify-write of one record (see store/types updateRecord); the record cache forgets it around the write */
  private async updateRecord(name: string, signal: AbortSignal | undefined, fn: (cur: KeyRecord) => KeyRecord): Promise<KeyRecord> {
    this.forget(name);
    try {
      return await updateRecord(this.store, name, fn, { signal });
    } finally {
      this.forget(name);
    }
  }

  async versions(name: string, opts: CallOptions = {}): Promise<VersionInfo[]> {
    return toVersionInfos(await this.record(name, false, opts.signal));
  }

  async export(name: string, opts: CallOptions = {}): Promise<ExportedKey[]> {
    const r = await this.record(name, false, opts.signal);
    const out: ExportedKey[] = [];
    for (const v of r.versions) {
      const secret = await this.secretBytes(r, v, opts.signal);
      out.push({ type: r.type, secret: r.type === 'aes256' ? secret.subarray(0, 32) : secret, version: v.version });
    }
    return out;
  }

  async publicKey(name: string, version?: number, opts: CallOptions = {}): Promise<Buffer> {
    const r = await this.record(name, false, opts.signal);
    const v = this.version(r, version);
    if (!v.publicKey) throw err('KEY_USAGE', `key '${name}' is ${r.type}: it has no public key`);
    return Buffer.from(v.publicKey, 'base64');
  }

  async sign(name: string, data: Buffer, opts: SignOptions = {}): Promise<Buffer> {
    return this.signRecord(await this.record(name, true, opts.signal), data, opts);
  }

  /** sign with a record already in hand (migration verification reads each record once) */
  async signRecord(r: KeyRecord, data: Buffer, opts: SignOptions = {}): Promise<Buffer> {
    const name = r.name;
    this.usable(r, 'signing', 'sign');
    this.checkUsage(r, opts.usage);
    const v = this.version(r, opts.version);
    const s = await this.secret(r, v, opts.signal);
    const format = opts.format ?? 'der';
    if (s.kind === 'ext') {
      // KMSs answer with either S (AWS KMS, PKCS#11 tokens…): normalized like every local signature
      const der = lowS(r.type, await s.driver.sign(s.keyId, data, SIGN_ALGO[r.type]!, { signal: opts.signal }), 'der');
      return format === 'raw' && KEY_TYPE_INFO[r.type].family === 'ec' ? derToRaw(der, ecdsaSize(r.type)) : der;
    }
    if (s.kind !== 'priv') throw err('KEY_USAGE', `key '${name}' cannot sign`);
    return signData(r.type, s.key, data, format);
  }

  async verify(name: string, data: Buffer, signature: Buffer, opts: SignOptions = {}): Promise<boolean> {
    return this.verifyRecord(await this.record(name, false, opts.signal), data, signature, opts);
  }

  async verifyRecord(r: KeyRecord, data: Buffer, signature: Buffer, opts: SignOptions = {}): Promise<boolean> {
    const name = r.name;
    if (r.purpose !== 'signing') throw err('KEY_USAGE', `key '${name}' is ${an(r.type)} ${r.type} ${r.purpose} key: it cannot verify`);
    const versions = opts.version !== undefined ? [this.version(r, opts.version)] : [...r.versions].reverse();
    for (const v of versions)
      if (verifyData(r.type, this.publicOf(r, v), data, signature, opts.format ?? 'der', { strict: opts.strict })) return true;
    return false;
  }

  async encrypt(name: string, plaintext: Buffer, context?: Buffer, opts: CallOptions = {}): Promise<Buffer> {
    return this.encryptRecord(await this.record(name, true, opts.signal), plaintext, context, opts);
  }

  async encryptRecord(r: KeyRecord, plaintext: Buffer, context?: Buffer, opts: CallOptions = {}): Promise<Buffer> {
    const name = r.name;
    if (r.type === 'aes256') {
      this.usable(r, 'symmetric', 'encrypt');
      const v = this.version(r);
      const s = await this.secret(r, v, opts.signal);
      if (s.kind === 'ext') {
        if (context?.length) throw err('UNSUPPORTED', `key '${name}' lives in a KMS: encryption context is not supported there`);
        return s.driver.encryptSymmetric(s.keyId, plaintext, opts);
      }
      if (s.kind !== 'sym') throw err('KEY_USAGE', `key '${name}' cannot encrypt`);
      return kesEncrypt(s.key, plaintext, context, s.algorithm);
    }
    this.usable(r, 'encryption', 'encrypt');
    const pub = this.publicOf(r, this.version(r));
    if (KEY_TYPE_INFO[r.type].family === 'rsa') return rsaOaepEncrypt(pub, plaintext, context?.length ? context : undefined);
    return eciesEncrypt(pub, plaintext, context);
  }

  async decrypt(name: string, ciphertext: Buffer, context?: Buffer, opts: CallOptions = {}): Promise<Buffer> {
    return this.decryptRecord(await this.record(name, true, opts.signal), ciphertext, context, opts);
  }

  async decryptRecord(r: KeyRecord, ciphertext: Buffer, context?: Buffer, opts: CallOptions = {}): Promise<Buffer> {
    this.usable(r, r.type === 'aes256' ? 'symmetric' : 'encryption', 'decrypt');
    // the ciphertext does not name its version: newest first, authentication picks the right one
    let last: unknown;
    for (const v of [...r.versions].reverse()) {
      try {
        const s = await this.secret(r, v, opts.signal);
        if (s.kind === 'ext') {
          if (r.type === 'aes256') return await s.driver.decryptSymmetric(s.keyId, ciphertext, opts);
          return await s.driver.decryptAsymmetric(
            s.keyId,
            ciphertext,
            KEY_TYPE_INFO[r.type].family === 'rsa' ? 'rsa-oaep-sha256' : 'ecies-p256-hkdf-sha256-aes-gcm',
            opts,
          );
        }
        if (s.kind === 'sym') return kesDecrypt(s.key, ciphertext, context, s.algorithm);
        if (KEY_TYPE_INFO[r.type].family === 'rsa') return rsaOaepDecrypt(s.key, ciphertext, context?.length ? context : undefined);
        return eciesDecrypt(s.key, ciphertext, context);
      } catch (e) {
        if (!isKeyportError(e, 'INVALID_CIPHERTEXT')) throw e;
        last = e;
      }
    }
    throw last;
  }

  async generate(name: string, context?: Buffer, opts: CallOptions = {}): Promise<{ plaintext: Buffer; ciphertext: Buffer }> {
    const r = await this.record(name, true, opts.signal);
    if (r.type !== 'aes256') throw err('KEY_USAGE', `key '${name}' is ${r.type}: data keys come from aes256 keys`);
    const plaintext = randomBytes(32);
    return { plaintext, ciphertext: await this.encryptRecord(r, plaintext, context, opts) };
  }

  async hmac(name: string, message: Buffer, opts: CallOptions = {}): Promise<Buffer> {
    const r = await this.record(name, true, opts.signal);
    this.usable(r, 'symmetric', 'compute an HMAC');
    const s = await this.secret(r, this.version(r), opts.signal);
    if (s.kind !== 'sym') throw err('UNSUPPORTED', `key '${name}' lives in a KMS: HMAC is not available there`);
    if (!s.hmacKey)
      throw err('CONFLICT', `key '${name}' does not support HMAC (it was made without an HMAC key)`, { retryable: false, httpStatus: 409 });
    return hmacSha256(s.hmacKey, message);
  }

  async close(): Promise<void> {
    await this.connections.close();
    await this.store.close();
  }
}
