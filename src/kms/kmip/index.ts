/**
 * `kmip:host=H;port=P;cert=CLIENT.pem;key=CLIENT-KEY.pem;ca=CA.pem[;server-name=N][;timeout=30s]`
 * A KMIP server (verified against PyKMIP 0.11) through keyport's own TTLV codec and TLS client. A key
 * URI adds `key-id=UID` (the KMIP Unique Identifier).
 *
 * What is claimed is what PyKMIP really does (see the report in test/kms/kmip.test.ts):
 *  - symmetric keys: Create AES-256 (+ Activate); Encrypt/Decrypt with AES-256-GCM. The driver makes
 *    the 96-bit IV itself and sends it; ciphertext framing is  iv (12 bytes) || ct || tag (16 bytes),
 *    with the fixed additional data "keyport-kmip-wrap-v1" bound into the tag.
 *  - signing: CreateKeyPair RSA-2048/3072, Sign with RSA-PSS over SHA-256 (MGF1-SHA-256). PyKMIP signs
 *    PSS with the MAXIMUM salt length (emLen - 34 bytes), not the 32-byte salt keyport's
 *    rsa-pss-sha256 verifier demands, so signing is not claimed in supportedSigning*Specs while
 *    PSS_SALT_IS_KEYPORTS is false; sign() still works and its signatures verify as RSASSA-PSS with
 *    that salt length (or salt auto-detection). PyKMIP cannot create EC key pairs nor sign with ECDSA.
 *  - asymmetric decryption: PyKMIP's Decrypt only accepts symmetric keys, so no encryption specs are
 *    claimed; generateEncryptionKeyPair and decryptAsymmetric fail with UNSUPPORTED.
 *  - a key pair's two objects are tied together by a shared Object Group "keyport-pair:<random>"
 *    (PyKMIP sets no Link attributes); getPublicKey(private UID) finds the public key through it.
 *  - deleteKey = Revoke (cessation of operation, when Active) then Destroy, for both halves of a pair.
 *  - listKeys = Locate symmetric and private keys + GetAttributes; importKey = Register (+ Activate).
 */
import { readFileSync } from 'node:fs';
import { createPrivateKey, createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { err, isKeyportError, KeyportError } from '../../errors.js';
import { parseDuration } from '../../config/duration.js';
import type {
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
import { KmipClient, type KmipClientOptions } from './client.js';
import {
  BlockCipherMode,
  CryptographicAlgorithm,
  HashingAlgorithm,
  KeyFormatType,
  NameType,
  ObjectType,
  Operation,
  PaddingMethod,
  QueryFunction,
  RevocationReasonCode,
  State,
  Tag,
  UsageMask,
} from './tags.js';
import { byteString, enumeration, find, findAll, integer, need, structure, textString, type TtlvItem } from './ttlv.js';

/** flip when keyport's rsa-pss-sha256 verifier accepts any salt length (PyKMIP uses the maximum) */
export const PSS_SALT_IS_KEYPORTS = false;

const GCM_IV = 12;
const MAX_SYMMETRIC_INPUT = 64 * 1024;
const GCM_TAG = 16;
const WRAP_AAD = Buffer.from('keyport-kmip-wrap-v1');
const PAIR_GROUP_PREFIX = 'keyport-pair:';

export const factory: DriverFactory = async (params, uri) => {
  const host = params['host'];
  if (!host)
    throw err('USAGE', `kmip: needs host=, e.g. kmip:host=kmip.example.com;port=5696;cert=client.pem;key=client.key;ca=ca.pem (${uri})`);
  const portText = params['port'] ?? '5696';
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535) throw err('USAGE', `kmip: port=${portText} is not a TCP port`);
  const file = (k: string): Buffer => {
    const p = params[k];
    if (!p) throw err('USAGE', `kmip: needs ${k}= (a PEM file): KMIP servers authenticate clients by TLS certificate`);
    try {
      return readFileSync(p);
    } catch (e) {
      throw err('USAGE', `kmip: cannot read ${k}=${p} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  };
  const opts: KmipClientOptions = {
    host,
    port,
    cert: file('cert'),
    key: file('key'),
    ca: file('ca'),
    ...(params['server-name'] ? { serverName: params['server-name'] } : {}),
    timeoutMs: params['timeout'] ? parseDuration(params['timeout'], 'kmip timeout') : 30_000,
  };
  return new KmipDriver(new KmipClient(opts));
};

// ------------------------------------------------------------------ attribute helpers

const attr = (name: string, value: TtlvItem): TtlvItem =>
  structure(Tag.Attribute, [textString(Tag.AttributeName, name), { ...value, tag: Tag.AttributeValue }]);
const nameAttr = (name: string) =>
  attr(
    'Name',
    structure(Tag.AttributeValue, [textString(Tag.NameValue, name), enumeration(Tag.NameType, NameType.UninterpretedTextString)]),
  );
const algAttr = (alg: number) => attr('Cryptographic Algorithm', enumeration(0, alg));
const lenAttr = (len: number) => attr('Cryptographic Length', integer(0, len));
const maskAttr = (mask: number) => attr('Cryptographic Usage Mask', integer(0, mask));
const groupAttr = (group: string) => attr('Object Group', textString(0, group));
const objTypeAttr = (t: number) => attr('Object Type', enumeration(0, t));
const template = (tag: number, attrs: (TtlvItem | undefined)[]) => structure(tag, attrs);
const uid = (id: string) => textString(Tag.UniqueIdentifier, id);

const keyBlock = (format: number, material: Buffer, alg: number, len: number) =>
  structure(Tag.KeyBlock, [
    enumeration(Tag.KeyFormatType, format),
    structure(Tag.KeyValue, [byteString(Tag.KeyMaterial, material)]),
    enumeration(Tag.CryptographicAlgorithm, alg),
    integer(Tag.CryptographicLength, len),
  ]);

interface Attrs {
  objectType?: number;
  state?: number;
  algorithm?: number;
  length?: number;
  usageMask?: number;
  names: string[];
  groups: string[];
}

function readAttributes(payload: TtlvItem): Attrs {
  const out: Attrs = { names: [], groups: [] };
  for (const a of findAll(payload, Tag.Attribute)) {
    const name = need(a, Tag.AttributeName, 'TextString', 'Attribute Name').value;
    const v = a.type === 'Structure' ? a.value.find((c) => c.tag === Tag.AttributeValue) : undefined;
    if (!v) continue;
    switch (name) {
      case 'Object Type':
        if (v.type === 'Enumeration') out.objectType = v.value;
        break;
      case 'State':
        if (v.type === 'Enumeration') out.state = v.value;
        break;
      case 'Cryptographic Algorithm':
        if (v.type === 'Enumeration') out.algorithm = v.value;
        break;
      case 'Cryptographic Length':
        if (v.type === 'Integer') out.length = v.value;
        break;
      case 'Cryptographic Usage Mask':
        if (v.type === 'Integer') out.usageMask = v.value;
        break;
      case 'Name': {
        const n = find(v, Tag.NameValue, 'TextString');
        if (n) out.names.push(n.value);
        break;
      }
      case 'Object Group':
        if (v.type === 'TextString') out.groups.push(v.value);
        break;
    }
  }
  return out;
}

function specOf(algorithm: number | undefined, length: number | undefined): string | undefined {
  if (algorithm === CryptographicAlgorithm.AES && length === 256) return 'aes256';
  if (algorithm === CryptographicAlgorithm.RSA && (length === 2048 || length === 3072)) return `rsa-${length}`;
  return undefined;
}

function stateName(s: number | undefined): DriverKeyInfo['state'] {
  if (s === State.Active) return 'enabled';
  if (s === State.PreActive || s === State.Deactivated || s === State.Compromised) return 'disabled';
  if (s === State.Destroyed || s === State.DestroyedCompromised) return 'pending-deletion';
  return 'unknown';
}

const RSA_SPECS = new Set<string>(['rsa-2048', 'rsa-3072']);

class KmipDriver implements Driver {
  readonly name = 'kmip';
  constructor(private client: KmipClient) {}

  async health(): Promise<Health> {
    try {
      const p = await this.client.call(Operation.Query, [enumeration(Tag.QueryFunction, QueryFunction.Operations)]);
      const ops = new Set(findAll(p, Tag.Operation).map((o) => (o.type === 'Enumeration' ? o.value : -1)));
      const missing = (['Create', 'Get', 'Encrypt', 'Decrypt', 'Activate', 'Destroy'] as const).filter((n) => !ops.has(Operation[n]));
      if (missing.length) return { state: 'degraded', reason: `KMIP server ${this.client.label} does not offer ${missing.join(', ')}` };
      return { state: 'ok' };
    } catch (e) {
      const msg = e instanceof Error ? e.message.split('\n')[0]! : String(e);
      if (isKeyportError(e, 'AUTH') || isKeyportError(e, 'USAGE')) return { state: 'fatal', reason: msg };
      return { state: 'failed', reason: msg };
    }
  }

  supportedSigningKeySpecs(): SigningKeySpec[] {
    return PSS_SALT_IS_KEYPORTS ? ['rsa-2048', 'rsa-3072'] : [];
  }
  supportedSigningAlgoSpecs(): SigningAlgoSpec[] {
    return PSS_SALT_IS_KEYPORTS ? ['rsa-pss-sha256'] : [];
  }
  supportedEncryptionKeySpecs(): EncryptionKeySpec[] {
    return []; // PyKMIP's Decrypt refuses asymmetric keys
  }
  supportedEncryptionAlgoSpecs(): EncryptionAlgoSpec[] {
    return [];
  }

  // ---------------------------------------------------------------- create

  private async assertNameFree(name: string | undefined): Promise<void> {
    if (name === undefined) return;
    const found = await this.locate([nameAttr(name)]);
    if (found.length) throw err('EXISTS', `KMIP server ${this.client.label} already has an object named '${name}' (${found[0]})`);
  }

  private async activate(id: string): Promise<void> {
    await this.client.call(Operation.Activate, [uid(id)]);
  }

  async generateSymmetricKey(name?: string): Promise<string> {
    await this.assertNameFree(name);
    const p = await this.client.call(Operation.Create, [
      enumeration(Tag.ObjectType, ObjectType.SymmetricKey),
      template(Tag.TemplateAttribute, [
        algAttr(CryptographicAlgorithm.AES),
        lenAttr(256),
        maskAttr(UsageMask.Encrypt | UsageMask.Decrypt),
        name !== undefined ? nameAttr(name) : undefined,
      ]),
    ]);
    const id = need(p, Tag.UniqueIdentifier, 'TextString', 'Unique Identifier').value;
    await this.activate(id);
    return id;
  }

  async generateSigningKeyPair(spec: SigningKeySpec, name?: string): Promise<string> {
    if (!RSA_SPECS.has(spec))
      throw err('UNSUPPORTED', `KMIP (PyKMIP) creates and signs with RSA key pairs only, not ${spec}; use rsa-2048 or rsa-3072`);
    await this.assertNameFree(name);
    const bits = spec === 'rsa-2048' ? 2048 : 3072;
    const group = PAIR_GROUP_PREFIX + randomBytes(12).toString('hex');
    const p = await this.client.call(Operation.CreateKeyPair, [
      template(Tag.CommonTemplateAttribute, [algAttr(CryptographicAlgorithm.RSA), lenAttr(bits), groupAttr(group)]),
      template(Tag.PrivateKeyTemplateAttribute, [maskAttr(UsageMask.Sign), name !== undefined ? nameAttr(name) : undefined]),
      template(Tag.PublicKeyTemplateAttribute, [maskAttr(UsageMask.Verify)]),
    ]);
    const priv = need(p, Tag.PrivateKeyUniqueIdentifier, 'TextString', 'Private Key Unique Identifier').value;
    need(p, Tag.PublicKeyUniqueIdentifier, 'TextString', 'Public Key Unique Identifier');
    await this.activate(priv);
    return priv;
  }

  async generateEncryptionKeyPair(spec: EncryptionKeySpec): Promise<string> {
    throw err(
      'UNSUPPORTED',
      `KMIP (PyKMIP) cannot decrypt with asymmetric keys, so it cannot hold a ${spec} encryption key; use a symmetric wrapper key`,
    );
  }

  async importKey(m: KeyMaterialForImport, name?: string): Promise<string> {
    if (m.kind === 'symmetric') {
      if (m.secret.length !== 32) throw err('INVALID_INPUT', 'a symmetric key to import is 32 bytes (AES-256)');
      await this.assertNameFree(name);
      const p = await this.client.call(Operation.Register, [
        enumeration(Tag.ObjectType, ObjectType.SymmetricKey),
        template(Tag.TemplateAttribute, [maskAttr(UsageMask.Encrypt | UsageMask.Decrypt), name !== undefined ? nameAttr(name) : undefined]),
        structure(Tag.SymmetricKey, [keyBlock(KeyFormatType.Raw, m.secret, CryptographicAlgorithm.AES, 256)]),
      ]);
      const id = need(p, Tag.UniqueIdentifier, 'TextString', 'Unique Identifier').value;
      await this.activate(id);
      return id;
    }
    if (m.kind === 'encryption')
      throw err('UNSUPPORTED', 'KMIP (PyKMIP) cannot decrypt with asymmetric keys: import a signing or a symmetric key');
    if (!RSA_SPECS.has(m.spec)) throw err('UNSUPPORTED', `KMIP (PyKMIP) signs with RSA keys only, not ${m.spec}`);
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: m.secret, format: 'der', type: 'pkcs8' });
    } catch {
      throw err('INVALID_INPUT', 'the key to import is not a PKCS#8 DER private key');
    }
    const bits = key.asymmetricKeyDetails?.modulusLength;
    if (key.asymmetricKeyType !== 'rsa' || `rsa-${bits}` !== m.spec)
      throw err('INVALID_INPUT', `the key to import is not an ${m.spec} key`);
    await this.assertNameFree(name);
    const group = PAIR_GROUP_PREFIX + randomBytes(12).toString('hex');
    const pkcs8 = key.export({ format: 'der', type: 'pkcs8' });
    const spki = createPublicKey(key).export({ format: 'der', type: 'spki' });
    const pub = await this.client.call(Operation.Register, [
      enumeration(Tag.ObjectType, ObjectType.PublicKey),
      template(Tag.TemplateAttribute, [maskAttr(UsageMask.Verify), groupAttr(group)]),
      structure(Tag.PublicKey, [keyBlock(KeyFormatType.X509, spki, CryptographicAlgorithm.RSA, bits!)]),
    ]);
    const pubId = need(pub, Tag.UniqueIdentifier, 'TextString', 'Unique Identifier').value;
    let privId: string;
    try {
      const p = await this.client.call(Operation.Register, [
        enumeration(Tag.ObjectType, ObjectType.PrivateKey),
        template(Tag.TemplateAttribute, [maskAttr(UsageMask.Sign), groupAttr(group), name !== undefined ? nameAttr(name) : undefined]),
        structure(Tag.PrivateKey, [keyBlock(KeyFormatType.PKCS8, pkcs8, CryptographicAlgorithm.RSA, bits!)]),
      ]);
      privId = need(p, Tag.UniqueIdentifier, 'TextString', 'Unique Identifier').value;
    } catch (e) {
      await this.destroyOne(pubId).catch(() => undefined);
      throw e;
    }
    await this.activate(privId);
    return privId;
  }

  // ---------------------------------------------------------------- lookups

  private async locate(attrs: TtlvItem[]): Promise<string[]> {
    const p = await this.client.call(Operation.Locate, attrs);
    return findAll(p, Tag.UniqueIdentifier).flatMap((u) => (u.type === 'TextString' ? [u.value] : []));
  }

  private async attributes(id: string, names: string[]): Promise<Attrs> {
    const p = await this.client.call(Operation.GetAttributes, [uid(id), ...names.map((n) => textString(Tag.AttributeName, n))]);
    return readAttributes(p);
  }

  /** the public key object that belongs to a private key (or the object itself when it is public) */
  private async publicKeyIdOf(id: string): Promise<string> {
    const a = await this.attributes(id, ['Object Type', 'Object Group']);
    if (a.objectType === ObjectType.PublicKey) return id;
    if (a.objectType !== ObjectType.PrivateKey) throw err('KEY_USAGE', `KMIP object ${id} is not an asymmetric key: it has no public key`);
    const group = a.groups.find((g) => g.startsWith(PAIR_GROUP_PREFIX));
    if (!group) {
      throw err(
        'UNSUPPORTED',
        `KMIP private key ${id} has no keyport pair group, so its public key cannot be found; register keys created by keyport, or give the public key's id`,
      );
    }
    const found = await this.locate([objTypeAttr(ObjectType.PublicKey), groupAttr(group)]);
    if (found.length !== 1) throw err('NOT_FOUND', `the public key of KMIP private key ${id} is missing on the server`);
    return found[0]!;
  }

  async resolveKeyId(ref: string): Promise<string> {
    const byName = await this.locate([nameAttr(ref)]);
    if (byName.length === 1) return byName[0]!;
    if (byName.length > 1)
      throw err('CONFLICT', `KMIP server ${this.client.label} has ${byName.length} objects named '${ref}'; use the unique identifier`);
    await this.attributes(ref, ['State']); // NOT_FOUND when it is no identifier either
    return ref;
  }

  /**
   * What the object is, from its attributes (GetAttributes: Object Type, Cryptographic Algorithm and
   * Length, Cryptographic Usage Mask), for the registration check (src/keys/adopt.ts): an AES-128 key
   * is not keyport's aes256, a key whose usage mask lacks Encrypt/Decrypt cannot wrap, a private key
   * whose mask lacks Sign cannot sign. Verified against PyKMIP (test/cli/register-check.test.ts).
   */
  async describeKey(keyId: string): Promise<DriverKeyDescription> {
    const a = await this.attributes(keyId, ['Object Type', 'Cryptographic Algorithm', 'Cryptographic Length', 'Cryptographic Usage Mask']);
    const mask = a.usageMask;
    const has = (bits: number) => mask === undefined || (mask & bits) === bits;
    const ALGO: Record<number, string> = {
      [CryptographicAlgorithm.AES]: 'AES',
      [CryptographicAlgorithm.RSA]: 'RSA',
      [CryptographicAlgorithm.EC]: 'EC',
      [CryptographicAlgorithm.ECDSA]: 'ECDSA',
    };
    const OBJ: Record<number, string> = {
      [ObjectType.SymmetricKey]: 'symmetric key',
      [ObjectType.PrivateKey]: 'private key',
      [ObjectType.PublicKey]: 'public key',
    };
    const MASK_NAMES: [string, number][] = [...Object.entries(UsageMask), ['MACGenerate', 0x80], ['MACVerify', 0x100]];
    const named =
      mask === undefined
        ? ''
        : MASK_NAMES.filter(([, b]) => mask & b)
            .map(([n]) => n)
            .join('|');
    const flags = mask === undefined ? 'no usage mask' : `usage mask 0x${mask.toString(16)}${named ? ` (${named})` : ''}`;
    const native =
      `a KMIP ${OBJ[a.objectType ?? -1] ?? 'object'} ` +
      `(${ALGO[a.algorithm ?? -1] ?? 'unknown algorithm'}${a.length ? `-${a.length}` : ''}) with ${flags}`;
    const words = { sign: 'usage mask Sign', decrypt: 'usage mask Encrypt|Decrypt' };
    const spec = specOf(a.algorithm, a.length);
    if (a.objectType === ObjectType.SymmetricKey)
      return {
        keyId,
        ...(spec === 'aes256' ? { spec } : {}),
        sign: false,
        decrypt: has(UsageMask.Encrypt | UsageMask.Decrypt),
        native,
        words,
      };
    const asym = a.objectType === ObjectType.PrivateKey && spec && spec !== 'aes256' ? (spec as SigningKeySpec) : undefined;
    return {
      keyId,
      ...(asym ? { spec: asym } : {}),
      sign: a.objectType === ObjectType.PrivateKey && has(UsageMask.Sign),
      decrypt: a.objectType === ObjectType.PrivateKey && has(UsageMask.Decrypt),
      native,
      words,
    };
  }

  async keyExistsAndIsActive(keyId: string): Promise<void> {
    const a = await this.attributes(keyId, ['State']);
    if (a.state === State.Active) return;
    if (a.state === State.Destroyed || a.state === State.DestroyedCompromised) throw err('NOT_FOUND', `KMIP key ${keyId} is destroyed`);
    const what = a.state === State.PreActive ? 'not activated yet' : a.state === State.Compromised ? 'compromised' : 'deactivated';
    throw err('KEY_DISABLED', `KMIP key ${keyId} is ${what}; activate it on the KMIP server or use another key`);
  }

  async getPublicKey(keyId: string): Promise<DriverPublicKey> {
    const pubId = await this.publicKeyIdOf(keyId);
    const p = await this.client.call(Operation.Get, [uid(pubId)]);
    const obj = need(p, Tag.PublicKey, 'Structure', 'Public Key');
    const block = need(obj, Tag.KeyBlock, 'Structure', 'Key Block');
    const format = need(block, Tag.KeyFormatType, 'Enumeration', 'Key Format Type').value;
    const material = find(find(block, Tag.KeyValue, 'Structure'), Tag.KeyMaterial, 'ByteString');
    if (!material) throw err('UNSUPPORTED', `KMIP public key ${pubId} is not in a raw key format keyport reads (PKCS#1 or X.509)`);
    let key: KeyObject;
    try {
      if (format === KeyFormatType.PKCS1) key = createPublicKey({ key: material.value, format: 'der', type: 'pkcs1' });
      else if (format === KeyFormatType.X509) key = createPublicKey({ key: material.value, format: 'der', type: 'spki' });
      else throw new Error('format');
    } catch {
      throw err('UNSUPPORTED', `KMIP public key ${pubId} has key format ${format}, which keyport cannot read (PKCS#1 or X.509 only)`);
    }
    const spki = key.export({ format: 'der', type: 'spki' });
    const d = key.asymmetricKeyDetails;
    let spec: DriverPublicKey['spec'];
    if (key.asymmetricKeyType === 'rsa' && (d?.modulusLength === 2048 || d?.modulusLength === 3072)) spec = `rsa-${d.modulusLength}`;
    else if (key.asymmetricKeyType === 'ec' && d?.namedCurve === 'prime256v1') spec = 'ec-p256';
    else if (key.asymmetricKeyType === 'ec' && d?.namedCurve === 'secp384r1') spec = 'ec-p384';
    else if (key.asymmetricKeyType === 'ec' && d?.namedCurve === 'secp256k1') spec = 'secp256k1';
    else if (key.asymmetricKeyType === 'ed25519') spec = 'ed25519';
    else throw err('UNSUPPORTED', `KMIP public key ${pubId} is of a type keyport does not support`);
    return { spki, spec };
  }

  // ---------------------------------------------------------------- crypto

  async sign(keyId: string, data: Buffer, algo: SigningAlgoSpec): Promise<Buffer> {
    if (algo !== 'rsa-pss-sha256') throw err('UNSUPPORTED', `KMIP (PyKMIP) signs with RSA-PSS SHA-256 only, not ${algo}`);
    const p = await this.client.call(Operation.Sign, [
      uid(keyId),
      structure(Tag.CryptographicParameters, [
        enumeration(Tag.PaddingMethod, PaddingMethod.PSS),
        enumeration(Tag.HashingAlgorithm, HashingAlgorithm.SHA256),
        enumeration(Tag.CryptographicAlgorithm, CryptographicAlgorithm.RSA),
      ]),
      byteString(Tag.Data, data),
    ]);
    return need(p, Tag.SignatureData, 'ByteString', 'Signature Data').value;
  }

  async decryptAsymmetric(_keyId: string, _ciphertext: Buffer, algo: EncryptionAlgoSpec): Promise<Buffer> {
    throw err('UNSUPPORTED', `KMIP (PyKMIP) decrypts with symmetric keys only; ${algo} is not available`);
  }

  private gcmParams(): TtlvItem {
    return structure(Tag.CryptographicParameters, [
      enumeration(Tag.BlockCipherMode, BlockCipherMode.GCM),
      enumeration(Tag.CryptographicAlgorithm, CryptographicAlgorithm.AES),
      integer(Tag.TagLength, GCM_TAG),
    ]);
  }

  /** AES-256-GCM on the server; returns iv(12) || ciphertext || tag(16) */
  async encryptSymmetric(keyId: string, plaintext: Buffer): Promise<Buffer> {
    // a wrapper key seals key material (bytes to a few KiB); PyKMIP needs ~30 s for a MiB, so bulk
    // data is refused at once instead of tying up the connection
    if (plaintext.length > MAX_SYMMETRIC_INPUT)
      throw err('INVALID_INPUT', `KMIP encrypt takes at most ${MAX_SYMMETRIC_INPUT} bytes (key material), got ${plaintext.length}`);
    const iv = randomBytes(GCM_IV);
    const p = await this.client.call(Operation.Encrypt, [
      uid(keyId),
      this.gcmParams(),
      byteString(Tag.Data, plaintext),
      byteString(Tag.IvCounterNonce, iv),
      byteString(Tag.AuthenticatedEncryptionAdditionalData, WRAP_AAD),
    ]);
    const ct = need(p, Tag.Data, 'ByteString', 'Data').value;
    const tag = find(p, Tag.AuthenticatedEncryptionTag, 'ByteString')?.value;
    if (!tag || tag.length !== GCM_TAG)
      throw err('UNSUPPORTED', `KMIP server ${this.client.label} returned no 16-byte GCM tag; it must speak KMIP 1.4 for AES-GCM`);
    const echoedIv = find(p, Tag.IvCounterNonce, 'ByteString')?.value;
    if (echoedIv && !echoedIv.equals(iv))
      throw err('INTERNAL', `KMIP server ${this.client.label} encrypted with an IV other than the one sent`);
    if (ct.length !== plaintext.length)
      throw err('INTERNAL', `KMIP server ${this.client.label} returned a GCM ciphertext of the wrong length`);
    return Buffer.concat([iv, ct, tag]);
  }

  async decryptSymmetric(keyId: string, ciphertext: Buffer): Promise<Buffer> {
    if (ciphertext.length > MAX_SYMMETRIC_INPUT + GCM_IV + GCM_TAG)
      throw err('INVALID_CIPHERTEXT', 'KMIP ciphertext is larger than anything this driver encrypts');
    if (ciphertext.length < GCM_IV + GCM_TAG) throw err('INVALID_CIPHERTEXT', 'KMIP ciphertext is too short (iv || ct || tag expected)');
    const iv = ciphertext.subarray(0, GCM_IV);
    const tag = ciphertext.subarray(ciphertext.length - GCM_TAG);
    const ct = ciphertext.subarray(GCM_IV, ciphertext.length - GCM_TAG);
    const p = await this.client.call(Operation.Decrypt, [
      uid(keyId),
      this.gcmParams(),
      byteString(Tag.Data, Buffer.from(ct)),
      byteString(Tag.IvCounterNonce, Buffer.from(iv)),
      byteString(Tag.AuthenticatedEncryptionAdditionalData, WRAP_AAD),
      byteString(Tag.AuthenticatedEncryptionTag, Buffer.from(tag)),
    ]);
    return find(p, Tag.Data, 'ByteString')?.value ?? Buffer.alloc(0);
  }

  // ---------------------------------------------------------------- delete / list

  private async destroyOne(id: string): Promise<void> {
    const a = await this.attributes(id, ['State']);
    if (a.state === State.Active) {
      await this.client.call(Operation.Revoke, [
        uid(id),
        structure(Tag.RevocationReason, [enumeration(Tag.RevocationReasonCode, RevocationReasonCode.CessationOfOperation)]),
      ]);
    }
    await this.client.call(Operation.Destroy, [uid(id)]);
  }

  async deleteKey(keyId: string): Promise<void> {
    const a = await this.attributes(keyId, ['Object Type', 'Object Group']);
    let pubId: string | undefined;
    const group = a.groups.find((g) => g.startsWith(PAIR_GROUP_PREFIX));
    if (a.objectType === ObjectType.PrivateKey && group) {
      pubId = (await this.locate([objTypeAttr(ObjectType.PublicKey), groupAttr(group)]))[0];
    }
    await this.destroyOne(keyId);
    if (pubId !== undefined) {
      try {
        await this.destroyOne(pubId);
      } catch (e) {
        if (!(e instanceof KeyportError && e.code === 'NOT_FOUND')) throw e;
      }
    }
  }

  async *listKeys(): AsyncIterable<DriverKeyInfo> {
    for (const [type, kind] of [
      [ObjectType.SymmetricKey, 'symmetric'],
      [ObjectType.PrivateKey, 'signing'],
    ] as const) {
      const ids = await this.locate([objTypeAttr(type)]);
      for (const id of ids) {
        let a: Attrs;
        try {
          a = await this.attributes(id, ['State', 'Name', 'Cryptographic Algorithm', 'Cryptographic Length']);
        } catch (e) {
          if (isKeyportError(e, 'NOT_FOUND')) continue; // destroyed meanwhile
          throw e;
        }
        const spec = specOf(a.algorithm, a.length);
        yield {
          keyId: id,
          ...(a.names[0] !== undefined ? { name: a.names[0] } : {}),
          kind,
          ...(spec ? { spec } : {}),
          state: stateName(a.state),
        };
      }
    }
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
