/**
 * `awskms:region=R[;endpoint=URL][;profile=P][;access-key-id=…;secret-access-key=…][;timeout-ms=10000]`
 * AWS KMS through @aws-sdk/client-kms (loaded lazily). A key URI adds `key-id=…`: a key id, a key ARN
 * (multi-region `mrk-…` and cross-account ARNs are passed through as they are) or `alias/NAME`.
 *
 *  - signing: ECC_NIST_P256 (ECDSA_SHA_256), ECC_NIST_P384 (ECDSA_SHA_384), ECC_SECG_P256K1
 *    (ECDSA_SHA_256), RSA_2048/3072 (RSASSA_PSS_SHA_256). sign() sends the message (MessageType RAW)
 *    and returns KMS's DER signature; messages over KMS's 4096-byte limit are hashed here and sent as
 *    MessageType DIGEST.
 *  - encryption: RSA_2048/3072 with RSAES_OAEP_SHA_256 (decrypt in KMS, encrypt locally with the SPKI).
 *  - symmetric: SYMMETRIC_DEFAULT Encrypt/Decrypt; the ciphertext is KMS's opaque CiphertextBlob.
 *  - generate*(spec, name): CreateKey, TagResource (keyport:name), CreateAlias alias/NAME.
 *  - deleteKey: aliases of the key are deleted, then ScheduleKeyDeletion with the minimum 7-day window.
 *  - importKey (BYOK): CreateKey Origin=EXTERNAL, GetParametersForImport, ImportKeyMaterial that never
 *    expires; 32-byte keys wrapped with RSAES_OAEP_SHA_256, private keys (PKCS#8) with
 *    RSA_AES_KEY_WRAP_SHA_256 (AES-256 key under RSA-OAEP-SHA-256, then AES key wrap with padding,
 *    RFC 5649). A private key must be the declared spec (checked locally before any KMS call).
 *    A KMS/emulator that lacks import fails with UNSUPPORTED.
 *  - importRefusal: AWS KMS documents import for SYMMETRIC_DEFAULT and every asymmetric spec keyport
 *    uses (RSA, ECC_NIST_*, ECC_SECG_P256K1). An AWS-compatible endpoint that imports less is told so
 *    by the operator's connection: `import=aes256` (local-kms imports symmetric keys only),
 *    `import=none` (moto has no import), or a comma list of keyport specs. Plans then re-key or refuse
 *    those keys up front, and importKey refuses them before any KMS call.
 *  - the SDK makes one attempt per call (keyport retries above the driver) and each call is bounded
 *    by timeout-ms.
 */
import { createHash, createPrivateKey, createPublicKey, publicEncrypt, randomUUID, constants as C } from 'node:crypto';
import { err, isKeyportError } from '../../errors.js';
import { keyTypeOf } from '../../crypto/keys.js';
import type {
  CallOptions,
  Driver,
  DriverFactory,
  DriverKeyDescription,
  DriverKeyInfo,
  DriverPublicKey,
  EncryptionAlgoSpec,
  EncryptionKeySpec,
  Health,
  KeyMaterialForImport,
  SigningAlgoSpec,
  SigningKeySpec,
} from '../driver.js';
import { rsaAesKeyWrap } from '../../crypto/keywrap.js';
import { awsParams, clientConfig, decodeXmlErrors, mapAwsError, type AwsParams } from './common.js';
import { limiterFor } from '../limiter.js';
import { quotaMode, quotaOf, type CryptoFamily, type QuotaMode } from './quotas.js';
import { DEFAULT_RETRY_POLICY, isOutcomeUnknown, retryPolicyFromEnv, runKmsCall, type RetryPolicy } from '../retry.js';

type Kms = typeof import('@aws-sdk/client-kms');

const SIGNING_SPECS: Partial<Record<SigningKeySpec, string>> = {
  'ec-p256': 'ECC_NIST_P256',
  'ec-p384': 'ECC_NIST_P384',
  secp256k1: 'ECC_SECG_P256K1',
  'rsa-2048': 'RSA_2048',
  'rsa-3072': 'RSA_3072',
};
const ENCRYPTION_SPECS: Partial<Record<EncryptionKeySpec, string>> = { 'rsa-2048': 'RSA_2048', 'rsa-3072': 'RSA_3072' };
const FROM_AWS_SPEC: Record<string, SigningKeySpec | EncryptionKeySpec> = {
  ECC_NIST_P256: 'ec-p256',
  ECC_NIST_P384: 'ec-p384',
  ECC_SECG_P256K1: 'secp256k1',
  RSA_2048: 'rsa-2048',
  RSA_3072: 'rsa-3072',
};
const SIGN_ALGOS: Partial<Record<SigningAlgoSpec, { aws: string; hash: 'sha256' | 'sha384' }>> = {
  'ecdsa-sha256': { aws: 'ECDSA_SHA_256', hash: 'sha256' },
  'ecdsa-sha384': { aws: 'ECDSA_SHA_384', hash: 'sha384' },
  'rsa-pss-sha256': { aws: 'RSASSA_PSS_SHA_256', hash: 'sha256' },
};
/** which keyport algorithm fits which key spec */
const ALGO_FOR_SPEC: Record<string, SigningAlgoSpec[]> = {
  ECC_NIST_P256: ['ecdsa-sha256'],
  ECC_SECG_P256K1: ['ecdsa-sha256'],
  ECC_NIST_P384: ['ecdsa-sha384'],
  RSA_2048: ['rsa-pss-sha256'],
  RSA_3072: ['rsa-pss-sha256'],
};

const RAW_LIMIT = 4096;
/** the largest CiphertextBlob AWS KMS accepts, and the longest RSA ciphertext (RSA_4096) */
const BLOB_MAX = 6144;
const RSA_CT_MAX = 512;
const NAME_TAG = 'keyport:name';
const SVC = 'AWS KMS';

/** every spec AWS KMS imports (its documented BYOK key specs, in keyport's names) */
const IMPORTABLE: readonly string[] = ['aes256', ...new Set([...Object.keys(SIGNING_SPECS), ...Object.keys(ENCRYPTION_SPECS)])];

/** the `import=` connection attribute: the specs this endpoint imports (a subset of AWS KMS's) */
export function importableSpecs(value: string | undefined): ReadonlySet<string> {
  if (value === undefined) return new Set(IMPORTABLE);
  if (value === 'none') return new Set();
  const specs = value.split(',').map((x) => x.trim());
  const bad = specs.filter((x) => !IMPORTABLE.includes(x));
  if (bad.length || !specs.length)
    throw err('USAGE', `awskms: import=${value}: list the key specs this endpoint imports (of ${IMPORTABLE.join(', ')}), or none`);
  return new Set(specs);
}

export const factory: DriverFactory = async (params, uri) => {
  const p = awsParams(params, 'awskms');
  const importable = importableSpecs(params['import']);
  const quotas = quotaMode(params['quotas'], p.endpoint);
  let sdk: Kms;
  try {
    sdk = await import('@aws-sdk/client-kms');
  } catch (e) {
    throw err('UNSUPPORTED', `awskms: @aws-sdk/client-kms cannot be loaded (${(e as Error).message.split('\n')[0]}): install it`);
  }
  const client = new sdk.KMSClient(clientConfig(p) as import('@aws-sdk/client-kms').KMSClientConfig);
  decodeXmlErrors(client.middlewareStack);
  // per attempt the SDK's own request timeout (timeout-ms, clientConfig) bounds each request: no timer of ours per call
  return new AwsKmsDriver(
    sdk,
    client,
    p,
    uri,
    { ...DEFAULT_RETRY_POLICY, ...retryPolicyFromEnv(), attemptTimeoutMs: 0 },
    importable,
    quotas,
  );
};

class AwsKmsDriver implements Driver {
  readonly name = 'awskms';
  /** every AWS request goes through src/kms/retry.ts here, per AWS operation (instrument() does not retry again) */
  readonly retriesRequests = true;
  /** this KMS for the process's limiters: region and endpoint (AWS's quotas are per account and Region) */
  private readonly kmsId: string;
  constructor(
    private readonly sdk: Kms,
    private readonly client: InstanceType<Kms['KMSClient']>,
    private readonly p: AwsParams,
    readonly uri: string,
    private readonly policy: RetryPolicy,
    private readonly importable: ReadonlySet<string>,
    private readonly quotas: QuotaMode,
  ) {
    this.kmsId = `awskms:${p.region}:${p.endpoint ?? 'aws'}`;
  }

  /**
   * One AWS request: the process's limiter of the AWS quota it draws on (`family`: the shared quota of
   * a cryptographic operation's key type; else the operation's own), the retry policy (throttling retried
   * while the deadline allows), the per-attempt timeout and the caller's signal handed to the SDK.
   * `idempotent: false` for CreateKey: a failure that may have reached AWS is not retried blindly.
   */
  private async call<T>(
    what: string,
    cmd: unknown,
    o?: CallOptions,
    { idempotent = true, family }: { idempotent?: boolean; family?: CryptoFamily } = {},
  ): Promise<T> {
    const quota = quotaOf(what, family, this.quotas);
    const r = await runKmsCall<T>(
      {
        op: what,
        kms: this.uri,
        idempotent,
        signal: o?.signal,
        limiter: limiterFor(this.kmsId, quota.name, quota.seed),
        policy: this.policy,
        map: (e) => mapAwsError(e, what, SVC),
        // the SDK's request timeout (timeout-ms, throwOnRequestTimeout) ends every attempt by itself; a
        // credential chain that might hang is not under it, so its attempts keep the deadline's signal
        attemptBoundMs: this.p.credentials ? this.p.timeoutMs : undefined,
      },
      // no options without a signal: the SDK then reuses its cached middleware stack (cacheMiddleware)
      (signal) => this.client.send(cmd as never, signal ? { abortSignal: signal } : undefined) as Promise<T>,
    );
    return r.value;
  }

  async health(): Promise<Health> {
    try {
      await this.call('ListKeys', new this.sdk.ListKeysCommand({ Limit: 1 }), { signal: AbortSignal.timeout(this.p.timeoutMs) });
      return { state: 'ok' };
    } catch (e) {
      return { state: 'failed', reason: isKeyportError(e) ? e.message : 'AWS KMS is not reachable' };
    }
  }

  supportedSigningKeySpecs(): SigningKeySpec[] {
    return Object.keys(SIGNING_SPECS) as SigningKeySpec[];
  }
  supportedSigningAlgoSpecs(): SigningAlgoSpec[] {
    return Object.keys(SIGN_ALGOS) as SigningAlgoSpec[];
  }
  supportedEncryptionKeySpecs(): EncryptionKeySpec[] {
    return Object.keys(ENCRYPTION_SPECS) as EncryptionKeySpec[];
  }
  supportedEncryptionAlgoSpecs(): EncryptionAlgoSpec[] {
    return ['rsa-oaep-sha256'];
  }

  /**
   * CreateKey (+ TagResource keyport:name and CreateAlias alias/NAME when named). The key's Description
   * carries a random creation token, so a CreateKey whose answer was lost (connection reset, 5xx, timeout
   * after sending) is looked up by that token instead of being sent again: the key it made is adopted, or,
   * when none exists, CreateKey is sent again. When naming fails the new key is scheduled for deletion
   * (disabled if even that fails): no orphan enabled key is left behind.
   */
  private async create(
    keySpec: string,
    keyUsage: string,
    name: string | undefined,
    origin?: string,
    o?: CallOptions,
    describedAs = name,
  ): Promise<string> {
    const token = randomUUID();
    const description = `${describedAs ? `keyport key ${describedAs}` : 'keyport key'} (create ${token})`;
    let keyId: string | undefined;
    for (let round = 0; keyId === undefined; round++) {
      try {
        const out = await this.call<{ KeyMetadata?: { KeyId?: string } }>(
          'CreateKey',
          new this.sdk.CreateKeyCommand({
            KeySpec: keySpec as never,
            KeyUsage: keyUsage as never,
            ...(origin ? { Origin: origin as never } : {}),
            Description: description,
          }),
          o,
          { idempotent: false },
        );
        keyId = out.KeyMetadata?.KeyId;
        if (!keyId) throw err('INTERNAL', 'AWS KMS CreateKey returned no key id');
      } catch (e) {
        if (!isOutcomeUnknown(e) || round >= 2) throw e;
        keyId = await this.findCreated(token, o);
      }
    }
    if (name !== undefined) await this.nameKey(keyId, name, o);
    return keyId;
  }

  /** the key a CreateKey with this creation token made, if any (listing the account's keys) */
  private async findCreated(token: string, o?: CallOptions): Promise<string | undefined> {
    let marker: string | undefined;
    do {
      const out = await this.call<{ Keys?: { KeyId?: string }[]; NextMarker?: string; Truncated?: boolean }>(
        'ListKeys',
        new this.sdk.ListKeysCommand({ Limit: 1000, ...(marker ? { Marker: marker } : {}) }),
        o,
      );
      const ids = (out.Keys ?? []).map((k) => k.KeyId).filter((k): k is string => !!k);
      for (let i = 0; i < ids.length; i += 16) {
        const metas = await Promise.all(
          ids
            .slice(i, i + 16)
            .map((id) =>
              this.call<{ KeyMetadata?: KeyMeta & { Description?: string } }>(
                'DescribeKey',
                new this.sdk.DescribeKeyCommand({ KeyId: id }),
                o,
              ).catch(() => undefined),
            ),
        );
        const hit = metas.find((m) => m?.KeyMetadata?.Description?.includes(`(create ${token})`));
        if (hit?.KeyMetadata?.KeyId) return hit.KeyMetadata.KeyId;
      }
      marker = out.Truncated ? out.NextMarker : undefined;
    } while (marker);
    return undefined;
  }

  /** TagResource + CreateAlias; on failure the key is scheduled for deletion (or at least disabled) */
  private async nameKey(keyId: string, name: string, o?: CallOptions): Promise<void> {
    try {
      await this.call('TagResource', new this.sdk.TagResourceCommand({ KeyId: keyId, Tags: [{ TagKey: NAME_TAG, TagValue: name }] }), o);
      try {
        await this.call('CreateAlias', new this.sdk.CreateAliasCommand({ AliasName: `alias/${name}`, TargetKeyId: keyId }), o);
      } catch (e) {
        // the alias is a convenience (keyport records the key id; the tag carries the name): an identity
        // without kms:CreateAlias (Canton's six actions have none) still gets its key, never an orphan
        if (isKeyportError(e, 'PERMISSION')) return;
        // a retried CreateAlias whose first attempt worked finds its own alias
        if (!isKeyportError(e, 'EXISTS') || (await this.aliasTarget(name, o)) !== keyId) throw e;
      }
    } catch (e) {
      const left = await this.discard(keyId);
      const ke = isKeyportError(e, 'EXISTS')
        ? err('EXISTS', `AWS KMS alias 'alias/${name}' already exists: pick another name or delete the alias`)
        : e;
      // if even the clean-up was refused, the error names the key left behind
      if (left && isKeyportError(ke)) throw err(ke.code, `${ke.message}; the new key ${keyId} ${left}: delete it in AWS KMS`);
      throw ke;
    }
  }

  private async aliasTarget(name: string, o?: CallOptions): Promise<string | undefined> {
    try {
      return (await this.describe(`alias/${name}`, o)).KeyId;
    } catch {
      return undefined;
    }
  }

  /** a key keyport made but cannot hand out: scheduled for deletion, else disabled (never left enabled) */
  private async discard(keyId: string): Promise<string | undefined> {
    try {
      await this.scheduleDeletion(keyId);
      return undefined;
    } catch {
      return this.call('DisableKey', new this.sdk.DisableKeyCommand({ KeyId: keyId })).then(
        () => 'is disabled but could not be scheduled for deletion',
        () => 'could be neither scheduled for deletion nor disabled',
      );
    }
  }

  async generateSigningKeyPair(spec: SigningKeySpec, name?: string, o?: CallOptions): Promise<string> {
    const aws = SIGNING_SPECS[spec];
    if (!aws)
      throw err('UNSUPPORTED', `AWS KMS cannot make ${spec} signing keys: use one of ${this.supportedSigningKeySpecs().join(', ')}`);
    return this.create(aws, 'SIGN_VERIFY', name, undefined, o);
  }

  async generateEncryptionKeyPair(spec: EncryptionKeySpec, name?: string, o?: CallOptions): Promise<string> {
    const aws = ENCRYPTION_SPECS[spec];
    if (!aws) throw err('UNSUPPORTED', `AWS KMS cannot make ${spec} encryption keys: use rsa-2048 or rsa-3072`);
    return this.create(aws, 'ENCRYPT_DECRYPT', name, undefined, o);
  }

  async generateSymmetricKey(name?: string, o?: CallOptions): Promise<string> {
    return this.create('SYMMETRIC_DEFAULT', 'ENCRYPT_DECRYPT', name, undefined, o);
  }

  async sign(keyId: string, data: Buffer, algo: SigningAlgoSpec, o?: CallOptions): Promise<Buffer> {
    const a = SIGN_ALGOS[algo];
    if (!a) throw err('UNSUPPORTED', `AWS KMS cannot sign with ${algo}: use one of ${this.supportedSigningAlgoSpecs().join(', ')}`);
    const raw = data.length <= RAW_LIMIT;
    const out = await this.call<{ Signature?: Uint8Array }>(
      'Sign',
      new this.sdk.SignCommand({
        KeyId: keyId,
        Message: raw ? data : createHash(a.hash).update(data).digest(),
        MessageType: raw ? 'RAW' : 'DIGEST',
        SigningAlgorithm: a.aws as never,
      }),
      o,
      { family: algo === 'rsa-pss-sha256' ? 'rsa' : 'ecc' },
    );
    if (!out.Signature) throw err('INTERNAL', 'AWS KMS Sign returned no signature');
    return Buffer.from(out.Signature);
  }

  async decryptAsymmetric(keyId: string, ciphertext: Buffer, algo: EncryptionAlgoSpec, o?: CallOptions): Promise<Buffer> {
    if (algo !== 'rsa-oaep-sha256') throw err('UNSUPPORTED', `AWS KMS cannot decrypt ${algo}: use rsa-oaep-sha256`);
    // an RSA ciphertext is as long as the modulus: 512 bytes at most (RSA_4096). Refused here so that a
    // permanent input error is never sent (LocalStack answers oversize input with a retryable HTTP 500)
    if (ciphertext.length === 0 || ciphertext.length > RSA_CT_MAX) {
      throw err(
        'INVALID_CIPHERTEXT',
        `an RSA-OAEP ciphertext is 1 to ${RSA_CT_MAX} bytes (RSA_4096), not ${ciphertext.length}: this is not a ciphertext of an AWS KMS RSA key`,
      );
    }
    const out = await this.call<{ Plaintext?: Uint8Array }>(
      'Decrypt',
      new this.sdk.DecryptCommand({ KeyId: keyId, CiphertextBlob: ciphertext, EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' }),
      o,
      { family: 'rsa' },
    );
    if (!out.Plaintext) throw err('INTERNAL', 'AWS KMS Decrypt returned no plaintext');
    return Buffer.from(out.Plaintext);
  }

  async encryptSymmetric(keyId: string, plaintext: Buffer, o?: CallOptions): Promise<Buffer> {
    if (plaintext.length === 0 || plaintext.length > RAW_LIMIT) {
      throw err('INVALID_INPUT', `AWS KMS encrypts 1 to ${RAW_LIMIT} bytes, not ${plaintext.length}: wrap a data key instead`);
    }
    const out = await this.call<{ CiphertextBlob?: Uint8Array }>(
      'Encrypt',
      new this.sdk.EncryptCommand({ KeyId: keyId, Plaintext: plaintext, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' }),
      o,
      { family: 'symmetric' },
    );
    if (!out.CiphertextBlob) throw err('INTERNAL', 'AWS KMS Encrypt returned no ciphertext');
    return Buffer.from(out.CiphertextBlob);
  }

  async decryptSymmetric(keyId: string, ciphertext: Buffer, o?: CallOptions): Promise<Buffer> {
    if (ciphertext.length === 0) throw err('INVALID_CIPHERTEXT', 'empty ciphertext: nothing to decrypt');
    if (ciphertext.length > BLOB_MAX)
      throw err(
        'INVALID_CIPHERTEXT',
        `an AWS KMS ciphertext is at most ${BLOB_MAX} bytes, not ${ciphertext.length}: this is not a KMS ciphertext`,
      );
    const out = await this.call<{ Plaintext?: Uint8Array }>(
      'Decrypt',
      new this.sdk.DecryptCommand({ KeyId: keyId, CiphertextBlob: ciphertext, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' }),
      o,
      { family: 'symmetric' },
    );
    if (!out.Plaintext) throw err('INTERNAL', 'AWS KMS Decrypt returned no plaintext');
    return Buffer.from(out.Plaintext);
  }

  async getPublicKey(keyId: string, o?: CallOptions): Promise<DriverPublicKey> {
    const out = await this.call<{ PublicKey?: Uint8Array; KeySpec?: string; CustomerMasterKeySpec?: string }>(
      'GetPublicKey',
      new this.sdk.GetPublicKeyCommand({ KeyId: keyId }),
      o,
    );
    if (!out.PublicKey) throw err('INTERNAL', 'AWS KMS GetPublicKey returned no key');
    // older KMS APIs (and moto) answer only the deprecated CustomerMasterKeySpec
    const awsSpec = out.KeySpec ?? out.CustomerMasterKeySpec;
    const spec = FROM_AWS_SPEC[awsSpec ?? ''];
    if (!spec) throw err('UNSUPPORTED', `AWS KMS key '${keyId}' has key spec ${awsSpec ?? 'unknown'}, which keyport does not use`);
    return { spki: Buffer.from(out.PublicKey), spec };
  }

  private async describe(keyId: string, o?: CallOptions) {
    const out = await this.call<{ KeyMetadata?: KeyMeta }>('DescribeKey', new this.sdk.DescribeKeyCommand({ KeyId: keyId }), o);
    if (!out.KeyMetadata) throw err('NOT_FOUND', `AWS KMS key '${keyId}' not found`);
    return out.KeyMetadata;
  }

  async keyExistsAndIsActive(keyId: string, o?: CallOptions): Promise<void> {
    const m = await this.describe(keyId, o);
    if (m.KeyState !== 'Enabled' || m.Enabled === false) {
      throw err(
        'KEY_DISABLED',
        `AWS KMS key '${keyId}' is ${m.KeyState ?? 'not enabled'}: enable it (or cancel its deletion) or use another key`,
      );
    }
  }

  async describeKey(keyId: string, o?: CallOptions): Promise<DriverKeyDescription> {
    const m = await this.describe(keyId, o);
    const awsSpec = m.KeySpec ?? m.CustomerMasterKeySpec ?? 'an unknown key spec';
    const usage = m.KeyUsage ?? 'unknown';
    const symmetric = awsSpec === 'SYMMETRIC_DEFAULT';
    const spec = symmetric ? 'aes256' : FROM_AWS_SPEC[awsSpec];
    return {
      keyId: m.KeyId ?? keyId,
      ...(spec ? { spec } : {}),
      ...(m.Arn ? { arn: m.Arn } : {}),
      sign: usage === 'SIGN_VERIFY',
      decrypt: usage === 'ENCRYPT_DECRYPT',
      native: `${awsSpec} with KeyUsage ${usage}`,
      words: { sign: 'KeyUsage SIGN_VERIFY', decrypt: 'KeyUsage ENCRYPT_DECRYPT' },
    };
  }

  async resolveKeyId(ref: string, o?: CallOptions): Promise<string> {
    if (ref.startsWith('arn:')) return ref; // multi-region / cross-account ARNs are used as they are
    const m = await this.describe(ref, o);
    if (!m.KeyId) throw err('NOT_FOUND', `AWS KMS key '${ref}' not found`);
    return m.KeyId;
  }

  private async scheduleDeletion(keyId: string, o?: CallOptions): Promise<void> {
    await this.call('ScheduleKeyDeletion', new this.sdk.ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 7 }), o);
  }

  async deleteKey(keyId: string, o?: CallOptions): Promise<void> {
    const m = await this.describe(keyId, o);
    if (m.KeyState === 'PendingDeletion') return; // already going
    const id = m.KeyId ?? keyId;
    // drop the aliases first so the name can be reused at once (AWS keeps an alias on a key pending deletion)
    for await (const a of this.aliases(id)) {
      await this.call('DeleteAlias', new this.sdk.DeleteAliasCommand({ AliasName: a }), o);
    }
    await this.scheduleDeletion(id, o);
  }

  private async *aliases(keyId?: string): AsyncGenerator<string, void, void> {
    for await (const a of this.aliasEntries(keyId)) yield a.AliasName;
  }

  private async *aliasEntries(keyId?: string): AsyncGenerator<{ AliasName: string; TargetKeyId?: string }, void, void> {
    let marker: string | undefined;
    do {
      const out = await this.call<{ Aliases?: { AliasName?: string; TargetKeyId?: string }[]; NextMarker?: string; Truncated?: boolean }>(
        'ListAliases',
        new this.sdk.ListAliasesCommand({ ...(keyId ? { KeyId: keyId } : {}), Limit: 100, ...(marker ? { Marker: marker } : {}) }),
      );
      for (const a of out.Aliases ?? []) {
        if (!a.AliasName || a.AliasName.startsWith('alias/aws/')) continue;
        if (keyId && a.TargetKeyId && a.TargetKeyId !== keyId) continue;
        yield { AliasName: a.AliasName, TargetKeyId: a.TargetKeyId };
      }
      marker = out.Truncated ? out.NextMarker : undefined;
    } while (marker);
  }

  async *listKeys(): AsyncIterable<DriverKeyInfo> {
    const names = new Map<string, string>();
    for await (const a of this.aliasEntries()) {
      if (a.TargetKeyId && !names.has(a.TargetKeyId)) names.set(a.TargetKeyId, a.AliasName.slice('alias/'.length));
    }
    let marker: string | undefined;
    do {
      const out = await this.call<{ Keys?: { KeyId?: string }[]; NextMarker?: string; Truncated?: boolean }>(
        'ListKeys',
        new this.sdk.ListKeysCommand({ Limit: 1000, ...(marker ? { Marker: marker } : {}) }),
      );
      const ids = (out.Keys ?? []).map((k) => k.KeyId).filter((k): k is string => !!k);
      // describe a handful at a time: kind, spec and state come only from DescribeKey
      for (let i = 0; i < ids.length; i += 8) {
        const metas = await Promise.all(
          ids.slice(i, i + 8).map((id) =>
            this.describe(id).catch((e: unknown) => {
              if (isKeyportError(e, 'NOT_FOUND')) return undefined; // deleted meanwhile
              throw e;
            }),
          ),
        );
        for (const [j, m] of metas.entries()) {
          const id = ids[i + j]!;
          if (!m || m.KeyManager === 'AWS') continue; // AWS-managed keys are not ours to use
          yield toInfo(id, m, names.get(id));
        }
      }
      marker = out.Truncated ? out.NextMarker : undefined;
    } while (marker);
  }

  importRefusal(kind: KeyMaterialForImport['kind'], spec: KeyMaterialForImport['spec']): string | undefined {
    const held = kind === 'symmetric' ? spec === 'aes256' : (kind === 'signing' ? SIGNING_SPECS : ENCRYPTION_SPECS)[spec as never];
    if (!held) return `AWS KMS cannot import a ${spec} ${kind} key`;
    if (!this.importable.has(spec)) {
      const what = this.importable.size ? `imports only ${[...this.importable].join(', ')} keys` : 'imports no key material';
      return `this AWS KMS endpoint ${what} (its connection's import= setting), not ${spec}`;
    }
    return undefined;
  }

  async importKey(material: KeyMaterialForImport, name?: string, o?: CallOptions): Promise<string> {
    const refused = this.importRefusal(material.kind, material.spec);
    if (refused) throw err('UNSUPPORTED', refused);
    let keySpec: string;
    let usage: string;
    if (material.kind === 'symmetric') {
      if (material.spec !== 'aes256' || material.secret.length !== 32) {
        throw err('INVALID_INPUT', 'AWS KMS imports symmetric keys of exactly 32 bytes (aes256)');
      }
      keySpec = 'SYMMETRIC_DEFAULT';
      usage = 'ENCRYPT_DECRYPT';
    } else {
      const s =
        material.kind === 'signing' ? SIGNING_SPECS[material.spec as SigningKeySpec] : ENCRYPTION_SPECS[material.spec as EncryptionKeySpec];
      if (!s) throw err('UNSUPPORTED', `AWS KMS cannot import a ${material.spec} ${material.kind} key`);
      // checked here, before a KMS key is made: not every KMS compares the material with the key spec
      // (LocalStack imported a P-384 key into an ECC_NIST_P256 key and signed with it)
      let actual: string;
      try {
        actual = keyTypeOf(createPrivateKey({ key: material.secret, format: 'der', type: 'pkcs8' }));
      } catch (e) {
        throw err(
          'INVALID_INPUT',
          `the ${material.spec} key to import is not a usable PKCS#8 DER private key${isKeyportError(e) ? ` (${e.message})` : ''}`,
        );
      }
      if (actual !== material.spec)
        throw err('INVALID_INPUT', `the private key to import is ${actual}, not ${material.spec}: import it as ${actual}`);
      keySpec = s;
      usage = material.kind === 'signing' ? 'SIGN_VERIFY' : 'ENCRYPT_DECRYPT';
    }
    const what = material.kind === 'symmetric' ? 'symmetric key import' : `${material.spec} private key import (RSA_AES_KEY_WRAP_SHA_256)`;
    let keyId: string;
    try {
      keyId = await this.create(keySpec, usage, undefined, 'EXTERNAL', o, name);
    } catch (e) {
      // every CreateKey parameter is the driver's own, so a refusal is the endpoint's limit, not the
      // caller's input (local-kms makes EXTERNAL keys only of SYMMETRIC_DEFAULT: ValidationException)
      if (isKeyportError(e, 'INVALID_INPUT') || isKeyportError(e, 'UNSUPPORTED')) {
        throw err(
          'UNSUPPORTED',
          `this AWS KMS endpoint does not support ${what}: it refused CreateKey with Origin EXTERNAL and KeySpec ${keySpec} ` +
            `(${e.message}): generate the key in the KMS instead, or use a KMS with BYOK import`,
        );
      }
      throw e;
    }
    let step = 'GetParametersForImport';
    try {
      const symmetric = material.kind === 'symmetric';
      const params = await this.call<{ ImportToken?: Uint8Array; PublicKey?: Uint8Array }>(
        'GetParametersForImport',
        new this.sdk.GetParametersForImportCommand({
          KeyId: keyId,
          WrappingAlgorithm: (symmetric ? 'RSAES_OAEP_SHA_256' : 'RSA_AES_KEY_WRAP_SHA_256') as never,
          WrappingKeySpec: (symmetric ? 'RSA_2048' : 'RSA_4096') as never,
        }),
        o,
      );
      if (!params.ImportToken || !params.PublicKey) throw err('INTERNAL', 'AWS KMS GetParametersForImport returned no wrapping key');
      const wrappingKey = createPublicKey({ key: Buffer.from(params.PublicKey), format: 'der', type: 'spki' });
      // RSA_AES_KEY_WRAP_SHA_256: RSA-OAEP(ephemeral AES-256 key) || AES-KWP(PKCS#8) (RFC 5649)
      const wrapped = symmetric
        ? publicEncrypt({ key: wrappingKey, padding: C.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, material.secret)
        : rsaAesKeyWrap(wrappingKey, material.secret);
      step = 'ImportKeyMaterial';
      await this.call(
        'ImportKeyMaterial',
        new this.sdk.ImportKeyMaterialCommand({
          KeyId: keyId,
          ImportToken: params.ImportToken,
          EncryptedKeyMaterial: wrapped,
          ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE',
        }),
        o,
      );
      step = 'naming';
      if (name !== undefined) await this.nameKey(keyId, name, o);
      return keyId;
    } catch (e) {
      // every step was retried (throttling while the deadline allows) with this same key: what fails
      // here is final, so the key without material is not left behind
      if (step !== 'naming') await this.discard(keyId);
      // an endpoint without import answers the import calls with an error page (moto: HTTP 500 HTML) or a
      // validation/unsupported error; credentials, permissions, throttling and timeouts keep their codes
      const keep: string[] = ['AUTH', 'PERMISSION', 'THROTTLED', 'TIMEOUT', 'NOT_FOUND', 'KEY_DISABLED'];
      if (
        step !== 'naming' &&
        isKeyportError(e) &&
        !keep.includes(e.code) &&
        !(e.code === 'UNAVAILABLE' && !/JSON|Deserializ|<!doctype|<html/i.test(e.message))
      ) {
        throw err(
          'UNSUPPORTED',
          `this AWS KMS endpoint does not support ${what} (${step} failed: ${e.code}): generate the key in the KMS instead, or use a KMS with BYOK import`,
        );
      }
      if (isKeyportError(e, 'EXISTS') && name !== undefined)
        throw err('EXISTS', `AWS KMS alias 'alias/${name}' already exists: pick another name or delete the alias`);
      throw e;
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

interface KeyMeta {
  KeyId?: string;
  Arn?: string;
  KeyState?: string;
  Enabled?: boolean;
  KeyUsage?: string;
  KeySpec?: string;
  CustomerMasterKeySpec?: string;
  KeyManager?: string;
}

function toInfo(id: string, m: KeyMeta, name?: string): DriverKeyInfo {
  const kind: DriverKeyInfo['kind'] =
    m.KeySpec === 'SYMMETRIC_DEFAULT'
      ? 'symmetric'
      : m.KeyUsage === 'SIGN_VERIFY'
        ? 'signing'
        : m.KeyUsage === 'ENCRYPT_DECRYPT'
          ? 'encryption'
          : undefined;
  const spec = m.KeySpec === 'SYMMETRIC_DEFAULT' ? 'aes256' : (FROM_AWS_SPEC[m.KeySpec ?? ''] ?? m.KeySpec);
  const state: DriverKeyInfo['state'] =
    m.KeyState === 'Enabled'
      ? 'enabled'
      : m.KeyState === 'Disabled'
        ? 'disabled'
        : m.KeyState === 'PendingDeletion'
          ? 'pending-deletion'
          : 'unknown';
  return { keyId: id, ...(name ? { name } : {}), ...(kind ? { kind } : {}), ...(spec ? { spec } : {}), state };
}

/** the signing algorithms keyport may use with a key of this AWS key spec */
export function algorithmsForAwsSpec(awsSpec: string): SigningAlgoSpec[] {
  return ALGO_FOR_SPEC[awsSpec] ?? [];
}
