/**
 * `awssm:region=R[;endpoint=URL][;prefix=P][;kms-key-id=K][;profile=…|access-key-id=…;secret-access-key=…][;timeout-ms=10000]`
 * AWS Secrets Manager as a RecordStore (@aws-sdk/client-secrets-manager, loaded lazily).
 *
 * Layout (one secret per key), chosen with `layout=`:
 *   secret name   = PREFIX + key name            (PREFIX defaults to '', as KES names secrets by key name)
 *   layout=kes (the default, the contract's "KES layout"): SecretString = the KES stored key format
 *                   (base64 protobuf KeyVersion), exactly what KES's AWS Secrets Manager keystore writes,
 *                   so KES and keyport share the secrets; it holds one aes256 version per key (like kes-fs)
 *   layout=keyport: SecretString = JSON of the keyport KeyRecord (every key type, versions, sealed or
 *                   external secrets): {"name","type","purpose","usage","state","createdAt",
 *                   "createdBy","meta"?,"versions":[{"version","createdAt","publicKey"?,"fingerprint",
 *                   "clear"? | "sealed"? | "external"?}]}
 *   KmsKeyId      = kms-key-id when given (the key Secrets Manager encrypts the secret with), else AWS's default
 *   store settings (getMeta/setMeta) = one secret `${PREFIX}.keyport-meta` holding a JSON object of strings;
 *                   '.keyport-meta' is not a valid key name, so it never clashes with a key and is never listed.
 *
 * The two layouts do not read each other's secrets; `keyport migrate` converts between them.
 *
 * Semantics: create = CreateSecret (ResourceExistsException -> EXISTS); replace = PutSecretValue (a new
 * AWSCURRENT version: readers see the old or the new record); delete = DeleteSecret with
 * ForceDeleteWithoutRecovery; list pages through ListSecrets with a name filter, keeps the names that
 * really start with the prefix (AWS's name filter ignores case) and returns them in byte order; putMany
 * writes each record atomically (no multi-secret transaction).
 */
import { err, isKeyportError } from '../errors.js';
import { cancelled, checkCancelled } from '../cancel.js';
import { awsParams, callOptions, clientConfig, decodeXmlErrors, mapAwsError, type AwsParams } from '../kms/aws/common.js';
import { isValidName } from '../keys/names.js';
import { parseRecord } from './record.js';
import { decodeKesKey, encodeKesKey } from './kes-format.js';
import { kesKeyToRecord, recordToKesKey } from './kes-fs.js';
import type { KeyRecord, ListOptions, ListPage, RecordStore, StoreCallOptions } from './types.js';

type Sm = typeof import('@aws-sdk/client-secrets-manager');
const SVC = 'AWS Secrets Manager';

export async function openAwsSmStore(params: Record<string, string>, uri: string): Promise<RecordStore> {
  const p = awsParams(params, 'awssm');
  const prefix = params['prefix'] ?? '';
  if (!/^[A-Za-z0-9/_+=.@-]*$/.test(prefix) || prefix.length > 400) {
    throw err('USAGE', `awssm: prefix '${prefix}' has characters Secrets Manager does not allow in names (use A-Z a-z 0-9 / _ + = . @ -)`);
  }
  let sdk: Sm;
  try {
    sdk = await import('@aws-sdk/client-secrets-manager');
  } catch (e) {
    throw err(
      'UNSUPPORTED',
      `awssm: @aws-sdk/client-secrets-manager cannot be loaded (${(e as Error).message.split('\n')[0]}): install it`,
    );
  }
  const client = new sdk.SecretsManagerClient(clientConfig(p) as import('@aws-sdk/client-secrets-manager').SecretsManagerClientConfig);
  decodeXmlErrors(client.middlewareStack); // moto-style XML errors (auth, IAM) get their AWS error names
  const layout = params['layout'] ?? 'kes';
  if (layout !== 'kes' && layout !== 'keyport') throw err('USAGE', `awssm: layout must be 'kes' or 'keyport', got '${layout}'`);
  return new AwsSmStore(sdk, client, p, prefix, params['kms-key-id'] || undefined, uri, layout);
}

class AwsSmStore implements RecordStore {
  get capabilities() {
    // the KES layout holds what a KES keystore does (migration plans refuse the rest up front)
    return { transactions: false, kind: 'awssm', kesOnly: this.layout === 'kes' };
  }

  private encode(rec: KeyRecord): string {
    return this.layout === 'kes' ? encodeKesKey(recordToKesKey(rec)).toString('latin1') : JSON.stringify(rec);
  }

  private decode(name: string, text: string): KeyRecord {
    if (this.layout === 'kes') return kesKeyToRecord(name, decodeKesKey(Buffer.from(text, 'latin1')));
    const rec = parseRecord(text, `key '${name}'`);
    if (rec.name !== name) throw err('INVALID_INPUT', `key '${name}': the stored record names another key ('${rec.name}')`);
    return rec;
  }

  private readonly metaName: string;
  constructor(
    private readonly sdk: Sm,
    private readonly client: InstanceType<Sm['SecretsManagerClient']>,
    private readonly p: AwsParams,
    private readonly prefix: string,
    private readonly kmsKeyId: string | undefined,
    readonly uri: string,
    private readonly layout: 'kes' | 'keyport',
  ) {
    this.metaName = `${prefix}.keyport-meta`;
  }

  /** one request, bounded by timeout-ms and cancelled (the SDK aborts it) when the caller's signal fires */
  private async call<T>(what: string, cmd: unknown, o?: StoreCallOptions): Promise<T> {
    const bounded = callOptions(this.p);
    checkCancelled(`${SVC} ${what}`, o?.signal);
    const abortSignal = o?.signal ? AbortSignal.any([bounded.abortSignal, o.signal]) : bounded.abortSignal;
    try {
      return (await this.client.send(cmd as never, { abortSignal })) as T;
    } catch (e) {
      if (o?.signal?.aborted) throw cancelled(`${SVC} ${what}`, o.signal);
      const k = mapAwsError(e, what, SVC);
      // AWS keeps a deleted name reserved for a short while after a forced delete
      if (/scheduled for deletion|marked for deletion/i.test(k.message))
        return Promise.reject(err('CONFLICT', `${SVC} ${what}: the secret name is still being deleted: retry shortly`));
      throw k;
    }
  }

  private secretName(name: string): string {
    return this.prefix + name;
  }

  private async createSecret(name: string, value: string, what: string, o?: StoreCallOptions): Promise<void> {
    await this.call(
      `CreateSecret '${what}'`,
      new this.sdk.CreateSecretCommand({
        Name: name,
        SecretString: value,
        Description: 'keyport key record',
        ...(this.kmsKeyId ? { KmsKeyId: this.kmsKeyId } : {}),
      }),
      o,
    );
  }

  async create(rec: KeyRecord, o?: StoreCallOptions): Promise<void> {
    try {
      await this.createSecret(this.secretName(rec.name), this.encode(rec), rec.name, o);
    } catch (e) {
      if (isKeyportError(e, 'EXISTS')) throw err('EXISTS', `key '${rec.name}' already exists`);
      throw e;
    }
  }

  private async readSecret(secretName: string, what: string, o?: StoreCallOptions): Promise<string | undefined> {
    try {
      const out = await this.call<{ SecretString?: string; SecretBinary?: Uint8Array }>(
        `GetSecretValue '${what}'`,
        new this.sdk.GetSecretValueCommand({ SecretId: secretName }),
        o,
      );
      if (out.SecretString !== undefined) return out.SecretString;
      if (out.SecretBinary !== undefined) return Buffer.from(out.SecretBinary).toString('utf8');
      throw err('INVALID_INPUT', `${what}: the secret has no value`);
    } catch (e) {
      // a secret pending deletion answers InvalidRequestException on read: it is gone for us
      if (isKeyportError(e, 'NOT_FOUND') || (isKeyportError(e) && /deleted|deletion/i.test(e.message))) return undefined;
      throw e;
    }
  }

  async get(name: string, o?: StoreCallOptions): Promise<KeyRecord> {
    const text = await this.readSecret(this.secretName(name), name, o);
    if (text === undefined) throw err('NOT_FOUND', `key '${name}' does not exist`);
    return this.decode(name, text);
  }

  /** every key name under the store prefix (plus an extra name prefix), sorted in byte order */
  private async allNames(extra: string, o?: StoreCallOptions): Promise<string[]> {
    const full = this.prefix + extra;
    const names: string[] = [];
    let token: string | undefined;
    do {
      const out = await this.call<{ SecretList?: { Name?: string; DeletedDate?: Date }[]; NextToken?: string }>(
        'ListSecrets',
        new this.sdk.ListSecretsCommand({
          MaxResults: 100,
          ...(full ? { Filters: [{ Key: 'name', Values: [full] }] } : {}),
          ...(token ? { NextToken: token } : {}),
        }),
        o,
      );
      for (const s of out.SecretList ?? []) {
        if (!s.Name || s.DeletedDate || !s.Name.startsWith(full)) continue; // AWS's name filter ignores case
        const n = s.Name.slice(this.prefix.length);
        if (isValidName(n)) names.push(n);
      }
      token = out.NextToken || undefined;
    } while (token);
    names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return names.filter((n, i) => i === 0 || n !== names[i - 1]);
  }

  async list(opts: ListOptions & StoreCallOptions = {}): Promise<ListPage> {
    const limit = Math.max(1, opts.limit ?? 1000);
    const after = opts.after ?? '';
    const names = (await this.allNames(opts.prefix ?? '', opts)).filter((n) => n > after);
    if (names.length > limit) return { names: names.slice(0, limit), next: names[limit - 1] };
    return { names };
  }

  async delete(name: string, o?: StoreCallOptions): Promise<void> {
    const sn = this.secretName(name);
    // ForceDeleteWithoutRecovery does not fail for a missing secret on AWS: look first
    try {
      const d = await this.call<{ DeletedDate?: Date }>(
        `DescribeSecret '${name}'`,
        new this.sdk.DescribeSecretCommand({ SecretId: sn }),
        o,
      );
      if (d.DeletedDate) throw err('NOT_FOUND', `key '${name}' does not exist`);
    } catch (e) {
      if (isKeyportError(e, 'NOT_FOUND')) throw err('NOT_FOUND', `key '${name}' does not exist`);
      throw e;
    }
    try {
      await this.call(`DeleteSecret '${name}'`, new this.sdk.DeleteSecretCommand({ SecretId: sn, ForceDeleteWithoutRecovery: true }), o);
    } catch (e) {
      if (isKeyportError(e, 'NOT_FOUND')) throw err('NOT_FOUND', `key '${name}' does not exist`);
      throw e;
    }
  }

  private async putValue(secretName: string, value: string, what: string, o?: StoreCallOptions): Promise<void> {
    await this.call(`PutSecretValue '${what}'`, new this.sdk.PutSecretValueCommand({ SecretId: secretName, SecretString: value }), o);
  }

  async replace(rec: KeyRecord, o?: StoreCallOptions): Promise<void> {
    try {
      await this.putValue(this.secretName(rec.name), this.encode(rec), rec.name, o);
    } catch (e) {
      if (isKeyportError(e, 'NOT_FOUND')) throw err('NOT_FOUND', `key '${rec.name}' does not exist`);
      throw e;
    }
  }

  /** create-or-replace one secret atomically */
  private async upsert(secretName: string, value: string, what: string, o?: StoreCallOptions): Promise<void> {
    for (let i = 0; i < 3; i++) {
      try {
        await this.putValue(secretName, value, what, o);
        return;
      } catch (e) {
        if (!isKeyportError(e, 'NOT_FOUND')) throw e;
      }
      try {
        await this.createSecret(secretName, value, what, o);
        return;
      } catch (e) {
        if (!isKeyportError(e, 'EXISTS')) throw e; // created meanwhile: put again
      }
    }
    throw err('CONFLICT', `${SVC}: '${what}' keeps appearing and disappearing: retry`);
  }

  async putMany(recs: KeyRecord[], meta?: Record<string, string | undefined>, o?: StoreCallOptions): Promise<void> {
    for (const r of recs) await this.upsert(this.secretName(r.name), this.encode(r), r.name, o);
    if (meta && Object.keys(meta).length > 0) await this.updateMeta(meta, o);
  }

  private async readMeta(o?: StoreCallOptions): Promise<Record<string, string>> {
    const text = await this.readSecret(this.metaName, 'store settings', o);
    if (text === undefined) return {};
    try {
      const v = JSON.parse(text) as unknown;
      if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, string>;
    } catch {
      /* fall through */
    }
    throw err('INVALID_INPUT', `${SVC}: the settings secret '${this.metaName}' is not a JSON object: fix or delete it`);
  }

  private async updateMeta(changes: Record<string, string | undefined>, o?: StoreCallOptions): Promise<void> {
    const m = await this.readMeta(o);
    for (const [k, v] of Object.entries(changes)) {
      if (v === undefined) delete m[k];
      else m[k] = v;
    }
    await this.upsert(this.metaName, JSON.stringify(m), 'store settings', o);
  }

  async getMeta(key: string, o?: StoreCallOptions): Promise<string | undefined> {
    return (await this.readMeta(o))[key];
  }

  async setMeta(key: string, value: string | undefined, o?: StoreCallOptions): Promise<void> {
    await this.updateMeta({ [key]: value }, o);
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
