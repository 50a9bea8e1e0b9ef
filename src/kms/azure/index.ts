/**
 * `azurekv:vault=https://NAME.vault.azure.net[;ca=PEM][;insecure=true][;retries=N][;purge=true]`
 * Azure Key Vault through @azure/keyvault-keys (loaded lazily). A key URI adds `key-id=NAME` (the
 * Azure key name, `NAME/VERSION`, or the full key identifier URL). `retries=N` (default 0) lets the
 * SDK retry too; by default keyport's one retry layer (src/kms/retry.ts, through instrument()) is the
 * only one, so attempts are not multiplied.
 *
 * Credentials, first match wins:
 *  - `dev-token=true`: a fixed dummy bearer token, for emulators that accept any token (lowkey-vault);
 *    it also turns off the SDK's check that the auth challenge's resource matches the vault host;
 *  - `access-token=TOKEN` or env AZURE_ACCESS_TOKEN: a static bearer token (e.g. from
 *    `az account get-access-token --resource https://vault.azure.net`);
 *  - `tenant-id`, `client-id`, `client-secret` (or AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET),
 *    else DefaultAzureCredential: only where the optional package @azure/identity is installed.
 *
 * What is claimed:
 *  - signing: EC P-256 (ES256), P-384 (ES384), P-256K (ES256K), RSA 2048/3072 (PS256, salt = 32 bytes).
 *    The digest is computed here; Azure signs the digest and returns raw r‖s for EC, which we return
 *    as DER. Ed25519 does not exist in Key Vault.
 *  - asymmetric decryption: RSA 2048/3072 with RSA-OAEP-256 (encryption is local, with the SPKI).
 *  - symmetric (wrapper) keys: a standard Key Vault has no AES keys (oct keys exist only in Managed HSM),
 *    so a "symmetric" key here is an RSA-3072 key restricted to wrapKey/unwrapKey. encryptSymmetric
 *    makes a fresh 256-bit data key, encrypts the plaintext locally with AES-256-GCM under it and has
 *    the vault wrap the data key with RSA-OAEP-256; decryptSymmetric has the vault unwrap it. Blob:
 *      0x01 | u16 wrapped-key length | wrapped key | 12-byte IV | ciphertext | 16-byte tag
 *    with AAD = "keyport-azure-wrap-v1" ‖ the first three fields. Any plaintext size works (private keys
 *    sealed by envelope protection are larger than one RSA-OAEP block).
 *  - importKey (BYOK as a plain JWK import) for the EC and RSA specs above; symmetric import is
 *    UNSUPPORTED (no oct keys in a standard vault).
 *  - deleteKey = soft delete (the key is recoverable for the vault's retention period; its name stays
 *    taken); `purge=true` also purges it, where the vault allows that.
 *  - listKeys = every page of listPropertiesOfKeys; keys made by keyport carry tags that name their
 *    kind and spec.
 * Azure key names allow only letters, digits and '-': a keyport name with '_' is refused (INVALID_NAME).
 */
import { createCipheriv, createDecipheriv, createHash, createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import type * as KV from '@azure/keyvault-keys';
import type { AccessToken, TokenCredential } from '@azure/core-auth';
import { err, isKeyportError, type KeyportError } from '../../errors.js';
import { rawToDer } from '../../crypto/ecdsa-encoding.js';
import { mapAzureError } from './errors.js';

export { mapAzureError } from './errors.js';
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

type Sdk = typeof import('@azure/keyvault-keys');
/** the JWK shape node:crypto reads and writes (base64url strings) */
type NodeJwk = {
  kty?: string;
  crv?: string;
  x?: string;
  y?: string;
  d?: string;
  n?: string;
  e?: string;
  p?: string;
  q?: string;
  dp?: string;
  dq?: string;
  qi?: string;
};

const DEV_TOKEN = 'keyport-dev-token';
const WRAP_VERSION = 0x01;
const WRAP_AAD = Buffer.from('keyport-azure-wrap-v1');
const GCM_IV = 12;
const GCM_TAG = 16;
const TAG_KIND = 'keyport-kind';
const TAG_SPEC = 'keyport-spec';
const NAME_RE = /^[0-9A-Za-z-]{1,127}$/;

// ------------------------------------------------------------------ factory

export const factory: DriverFactory = async (params, uri) => {
  const vault = params['vault'] ?? params['path'];
  if (!vault) throw err('USAGE', `azurekv: needs vault=URL, e.g. azurekv:vault=https://NAME.vault.azure.net (${uri})`);
  let vaultUrl: URL;
  try {
    vaultUrl = new URL(vault);
  } catch {
    throw err('USAGE', `azurekv: vault=${vault} is not a URL: use vault=https://NAME.vault.azure.net`);
  }
  if (vaultUrl.protocol !== 'https:')
    throw err('USAGE', `azurekv: vault=${vault} must be an https:// URL (Key Vault clients only send tokens over TLS)`);

  const bool = (k: string): boolean => {
    const v = params[k];
    if (v === undefined) return false;
    if (/^(true|1|yes)$/i.test(v)) return true;
    if (/^(false|0|no)$/i.test(v)) return false;
    throw err('USAGE', `azurekv: ${k}=${v} must be true or false`);
  };
  const devToken = bool('dev-token');
  const insecure = bool('insecure');
  const purge = bool('purge');
  const retriesText = params['retries'] ?? '0';
  if (!/^\d{1,2}$/.test(retriesText)) throw err('USAGE', `azurekv: retries=${retriesText} must be a small whole number`);

  let ca: Buffer | undefined;
  if (params['ca']) {
    try {
      ca = readFileSync(params['ca']);
    } catch (e) {
      throw err('USAGE', `azurekv: cannot read ca=${params['ca']} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  const agent =
    ca || insecure ? new Agent({ keepAlive: true, ...(ca ? { ca } : {}), ...(insecure ? { rejectUnauthorized: false } : {}) }) : undefined;

  const credential = await credentialFor(params, devToken);
  let sdk: Sdk;
  try {
    sdk = await import('@azure/keyvault-keys');
  } catch (e) {
    throw err('UNSUPPORTED', `azurekv: @azure/keyvault-keys is not installed (${(e as Error).message.split('\n')[0]})`);
  }
  const options: KV.KeyClientOptions = {
    disableChallengeResourceVerification: devToken || bool('disable-challenge-resource-verification'),
    retryOptions: { maxRetries: Number(retriesText), retryDelayInMs: 300, maxRetryDelayInMs: 3000 },
    userAgentOptions: { userAgentPrefix: 'keyport' },
    ...(agent ? { agent } : {}),
  };
  const client = new sdk.KeyClient(vaultUrl.origin, credential, options);
  return new AzureKeyVaultDriver(sdk, client, vaultUrl.origin, purge, agent);
};

function staticCredential(token: string): TokenCredential {
  return {
    getToken: async (): Promise<AccessToken> => ({ token, expiresOnTimestamp: Date.now() + 3_600_000 }),
  };
}

async function credentialFor(params: Record<string, string>, devToken: boolean): Promise<TokenCredential> {
  if (devToken) return staticCredential(DEV_TOKEN);
  const token = params['access-token'] ?? process.env['AZURE_ACCESS_TOKEN'];
  if (token) return staticCredential(token);
  // @azure/identity is optional: a computed specifier keeps it out of the type check and the bundle
  const identityModule = '@azure/identity';
  let identity: Record<string, new (...a: unknown[]) => TokenCredential>;
  try {
    identity = (await import(identityModule)) as typeof identity;
  } catch {
    throw err(
      'AUTH',
      'azurekv: no credentials: set AZURE_ACCESS_TOKEN (e.g. from `az account get-access-token --resource https://vault.azure.net`), or ' +
        'install @azure/identity for client-secret / managed-identity logins',
    );
  }
  const tenant = params['tenant-id'] ?? process.env['AZURE_TENANT_ID'];
  const clientId = params['client-id'] ?? process.env['AZURE_CLIENT_ID'];
  const secret = params['client-secret'] ?? process.env['AZURE_CLIENT_SECRET'];
  if (tenant && clientId && secret && identity['ClientSecretCredential'])
    return new identity['ClientSecretCredential'](tenant, clientId, secret);
  if (identity['DefaultAzureCredential']) return new identity['DefaultAzureCredential']();
  throw err('AUTH', 'azurekv: @azure/identity offers no usable credential: set AZURE_ACCESS_TOKEN');
}

// ------------------------------------------------------------------ key shapes

interface KeyShape {
  kty: 'EC' | 'RSA';
  crv?: 'P-256' | 'P-384' | 'P-256K';
  bits?: number;
}

const SIGN_SPECS: Record<string, { kty: 'EC' | 'RSA'; crv?: 'P-256' | 'P-384' | 'P-256K'; bits?: number }> = {
  'ec-p256': { kty: 'EC', crv: 'P-256' },
  'ec-p384': { kty: 'EC', crv: 'P-384' },
  secp256k1: { kty: 'EC', crv: 'P-256K' },
  'rsa-2048': { kty: 'RSA', bits: 2048 },
  'rsa-3072': { kty: 'RSA', bits: 3072 },
};

function specOfShape(s: KeyShape): SigningKeySpec | undefined {
  if (s.kty === 'EC') return s.crv === 'P-256' ? 'ec-p256' : s.crv === 'P-384' ? 'ec-p384' : s.crv === 'P-256K' ? 'secp256k1' : undefined;
  return s.bits === 2048 ? 'rsa-2048' : s.bits === 3072 ? 'rsa-3072' : undefined;
}

const b64u = (b: Uint8Array | undefined): string | undefined => (b ? Buffer.from(b).toString('base64url') : undefined);
const fromB64u = (s: string | undefined): Uint8Array | undefined => (s ? new Uint8Array(Buffer.from(s, 'base64url')) : undefined);

function shapeOf(jwk: KV.JsonWebKey | undefined): KeyShape {
  const kty = jwk?.kty;
  if (kty === 'EC' || kty === 'EC-HSM') {
    const crv = jwk!.crv;
    if (crv === 'P-256' || crv === 'P-384' || crv === 'P-256K') return { kty: 'EC', crv };
    return { kty: 'EC' };
  }
  if (kty === 'RSA' || kty === 'RSA-HSM') {
    const n = jwk!.n ? Buffer.from(jwk!.n) : Buffer.alloc(0);
    let i = 0;
    while (i < n.length && n[i] === 0) i++;
    return { kty: 'RSA', bits: (n.length - i) * 8 };
  }
  throw err('UNSUPPORTED', `azurekv: key type ${kty ?? 'unknown'} is not an EC or RSA key`);
}

/** Azure JWK (Uint8Array fields) -> DER SubjectPublicKeyInfo, through node:crypto */
export function spkiOf(jwk: KV.JsonWebKey): Buffer {
  const shape = shapeOf(jwk);
  const nodeJwk: NodeJwk =
    shape.kty === 'EC'
      ? { kty: 'EC', crv: shape.crv === 'P-256K' ? 'secp256k1' : shape.crv, x: b64u(jwk.x), y: b64u(jwk.y) }
      : { kty: 'RSA', n: b64u(jwk.n), e: b64u(jwk.e) };
  try {
    return createPublicKey({ key: nodeJwk, format: 'jwk' }).export({ type: 'spki', format: 'der' });
  } catch {
    throw err('INTERNAL', 'azurekv: the vault returned a public key node:crypto cannot read');
  }
}

/** PKCS#8 DER -> Azure JWK with private parts, checked against the declared spec */
export function jwkForImport(m: KeyMaterialForImport): { jwk: KV.JsonWebKey; shape: KeyShape } {
  let j: NodeJwk;
  try {
    j = createPrivateKey({ key: m.secret, format: 'der', type: 'pkcs8' }).export({ format: 'jwk' }) as NodeJwk;
  } catch {
    throw err('INVALID_INPUT', 'the key to import is not a PKCS#8 DER private key');
  }
  const want = SIGN_SPECS[m.spec];
  if (!want) throw err('UNSUPPORTED', `Azure Key Vault cannot hold a ${m.spec} key: it supports EC P-256/P-384/P-256K and RSA 2048/3072`);
  if (j.kty === 'EC') {
    const crv = j.crv === 'secp256k1' ? 'P-256K' : j.crv;
    if (want.kty !== 'EC' || want.crv !== crv) throw err('INVALID_INPUT', `the key to import is EC ${j.crv}, not ${m.spec}`);
    return {
      jwk: { kty: 'EC', crv: crv as KV.KeyCurveName, x: fromB64u(j.x), y: fromB64u(j.y), d: fromB64u(j.d) },
      shape: { kty: 'EC', crv: crv as KeyShape['crv'] },
    };
  }
  if (j.kty === 'RSA') {
    const bits = Buffer.from(j.n ?? '', 'base64url').length * 8;
    if (want.kty !== 'RSA' || want.bits !== bits) throw err('INVALID_INPUT', `the key to import is RSA-${bits}, not ${m.spec}`);
    return {
      jwk: {
        kty: 'RSA',
        n: fromB64u(j.n),
        e: fromB64u(j.e),
        d: fromB64u(j.d),
        p: fromB64u(j.p),
        q: fromB64u(j.q),
        dp: fromB64u(j.dp),
        dq: fromB64u(j.dq),
        qi: fromB64u(j.qi),
      },
      shape: { kty: 'RSA', bits },
    };
  }
  throw err('UNSUPPORTED', `Azure Key Vault cannot import a ${j.kty ?? 'non-EC/RSA'} key (${m.spec})`);
}

// ------------------------------------------------------------------ driver

interface KeyRef {
  name: string;
  version?: string;
}

class AzureKeyVaultDriver implements Driver {
  readonly name = 'azurekv';
  private shapes = new Map<string, KeyShape>();
  private cryptoClients = new Map<string, KV.CryptographyClient>();

  constructor(
    private sdk: Sdk,
    private client: KV.KeyClient,
    private vault: string,
    private purge: boolean,
    private agent: Agent | undefined,
  ) {}

  private fail(e: unknown, what: string): KeyportError {
    return mapAzureError(e, what, this.vault);
  }

  /** NAME, NAME/VERSION, or a key identifier URL of this vault */
  private ref(keyId: string): KeyRef {
    if (/^https:\/\//i.test(keyId)) {
      let p: { vaultUrl: string; name: string; version?: string };
      try {
        p = this.sdk.parseKeyVaultKeyIdentifier(keyId);
      } catch {
        throw err('INVALID_INPUT', `azurekv: '${keyId}' is not a Key Vault key identifier (https://VAULT/keys/NAME[/VERSION])`);
      }
      if (new URL(p.vaultUrl).origin !== this.vault) throw err('INVALID_INPUT', `azurekv: key ${keyId} is not in vault ${this.vault}`);
      return p.version ? { name: p.name, version: p.version } : { name: p.name };
    }
    const [name, version, extra] = keyId.split('/');
    if (!name || extra !== undefined || !NAME_RE.test(name) || (version !== undefined && !/^[0-9A-Za-z]{1,64}$/.test(version)))
      throw err('INVALID_INPUT', `azurekv: '${keyId}' is not an Azure key name (letters, digits, '-') or NAME/VERSION`);
    return version ? { name, version } : { name };
  }

  private newName(name: string | undefined): string {
    if (name === undefined) return `keyport-${randomBytes(10).toString('hex')}`;
    if (!NAME_RE.test(name))
      throw err(
        'INVALID_NAME',
        `azurekv: '${name}' cannot be an Azure key name: Key Vault allows only letters, digits and '-' (1-127 characters)`,
      );
    return name;
  }

  private async getKey(r: KeyRef, what: string): Promise<KV.KeyVaultKey> {
    try {
      return await this.client.getKey(r.name, r.version ? { version: r.version } : {});
    } catch (e) {
      throw this.fail(e, `${what} '${r.name}'`);
    }
  }

  private async shape(keyId: string, r: KeyRef, what: string): Promise<KeyShape> {
    let s = this.shapes.get(keyId);
    if (!s) {
      s = shapeOf((await this.getKey(r, what)).key);
      this.shapes.set(keyId, s);
    }
    return s;
  }

  private crypto(keyId: string, r: KeyRef): KV.CryptographyClient {
    let c = this.cryptoClients.get(keyId);
    if (!c) {
      c = this.client.getCryptographyClient(r.name, r.version ? { keyVersion: r.version } : {});
      this.cryptoClients.set(keyId, c);
    }
    return c;
  }

  /** the name must be free: Azure would otherwise silently add a version to an existing key */
  private async assertFree(name: string): Promise<void> {
    try {
      await this.client.getKey(name);
    } catch (e) {
      const k = this.fail(e, `look up '${name}'`);
      if (k.code === 'NOT_FOUND') return;
      throw k;
    }
    throw err('EXISTS', `azurekv: key '${name}' already exists in ${this.vault}`);
  }

  async health(): Promise<Health> {
    try {
      const pages = this.client.listPropertiesOfKeys().byPage({ maxPageSize: 1 });
      await pages.next();
      return { state: 'ok' };
    } catch (e) {
      const k = this.fail(e, 'health check');
      if (k.code === 'AUTH' || k.code === 'PERMISSION') return { state: 'fatal', reason: k.message };
      return { state: 'failed', reason: k.message };
    }
  }

  supportedSigningKeySpecs(): SigningKeySpec[] {
    return ['ec-p256', 'ec-p384', 'secp256k1', 'rsa-2048', 'rsa-3072'];
  }
  supportedSigningAlgoSpecs(): SigningAlgoSpec[] {
    return ['ecdsa-sha256', 'ecdsa-sha384', 'rsa-pss-sha256'];
  }
  supportedEncryptionKeySpecs(): EncryptionKeySpec[] {
    return ['rsa-2048', 'rsa-3072'];
  }
  supportedEncryptionAlgoSpecs(): EncryptionAlgoSpec[] {
    return ['rsa-oaep-sha256'];
  }

  // ---------------------------------------------------------------- create

  private async create(name: string, shape: KeyShape, keyOps: KV.KeyOperation[], kind: string, spec: string): Promise<string> {
    await this.assertFree(name);
    const tags = { [TAG_KIND]: kind, [TAG_SPEC]: spec };
    try {
      if (shape.kty === 'EC') await this.client.createEcKey(name, { curve: shape.crv!, keyOps, tags });
      else await this.client.createRsaKey(name, { keySize: shape.bits!, keyOps, tags });
    } catch (e) {
      throw this.fail(e, `create key '${name}'`);
    }
    this.shapes.set(name, shape);
    return name;
  }

  async generateSigningKeyPair(spec: SigningKeySpec, name?: string): Promise<string> {
    const s = SIGN_SPECS[spec];
    if (!s) throw err('UNSUPPORTED', `Azure Key Vault has no ${spec} keys: use ec-p256, ec-p384, secp256k1, rsa-2048 or rsa-3072`);
    return this.create(this.newName(name), s, ['sign', 'verify'], 'signing', spec);
  }

  async generateEncryptionKeyPair(spec: EncryptionKeySpec, name?: string): Promise<string> {
    if (spec !== 'rsa-2048' && spec !== 'rsa-3072')
      throw err('UNSUPPORTED', `Azure Key Vault decrypts with RSA keys only, not ${spec}: use rsa-2048 or rsa-3072`);
    return this.create(this.newName(name), SIGN_SPECS[spec]!, ['decrypt', 'encrypt'], 'encryption', spec);
  }

  /** an RSA-3072 wrapping key: a standard vault has no AES keys (see the header) */
  async generateSymmetricKey(name?: string): Promise<string> {
    return this.create(this.newName(name), { kty: 'RSA', bits: 3072 }, ['wrapKey', 'unwrapKey'], 'symmetric', 'rsa-3072-wrap');
  }

  importRefusal(kind: KeyMaterialForImport['kind'], spec: KeyMaterialForImport['spec']): string | undefined {
    if (kind === 'symmetric')
      return 'Azure Key Vault (standard) cannot import symmetric keys: only Managed HSM holds AES keys; generate a wrapper key in the vault instead';
    const held: readonly string[] = kind === 'signing' ? this.supportedSigningKeySpecs() : this.supportedEncryptionKeySpecs();
    return held.includes(spec) ? undefined : `Azure Key Vault cannot import a ${spec} ${kind} key`;
  }

  async importKey(m: KeyMaterialForImport, name?: string): Promise<string> {
    if (m.kind === 'symmetric') throw err('UNSUPPORTED', this.importRefusal(m.kind, m.spec)!);
    const n = this.newName(name);
    const { jwk, shape } = jwkForImport(m);
    jwk.keyOps = m.kind === 'signing' ? ['sign', 'verify'] : ['decrypt', 'encrypt'];
    await this.assertFree(n);
    try {
      await this.client.importKey(n, jwk, { tags: { [TAG_KIND]: m.kind, [TAG_SPEC]: m.spec } });
    } catch (e) {
      throw this.fail(e, `import key '${n}'`);
    } finally {
      for (const k of ['d', 'p', 'q', 'dp', 'dq', 'qi'] as const) jwk[k]?.fill(0);
    }
    this.shapes.set(n, shape);
    return n;
  }

  // ---------------------------------------------------------------- use

  async sign(keyId: string, data: Buffer, algo: SigningAlgoSpec): Promise<Buffer> {
    const r = this.ref(keyId);
    const s = await this.shape(keyId, r, 'sign with');
    let alg: KV.SignatureAlgorithm;
    let hash: 'sha256' | 'sha384';
    if (s.kty === 'EC' && s.crv === 'P-256' && algo === 'ecdsa-sha256') [alg, hash] = ['ES256', 'sha256'];
    else if (s.kty === 'EC' && s.crv === 'P-256K' && algo === 'ecdsa-sha256') [alg, hash] = ['ES256K', 'sha256'];
    else if (s.kty === 'EC' && s.crv === 'P-384' && algo === 'ecdsa-sha384') [alg, hash] = ['ES384', 'sha384'];
    else if (s.kty === 'RSA' && algo === 'rsa-pss-sha256') [alg, hash] = ['PS256', 'sha256'];
    else throw err('KEY_USAGE', `azurekv: key '${r.name}' is ${specOfShape(s) ?? s.kty}: it cannot sign with ${algo}`);
    const digest = createHash(hash).update(data).digest();
    let out: KV.SignResult;
    try {
      out = await this.crypto(keyId, r).sign(alg, digest);
    } catch (e) {
      throw this.fail(e, `sign with '${r.name}'`);
    }
    const sig = Buffer.from(out.result);
    if (s.kty !== 'EC') return sig;
    const size = s.crv === 'P-384' ? 48 : 32;
    if (sig.length !== 2 * size)
      throw err('INTERNAL', `azurekv: the vault returned a ${sig.length}-byte ECDSA signature, expected ${2 * size}`);
    return rawToDer(sig);
  }

  async decryptAsymmetric(keyId: string, ciphertext: Buffer, algo: EncryptionAlgoSpec): Promise<Buffer> {
    const r = this.ref(keyId);
    if (algo !== 'rsa-oaep-sha256')
      throw err('UNSUPPORTED', `azurekv: Key Vault cannot decrypt ${algo}; use rsa-oaep-sha256 with an RSA key`);
    const s = await this.shape(keyId, r, 'decrypt with');
    if (s.kty !== 'RSA') throw err('KEY_USAGE', `azurekv: key '${r.name}' is ${specOfShape(s) ?? s.kty}: it cannot decrypt with ${algo}`);
    try {
      const out = await this.crypto(keyId, r).decrypt({ algorithm: 'RSA-OAEP-256', ciphertext });
      return Buffer.from(out.result);
    } catch (e) {
      const k = this.fail(e, `decrypt with '${r.name}'`);
      if (k.code === 'INVALID_INPUT')
        throw err('INVALID_CIPHERTEXT', `azurekv: the vault could not decrypt with '${r.name}': wrong key or damaged ciphertext`);
      throw k;
    }
  }

  async encryptSymmetric(keyId: string, plaintext: Buffer): Promise<Buffer> {
    const r = this.ref(keyId);
    const dek = randomBytes(32);
    try {
      let wrapped: Buffer;
      try {
        wrapped = Buffer.from((await this.crypto(keyId, r).wrapKey('RSA-OAEP-256', dek)).result);
      } catch (e) {
        throw this.fail(e, `wrap with '${r.name}'`);
      }
      if (wrapped.length > 0xffff) throw err('INTERNAL', 'azurekv: wrapped key too long');
      const head = Buffer.alloc(3);
      head[0] = WRAP_VERSION;
      head.writeUInt16BE(wrapped.length, 1);
      const iv = randomBytes(GCM_IV);
      const c = createCipheriv('aes-256-gcm', dek, iv);
      c.setAAD(Buffer.concat([WRAP_AAD, head, wrapped]));
      const ct = Buffer.concat([c.update(plaintext), c.final()]);
      return Buffer.concat([head, wrapped, iv, ct, c.getAuthTag()]);
    } finally {
      dek.fill(0);
    }
  }

  async decryptSymmetric(keyId: string, ciphertext: Buffer): Promise<Buffer> {
    const r = this.ref(keyId);
    const bad = () => err('INVALID_CIPHERTEXT', `azurekv: not a ciphertext made by keyport's Azure wrapper (key '${r.name}')`);
    if (ciphertext.length < 3 || ciphertext[0] !== WRAP_VERSION) throw bad();
    const wl = ciphertext.readUInt16BE(1);
    if (ciphertext.length < 3 + wl + GCM_IV + GCM_TAG) throw bad();
    const head = ciphertext.subarray(0, 3);
    const wrapped = ciphertext.subarray(3, 3 + wl);
    const iv = ciphertext.subarray(3 + wl, 3 + wl + GCM_IV);
    const tag = ciphertext.subarray(ciphertext.length - GCM_TAG);
    const body = ciphertext.subarray(3 + wl + GCM_IV, ciphertext.length - GCM_TAG);
    let dek: Buffer;
    try {
      dek = Buffer.from((await this.crypto(keyId, r).unwrapKey('RSA-OAEP-256', wrapped)).result);
    } catch (e) {
      const k = this.fail(e, `unwrap with '${r.name}'`);
      if (k.code === 'INVALID_INPUT')
        throw err(
          'INVALID_CIPHERTEXT',
          `azurekv: the vault could not unwrap with '${r.name}': wrong or rotated wrapper key, or damaged ciphertext`,
        );
      throw k;
    }
    try {
      if (dek.length !== 32) throw bad();
      const d = createDecipheriv('aes-256-gcm', dek, iv);
      d.setAAD(Buffer.concat([WRAP_AAD, head, wrapped]));
      d.setAuthTag(tag);
      return Buffer.concat([d.update(body), d.final()]);
    } catch (e) {
      if (isKeyportError(e)) throw e;
      throw err('INVALID_CIPHERTEXT', `azurekv: ciphertext does not authenticate under key '${r.name}'`);
    } finally {
      dek.fill(0);
    }
  }

  async getPublicKey(keyId: string): Promise<DriverPublicKey> {
    const r = this.ref(keyId);
    const k = await this.getKey(r, 'read key');
    if (!k.key) throw err('INTERNAL', `azurekv: the vault returned no key material for '${r.name}'`);
    const s = shapeOf(k.key);
    this.shapes.set(keyId, s);
    const spec = specOfShape(s);
    if (!spec)
      throw err(
        'UNSUPPORTED',
        `azurekv: key '${r.name}' is ${s.kty}${s.crv ? ' ' + s.crv : ''}${s.bits ? '-' + s.bits : ''}, which keyport does not use`,
      );
    return { spki: spkiOf(k.key), spec };
  }

  /**
   * What the key is, from its JWK type, curve or size and its key_ops (GetKey), for the registration check
   * (src/keys/adopt.ts): an EC key is not an encryption key here, an RSA key without 'decrypt' is not one,
   * a key without 'sign' cannot sign; an RSA key with only wrapKey/unwrapKey is keyport's symmetric key.
   * NOT VERIFIED against Azure Key Vault: no emulator can be had here (lowkey-vault's jar cannot be
   * downloaded on this machine).
   */
  async describeKey(keyId: string): Promise<DriverKeyDescription> {
    const r = this.ref(keyId);
    const k = await this.getKey(r, 'describe key');
    const ops: string[] = k.keyOperations ?? k.key?.keyOps ?? [];
    const kty = k.key?.kty ?? k.keyType ?? 'unknown';
    let shape: KeyShape | undefined;
    try {
      shape = shapeOf(k.key);
    } catch {
      shape = undefined; // oct and other types keyport does not use
    }
    const size = shape?.kty === 'EC' ? (shape.crv ?? k.key?.crv ?? 'unknown curve') : shape?.bits ? `${shape.bits}-bit` : '';
    const native = `a ${kty}${size ? ` ${size}` : ''} key with key_ops [${ops.join(', ')}]`;
    const words = { sign: "key_ops 'sign'", decrypt: "key_ops 'decrypt' (RSA)" };
    // keyport's own symmetric key in a vault: RSA-3072 used only to wrap and unwrap
    if (shape?.kty === 'RSA' && ops.includes('unwrapKey') && !ops.includes('decrypt') && !ops.includes('sign'))
      return { keyId, ...(shape.bits === 3072 ? { spec: 'aes256' as const } : {}), sign: false, decrypt: true, native, words };
    const spec = shape ? specOfShape(shape) : undefined;
    return {
      keyId,
      ...(spec ? { spec } : {}),
      sign: ops.includes('sign'),
      decrypt: shape?.kty === 'RSA' && ops.includes('decrypt'),
      native,
      words,
    };
  }

  async keyExistsAndIsActive(keyId: string): Promise<void> {
    const r = this.ref(keyId);
    const k = await this.getKey(r, 'check key');
    const p = k.properties;
    const now = Date.now();
    if (p.enabled === false) throw err('KEY_DISABLED', `azurekv: key '${r.name}' is disabled in ${this.vault}: enable it`);
    if (p.notBefore && p.notBefore.getTime() > now)
      throw err('KEY_DISABLED', `azurekv: key '${r.name}' is not valid before ${p.notBefore.toISOString()}`);
    if (p.expiresOn && p.expiresOn.getTime() <= now)
      throw err('KEY_DISABLED', `azurekv: key '${r.name}' expired on ${p.expiresOn.toISOString()}`);
  }

  async deleteKey(keyId: string): Promise<void> {
    const r = this.ref(keyId);
    if (r.version) throw err('UNSUPPORTED', `azurekv: Key Vault deletes whole keys, not one version: use key-id=${r.name}`);
    try {
      const poller = await this.client.beginDeleteKey(r.name, { intervalInMs: 200 });
      await poller.pollUntilDone();
    } catch (e) {
      throw this.fail(e, `delete key '${r.name}'`);
    }
    for (const k of [...this.shapes.keys()]) if (k === r.name || k.startsWith(r.name + '/')) this.shapes.delete(k);
    for (const k of [...this.cryptoClients.keys()]) if (k === r.name || k.startsWith(r.name + '/')) this.cryptoClients.delete(k);
    if (this.purge) {
      try {
        await this.client.purgeDeletedKey(r.name);
      } catch (e) {
        throw this.fail(e, `purge deleted key '${r.name}' (it is deleted but recoverable)`);
      }
    }
  }

  async *listKeys(): AsyncIterable<DriverKeyInfo> {
    const it = this.client.listPropertiesOfKeys()[Symbol.asyncIterator]();
    for (;;) {
      let next: IteratorResult<KV.KeyProperties>;
      try {
        next = await it.next();
      } catch (e) {
        throw this.fail(e, 'list keys');
      }
      if (next.done) return;
      const p = next.value;
      const kind = p.tags?.[TAG_KIND];
      const spec = p.tags?.[TAG_SPEC];
      const info: DriverKeyInfo = { keyId: p.name, name: p.name, state: p.enabled === false ? 'disabled' : 'enabled' };
      if (kind === 'symmetric' || kind === 'signing' || kind === 'encryption') info.kind = kind;
      if (spec) info.spec = spec === 'rsa-3072-wrap' ? 'aes256' : spec;
      yield info;
    }
  }

  async resolveKeyId(ref: string): Promise<string> {
    const r = this.ref(ref);
    return r.version ? `${r.name}/${r.version}` : r.name;
  }

  async close(): Promise<void> {
    this.agent?.destroy();
    this.cryptoClients.clear();
    this.shapes.clear();
  }
}
