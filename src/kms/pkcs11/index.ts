/**
 * `pkcs11:` — a PKCS#11 token / HSM as a KMS (RFC 7512 URI attributes):
 *
 *   pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=keyport?pin-value=1234
 *   pkcs11:module-path=…;token=…?pin-source=file:/run/secrets/pin     (or KEYPORT_PKCS11_PIN)
 *
 * Token selection: token= (label), serial=, or slot-id=. Key references: object=LABEL in a key URI; a
 * key id given to a method is a label, `object=LABEL`, `id=HEX` (CKA_ID) or a bare hex CKA_ID when no
 * label matches. The key id this driver returns is the label.
 *
 * Keys are token objects, private, sensitive and non-extractable, with CKA_LABEL = the name (or a
 * generated `keyport-…` label) and a random 16-byte CKA_ID shared by both halves of a pair.
 *
 * What is claimed comes from the token itself: the mechanism list, then a probe with throw-away
 * session keys for what the list cannot tell (which curves key generation accepts, whether
 * CKM_RSA_PKCS_OAEP takes SHA-256 — SoftHSM2 2.6 only does SHA-1 there, so rsa-oaep-sha256 is not
 * claimed on it). Operations:
 *  - ECDSA (P-256, P-384, secp256k1): CKM_ECDSA over a digest computed here; the raw r‖s is returned DER.
 *  - Ed25519: CKM_EDDSA (pure), over the whole message.
 *  - RSA-PSS SHA-256 (MGF1-SHA-256, 32-byte salt): CKM_SHA256_RSA_PKCS_PSS, else CKM_RSA_PKCS_PSS over
 *    a local digest.
 *  - AES-256: CKM_AES_GCM, 12-byte random IV, 128-bit tag; output iv‖ciphertext‖tag, AAD
 *    "keyport-pkcs11-wrap-v1".
 *  - RSA-OAEP SHA-256 decrypt only where the token does it.
 *  - Import (BYOK): AES keys and RSA/EC private keys are C_UnwrapKey'd with AES-KWP (RFC 5649:
 *    CKM_AES_KEY_WRAP_KWP of PKCS#11 3.0, e.g. kryoptic, else the 2.40 CKM_AES_KEY_WRAP_PAD SoftHSM2 2.6 has)
 *    under a transient session AES key; Ed25519 (which SoftHSM cannot unwrap from PKCS#8) and
 *    tokens without AES-KWP get C_CreateObject with the key components. The public half is created as
 *    a public-key object from the locally derived public key.
 */
import { createHash, createPrivateKey, createPublicKey, randomBytes, type KeyObject, type webcrypto } from 'node:crypto';
type JsonWebKey = webcrypto.JsonWebKey;
import { readFileSync } from 'node:fs';
import { err } from '../../errors.js';
import { rawToDer } from '../../crypto/ecdsa-encoding.js';
import { aesKeyWrap } from '../../crypto/keywrap.js';
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
import { CURVES, ED25519_PARAMS, ecSpecOfParams, ecSpki, ed25519Spki, octetString, rsaSpki, type EcSpec } from './asn1.js';
import { Token, type Handle, type Lib, type Pkcs11 } from './session.js';
import { ckrName } from './errors.js';

// PKCS#11 3.0 values SoftHSM 2.6 uses and pkcs11js 2.1 does not export
const CKK_EC_EDWARDS = 0x40;
const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
const CKM_EDDSA = 0x1057;
const CKM_AES_KEY_WRAP_PAD = 0x210a;
// PKCS#11 3.0's unambiguous name for RFC 5649 (kryoptic lists only this one)
const CKM_AES_KEY_WRAP_KWP = 0x210b;

const WRAP_AAD = Buffer.from('keyport-pkcs11-wrap-v1');
const MAX_LABEL = 128;

type Spec = SigningKeySpec | EncryptionKeySpec | 'aes256';
type Kind = 'symmetric' | 'signing' | 'encryption';

interface Caps {
  curves: EcSpec[];
  ecdsa: boolean;
  ed25519: boolean;
  rsaSizes: Array<'rsa-2048' | 'rsa-3072'>;
  /** mechanism for RSA-PSS SHA-256, or 0 */
  pss: number;
  oaepSha256: boolean;
  /** why OAEP-SHA-256 is not claimed (for the UNSUPPORTED message) */
  oaepWhy: string;
  aesGcm: boolean;
  aesGen: boolean;
  /** the RFC 5649 AES-KWP mechanism the token has (CKM_AES_KEY_WRAP_KWP or _PAD), or 0 */
  kwp: number;
  mechanisms: number[];
}

interface KeyObj {
  handle: Handle;
  cls: number;
  keyType: number;
  label: string;
  id: Buffer;
}

// ---------------------------------------------------------------------------------------------------
// attribute helpers

function ulong(b: Buffer): number {
  if (b.length >= 8) return Number(b.readBigUInt64LE(0));
  if (b.length >= 4) return b.readUInt32LE(0);
  return b[0] ?? 0;
}
const bool = (b: Buffer) => b.length > 0 && b[0] !== 0;

function attrs(p11: Pkcs11, s: Handle, h: Handle, types: number[]): Buffer[] {
  return p11
    .C_GetAttributeValue(
      s,
      h,
      types.map((type) => ({ type })),
    )
    .map((a) => a.value as Buffer);
}

function find(p11: Pkcs11, s: Handle, template: Array<{ type: number; value?: number | boolean | string | Buffer }>): Handle[] {
  p11.C_FindObjectsInit(s, template);
  const out: Handle[] = [];
  try {
    for (;;) {
      const batch = p11.C_FindObjects(s, 64);
      if (batch.length === 0) break;
      out.push(...batch);
    }
  } finally {
    p11.C_FindObjectsFinal(s);
  }
  return out;
}

function readPin(params: Record<string, string>): string | undefined {
  if (params['pin-value'] !== undefined) return params['pin-value'];
  const src = params['pin-source'];
  if (src !== undefined) {
    const path = src.startsWith('file://') ? src.slice(7) : src.startsWith('file:') ? src.slice(5) : src;
    try {
      return readFileSync(path, 'utf8').split(/\r?\n/)[0]!;
    } catch (e) {
      throw err('INVALID_INPUT', `pkcs11: cannot read pin-source ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  return process.env['KEYPORT_PKCS11_PIN'] || undefined;
}

function checkLabel(name: string): string {
  if (name.length === 0 || name.length > MAX_LABEL || /[\x00-\x1f\x7f]/.test(name)) {
    throw err('INVALID_NAME', `pkcs11: '${name.slice(0, 40)}' is not a usable key label (1 to ${MAX_LABEL} printable characters)`);
  }
  return name;
}

/** strip `object=` / a whole `pkcs11:…object=X` reference down to what we look up */
function parseRef(ref: string): { label?: string; id?: Buffer; hexOrLabel?: string } {
  let r = ref.trim();
  if (r.startsWith('pkcs11:')) {
    const m = /[;:?&]object=([^;&?]*)/.exec(r) ?? /[;:?&]id=([^;&?]*)/.exec(r);
    if (!m) throw err('INVALID_INPUT', `pkcs11: key reference names no object=LABEL`);
    r = (m[0].includes('object=') ? 'object=' : 'id=') + decodeURIComponent(m[1]!);
  }
  if (r.startsWith('object=')) return { label: r.slice(7) };
  if (r.startsWith('id=')) {
    const hex = decodeURIComponent(r.slice(3)).replace(/%/g, '');
    if (!/^([0-9a-fA-F]{2})+$/.test(hex)) throw err('INVALID_INPUT', `pkcs11: id=… must be hex (the CKA_ID)`);
    return { id: Buffer.from(hex, 'hex') };
  }
  if (r === '') throw err('INVALID_INPUT', 'pkcs11: empty key reference');
  return /^([0-9a-fA-F]{2})+$/.test(r) ? { hexOrLabel: r } : { label: r };
}

// ---------------------------------------------------------------------------------------------------

export const factory: DriverFactory = async (params, uri) => {
  const modulePath = params['module-path'] ?? process.env['KEYPORT_PKCS11_MODULE'];
  if (!modulePath) throw err('USAGE', `pkcs11: '${uri}' names no module: add module-path=/path/to/pkcs11-module.so`);
  const pin = readPin(params);
  const poolSize = params['pool-size'] !== undefined ? Number(params['pool-size']) : 4;
  if (!Number.isInteger(poolSize) || poolSize < 1 || poolSize > 64) throw err('USAGE', 'pkcs11: pool-size must be 1..64');
  const token = await Token.open(
    modulePath,
    { token: params['token'], serial: params['serial'], slotId: params['slot-id'] },
    pin,
    poolSize,
  );
  try {
    token.capsPromise ??= probeCaps(token);
    const caps = (await token.capsPromise) as Caps;
    return new Pkcs11Driver(token, caps);
  } catch (e) {
    token.capsPromise = undefined;
    token.close();
    throw e;
  }
};

/** what the token can do: its mechanism list, then throw-away session keys for what the list cannot say */
async function probeCaps(t: Token): Promise<Caps> {
  const { p11, lib } = t;
  let mechanisms: number[];
  try {
    mechanisms = p11.C_GetMechanismList(t.slot);
  } catch (e) {
    throw err('UNAVAILABLE', `pkcs11: cannot read the mechanism list of token '${t.label}' (${ckrName(e) ?? 'error'})`);
  }
  const has = (m: number) => mechanisms.includes(m);
  const keySizes = (m: number) => {
    try {
      const i = p11.C_GetMechanismInfo(t.slot, m);
      return [i.minKeySize, i.maxKeySize];
    } catch {
      return [0, 0];
    }
  };
  const caps: Caps = {
    curves: [],
    ecdsa: has(lib.CKM_ECDSA),
    ed25519: false,
    rsaSizes: [],
    pss: has(lib.CKM_SHA256_RSA_PKCS_PSS) ? lib.CKM_SHA256_RSA_PKCS_PSS : has(lib.CKM_RSA_PKCS_PSS) ? lib.CKM_RSA_PKCS_PSS : 0,
    oaepSha256: false,
    oaepWhy: `token '${t.label}' has no CKM_RSA_PKCS_OAEP`,
    aesGcm: has(lib.CKM_AES_GCM),
    aesGen: has(lib.CKM_AES_KEY_GEN),
    kwp: has(CKM_AES_KEY_WRAP_KWP) ? CKM_AES_KEY_WRAP_KWP : has(CKM_AES_KEY_WRAP_PAD) ? CKM_AES_KEY_WRAP_PAD : 0,
    mechanisms,
  };
  const tmp = [{ type: lib.CKA_TOKEN, value: false }];
  // probing sessions are broken on any failure; that is fine, the pool replaces them
  await t
    .with('probe the token', async (s) => {
      const tryPair = async (
        mech: number,
        pub: Array<{ type: number; value?: number | boolean | Buffer }>,
        priv: Array<{ type: number; value?: number | boolean | Buffer }>,
      ) => {
        try {
          const kp = await p11.C_GenerateKeyPairAsync(s, { mechanism: mech }, [...tmp, ...pub], [...tmp, ...priv]);
          return kp;
        } catch {
          return undefined;
        }
      };
      const drop = (kp: { publicKey: Handle; privateKey: Handle }) => {
        for (const h of [kp.publicKey, kp.privateKey]) {
          try {
            p11.C_DestroyObject(s, h);
          } catch {
            /* session objects vanish with the session anyway */
          }
        }
      };
      if (has(lib.CKM_EC_KEY_PAIR_GEN) && caps.ecdsa) {
        for (const spec of Object.keys(CURVES) as EcSpec[]) {
          const kp = await tryPair(
            lib.CKM_EC_KEY_PAIR_GEN,
            [{ type: lib.CKA_EC_PARAMS, value: CURVES[spec].params }],
            [{ type: lib.CKA_SIGN, value: true }],
          );
          if (kp) {
            caps.curves.push(spec);
            drop(kp);
          }
        }
      }
      if (has(CKM_EC_EDWARDS_KEY_PAIR_GEN) && has(CKM_EDDSA)) {
        const kp = await tryPair(
          CKM_EC_EDWARDS_KEY_PAIR_GEN,
          [{ type: lib.CKA_EC_PARAMS, value: ED25519_PARAMS }],
          [{ type: lib.CKA_SIGN, value: true }],
        );
        if (kp) {
          caps.ed25519 = true;
          drop(kp);
        }
      }
      if (has(lib.CKM_RSA_PKCS_KEY_PAIR_GEN)) {
        const [min, max] = keySizes(lib.CKM_RSA_PKCS_KEY_PAIR_GEN);
        for (const [bits, spec] of [
          [2048, 'rsa-2048'],
          [3072, 'rsa-3072'],
        ] as const)
          if (bits >= min! && bits <= max!) caps.rsaSizes.push(spec);
        if (has(lib.CKM_RSA_PKCS_OAEP)) {
          let softhsm = false;
          try {
            softhsm = /softhsm/i.test(t.tokenInfo().manufacturerID);
          } catch {
            /* only for the hint */
          }
          caps.oaepWhy =
            `token '${t.label}' does not do CKM_RSA_PKCS_OAEP with ` +
            `SHA-256/MGF1-SHA-256${softhsm ? ' (SoftHSM2 2.6 does OAEP with SHA-1 only)' : ''}`;
          const bits = Math.max(1024, min!);
          const kp = await tryPair(
            lib.CKM_RSA_PKCS_KEY_PAIR_GEN,
            [
              { type: lib.CKA_MODULUS_BITS, value: bits },
              { type: lib.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
              { type: lib.CKA_ENCRYPT, value: true },
            ],
            [{ type: lib.CKA_DECRYPT, value: true }],
          );
          if (kp) {
            try {
              const [n, e] = attrs(p11, s, kp.publicKey, [lib.CKA_MODULUS, lib.CKA_PUBLIC_EXPONENT]);
              const pub = createPublicKey({ key: { kty: 'RSA', n: n!.toString('base64url'), e: e!.toString('base64url') }, format: 'jwk' });
              const probe = randomBytes(16);
              const { publicEncrypt, constants } = await import('node:crypto');
              const ct = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, probe);
              p11.C_DecryptInit(s, oaepMechanism(lib), kp.privateKey);
              const pt = await p11.C_DecryptAsync(s, ct, Buffer.alloc(bits / 8));
              caps.oaepSha256 = pt.equals(probe);
            } catch {
              caps.oaepSha256 = false;
            }
            drop(kp);
          }
        }
      }
    })
    .catch(() => undefined);
  return caps;
}

function oaepMechanism(lib: Lib) {
  return {
    mechanism: lib.CKM_RSA_PKCS_OAEP,
    parameter: { type: lib.CK_PARAMS_RSA_OAEP, hashAlg: lib.CKM_SHA256, mgf: lib.CKG_MGF1_SHA256, source: 1 /* CKZ_DATA_SPECIFIED */ },
  };
}

class Pkcs11Driver implements Driver {
  readonly name = 'pkcs11';
  private readonly lib: Lib;
  private readonly p11: Pkcs11;
  private closed = false;

  constructor(
    private readonly token: Token,
    private readonly caps: Caps,
  ) {
    this.lib = token.lib;
    this.p11 = token.p11;
  }

  /** a pooled-session operation of this driver (refused once the driver is closed) */
  private run<T>(op: string, fn: (s: Handle) => Promise<T> | T, override?: Parameters<Token['with']>[2]): Promise<T> {
    if (this.closed) return Promise.reject(err('UNAVAILABLE', 'pkcs11: the driver is closed', { retryable: false }));
    return this.token.with(op, fn, override);
  }

  // ------------------------------------------------------------------------------- capabilities

  async health(): Promise<Health> {
    if (this.closed) return { state: 'failed', reason: 'driver closed' };
    try {
      const info = this.token.tokenInfo();
      if (info.flags & this.lib.CKF_USER_PIN_LOCKED) return { state: 'failed', reason: `token '${this.token.label}': user PIN locked` };
      if (info.flags & this.lib.CKF_USER_PIN_FINAL_TRY)
        return { state: 'degraded', reason: `token '${this.token.label}': one PIN try left` };
      return { state: 'ok' };
    } catch (e) {
      return { state: 'failed', reason: `token '${this.token.label}': ${ckrName(e) ?? 'C_GetTokenInfo failed'}` };
    }
  }

  supportedSigningKeySpecs(): SigningKeySpec[] {
    const out: SigningKeySpec[] = [];
    if (this.caps.ecdsa) out.push(...this.caps.curves);
    if (this.caps.ed25519) out.push('ed25519');
    if (this.caps.pss) out.push(...this.caps.rsaSizes);
    return out;
  }

  supportedSigningAlgoSpecs(): SigningAlgoSpec[] {
    const out: SigningAlgoSpec[] = [];
    if (this.caps.ecdsa && this.caps.curves.length) out.push('ecdsa-sha256', 'ecdsa-sha384');
    if (this.caps.ed25519) out.push('ed25519');
    if (this.caps.pss && this.caps.rsaSizes.length) out.push('rsa-pss-sha256');
    return out;
  }

  supportedEncryptionKeySpecs(): EncryptionKeySpec[] {
    return this.caps.oaepSha256 ? [...this.caps.rsaSizes] : [];
  }

  supportedEncryptionAlgoSpecs(): EncryptionAlgoSpec[] {
    return this.caps.oaepSha256 && this.caps.rsaSizes.length ? ['rsa-oaep-sha256'] : [];
  }

  // ------------------------------------------------------------------------------- lookup

  private describe(s: Handle, h: Handle): KeyObj {
    const { lib, p11 } = this;
    const [cls, keyType, label, id] = attrs(p11, s, h, [lib.CKA_CLASS, lib.CKA_KEY_TYPE, lib.CKA_LABEL, lib.CKA_ID]);
    return { handle: h, cls: ulong(cls!), keyType: ulong(keyType!), label: label!.toString('utf8'), id: id! };
  }

  /** all objects (private, public, secret keys) a reference names */
  private objects(s: Handle, ref: string): KeyObj[] {
    const { lib, p11 } = this;
    const r = parseRef(ref);
    const keyClasses = [lib.CKO_PRIVATE_KEY, lib.CKO_PUBLIC_KEY, lib.CKO_SECRET_KEY];
    const byLabel = (label: string) => find(p11, s, [{ type: lib.CKA_LABEL, value: label }]).map((h) => this.describe(s, h));
    const byId = (id: Buffer) => find(p11, s, [{ type: lib.CKA_ID, value: id }]).map((h) => this.describe(s, h));
    let objs: KeyObj[];
    if (r.label !== undefined) objs = byLabel(r.label);
    else if (r.id) objs = byId(r.id);
    else {
      objs = byLabel(r.hexOrLabel!);
      if (objs.length === 0) objs = byId(Buffer.from(r.hexOrLabel!, 'hex'));
    }
    return objs.filter((o) => keyClasses.includes(o.cls));
  }

  /** the key (private or secret half) a reference names, and its public half if any */
  private key(s: Handle, ref: string): { key: KeyObj; pub?: KeyObj } {
    const objs = this.objects(s, ref);
    const main = objs.filter((o) => o.cls !== this.lib.CKO_PUBLIC_KEY);
    if (main.length === 0) throw err('NOT_FOUND', `pkcs11: no key '${ref}' on token '${this.token.label}'`);
    if (main.length > 1) {
      const ids = new Set(main.map((o) => o.id.toString('hex')));
      throw err(
        'CONFLICT',
        `pkcs11: ${main.length} keys match '${ref}' on token '${this.token.label}': use id=HEX (${[...ids].slice(0, 3).join(', ')})`,
        { retryable: false },
      );
    }
    const key = main[0]!;
    const pub =
      objs.find((o) => o.cls === this.lib.CKO_PUBLIC_KEY && o.id.equals(key.id)) ?? objs.find((o) => o.cls === this.lib.CKO_PUBLIC_KEY);
    return { key, pub };
  }

  private keyIdOf(k: KeyObj): string {
    return k.label !== '' ? k.label : `id=${k.id.toString('hex')}`;
  }

  /** spec of a key object (reads EC params / modulus) */
  private specOf(s: Handle, k: KeyObj): Spec | string {
    const { lib, p11 } = this;
    if (k.keyType === lib.CKK_AES) {
      const [len] = attrs(p11, s, k.handle, [lib.CKA_VALUE_LEN]);
      const n = ulong(len!);
      return n === 32 ? 'aes256' : `aes${n * 8}`;
    }
    if (k.keyType === lib.CKK_EC || k.keyType === CKK_EC_EDWARDS) {
      const [params] = attrs(p11, s, k.handle, [lib.CKA_EC_PARAMS]);
      return ecSpecOfParams(params!) ?? 'ec-unknown-curve';
    }
    if (k.keyType === lib.CKK_RSA) {
      const [n] = attrs(p11, s, k.handle, [lib.CKA_MODULUS]);
      let m = n!;
      while (m.length > 0 && m[0] === 0) m = m.subarray(1);
      return `rsa-${m.length * 8}`;
    }
    return `key-type-0x${k.keyType.toString(16)}`;
  }

  private kindOf(s: Handle, k: KeyObj): Kind | undefined {
    const { lib, p11 } = this;
    if (k.cls === lib.CKO_SECRET_KEY) return 'symmetric';
    try {
      const [sign, decrypt] = attrs(p11, s, k.handle, [lib.CKA_SIGN, lib.CKA_DECRYPT]);
      if (bool(sign!)) return 'signing';
      if (bool(decrypt!)) return 'encryption';
    } catch {
      /* unknown */
    }
    return undefined;
  }

  private ensureFree(s: Handle, label: string): void {
    const taken = find(this.p11, s, [{ type: this.lib.CKA_LABEL, value: label }]);
    if (taken.length > 0) throw err('EXISTS', `pkcs11: a key labelled '${label}' already exists on token '${this.token.label}'`);
  }

  private newLabel(name: string | undefined): string {
    return name !== undefined ? checkLabel(name) : `keyport-${randomBytes(8).toString('hex')}`;
  }

  private common(label: string, id: Buffer) {
    const { lib } = this;
    return [
      { type: lib.CKA_TOKEN, value: true },
      { type: lib.CKA_LABEL, value: label },
      { type: lib.CKA_ID, value: id },
    ];
  }

  private privateAttrs() {
    const { lib } = this;
    return [
      { type: lib.CKA_PRIVATE, value: true },
      { type: lib.CKA_SENSITIVE, value: true },
      { type: lib.CKA_EXTRACTABLE, value: false },
    ];
  }

  private usage(kind: Kind, half: 'public' | 'private' | 'secret') {
    const { lib } = this;
    const t = (type: number, value: boolean) => ({ type, value });
    if (half === 'secret') return [t(lib.CKA_ENCRYPT, true), t(lib.CKA_DECRYPT, true), t(lib.CKA_WRAP, false), t(lib.CKA_UNWRAP, false)];
    if (kind === 'signing') return half === 'public' ? [t(lib.CKA_VERIFY, true)] : [t(lib.CKA_SIGN, true), t(lib.CKA_DECRYPT, false)];
    return half === 'public' ? [t(lib.CKA_ENCRYPT, true), t(lib.CKA_VERIFY, false)] : [t(lib.CKA_DECRYPT, true), t(lib.CKA_SIGN, false)];
  }

  // ------------------------------------------------------------------------------- generate

  private async generatePair(kind: Kind, spec: SigningKeySpec | EncryptionKeySpec, name: string | undefined): Promise<string> {
    const { lib, p11 } = this;
    const label = this.newLabel(name);
    const id = randomBytes(16);
    let mech: number;
    let pubSpecific: Array<{ type: number; value: number | boolean | Buffer }>;
    if (spec === 'ed25519') {
      mech = CKM_EC_EDWARDS_KEY_PAIR_GEN;
      pubSpecific = [{ type: lib.CKA_EC_PARAMS, value: ED25519_PARAMS }];
    } else if (spec === 'rsa-2048' || spec === 'rsa-3072') {
      mech = lib.CKM_RSA_PKCS_KEY_PAIR_GEN;
      pubSpecific = [
        { type: lib.CKA_MODULUS_BITS, value: spec === 'rsa-2048' ? 2048 : 3072 },
        { type: lib.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
      ];
    } else {
      mech = lib.CKM_EC_KEY_PAIR_GEN;
      pubSpecific = [{ type: lib.CKA_EC_PARAMS, value: CURVES[spec].params }];
    }
    return this.run(`generate ${spec} key '${label}'`, async (s) => {
      this.ensureFree(s, label);
      await p11.C_GenerateKeyPairAsync(
        s,
        { mechanism: mech },
        [...this.common(label, id), { type: lib.CKA_PRIVATE, value: false }, ...pubSpecific, ...this.usage(kind, 'public')],
        [...this.common(label, id), ...this.privateAttrs(), ...this.usage(kind, 'private')],
      );
      return label;
    });
  }

  async generateSigningKeyPair(spec: SigningKeySpec, name?: string): Promise<string> {
    if (!this.supportedSigningKeySpecs().includes(spec)) {
      throw err(
        'UNSUPPORTED',
        `pkcs11: token '${this.token.label}' cannot make ${spec} signing keys (it can: ${this.supportedSigningKeySpecs().join(', ') || 'none'})`,
      );
    }
    return this.generatePair('signing', spec, name);
  }

  async generateEncryptionKeyPair(spec: EncryptionKeySpec, name?: string): Promise<string> {
    if (!this.supportedEncryptionKeySpecs().includes(spec)) {
      const why = spec.startsWith('rsa') ? this.caps.oaepWhy : 'this driver does no ECIES';
      throw err('UNSUPPORTED', `pkcs11: no ${spec} encryption keys: ${why}`);
    }
    return this.generatePair('encryption', spec, name);
  }

  async generateSymmetricKey(name?: string): Promise<string> {
    const { lib, p11 } = this;
    if (!this.caps.aesGen || !this.caps.aesGcm)
      throw err('UNSUPPORTED', `pkcs11: token '${this.token.label}' lacks CKM_AES_KEY_GEN or CKM_AES_GCM`);
    const label = this.newLabel(name);
    const id = randomBytes(16);
    return this.run(`generate aes256 key '${label}'`, async (s) => {
      this.ensureFree(s, label);
      await p11.C_GenerateKeyAsync(s, { mechanism: lib.CKM_AES_KEY_GEN }, [
        { type: lib.CKA_CLASS, value: lib.CKO_SECRET_KEY },
        { type: lib.CKA_KEY_TYPE, value: lib.CKK_AES },
        { type: lib.CKA_VALUE_LEN, value: 32 },
        ...this.common(label, id),
        ...this.privateAttrs(),
        ...this.usage('symmetric', 'secret'),
      ]);
      return label;
    });
  }

  // ------------------------------------------------------------------------------- operations

  async sign(keyId: string, data: Buffer, algo: SigningAlgoSpec): Promise<Buffer> {
    const { lib, p11 } = this;
    return this.run(`sign with key '${keyId}'`, async (s) => {
      const { key } = this.key(s, keyId);
      const wrongKey = () => err('KEY_USAGE', `pkcs11: key '${keyId}' cannot sign with ${algo}`);
      if (algo === 'ecdsa-sha256' || algo === 'ecdsa-sha384') {
        if (key.keyType !== lib.CKK_EC || key.cls !== lib.CKO_PRIVATE_KEY) throw wrongKey();
        // the hash belongs to the curve (P-384 → SHA-384, P-256 and secp256k1 → SHA-256)
        if ((this.specOf(s, key) === 'ec-p384') !== (algo === 'ecdsa-sha384')) throw wrongKey();
        const digest = createHash(algo === 'ecdsa-sha256' ? 'sha256' : 'sha384')
          .update(data)
          .digest();
        p11.C_SignInit(s, { mechanism: lib.CKM_ECDSA }, key.handle);
        const raw = await p11.C_SignAsync(s, digest, Buffer.alloc(200));
        return rawToDer(raw);
      }
      if (algo === 'ed25519') {
        if (key.keyType !== CKK_EC_EDWARDS || key.cls !== lib.CKO_PRIVATE_KEY) throw wrongKey();
        p11.C_SignInit(s, { mechanism: CKM_EDDSA }, key.handle);
        return await p11.C_SignAsync(s, data, Buffer.alloc(128));
      }
      if (algo === 'rsa-pss-sha256') {
        if (key.keyType !== lib.CKK_RSA || key.cls !== lib.CKO_PRIVATE_KEY) throw wrongKey();
        if (!this.caps.pss) throw err('UNSUPPORTED', `pkcs11: token '${this.token.label}' has no RSA-PSS mechanism`);
        const parameter = { type: lib.CK_PARAMS_RSA_PSS, hashAlg: lib.CKM_SHA256, mgf: lib.CKG_MGF1_SHA256, saltLen: 32 };
        // pkcs11js hands the module no data pointer for 0 bytes (SoftHSM2 and kryoptic answer
        // CKR_ARGUMENTS_BAD): an empty message is signed over its local digest with CKM_RSA_PKCS_PSS
        let mech = this.caps.pss;
        if (data.length === 0 && mech === lib.CKM_SHA256_RSA_PKCS_PSS) {
          if (!this.caps.mechanisms.includes(lib.CKM_RSA_PKCS_PSS))
            throw err(
              'INVALID_INPUT',
              `pkcs11: token '${this.token.label}' cannot sign an empty message with RSA-PSS (it has no CKM_RSA_PKCS_PSS)`,
            );
          mech = lib.CKM_RSA_PKCS_PSS;
        }
        const input = mech === lib.CKM_SHA256_RSA_PKCS_PSS ? data : createHash('sha256').update(data).digest();
        p11.C_SignInit(s, { mechanism: mech, parameter }, key.handle);
        return await p11.C_SignAsync(s, input, Buffer.alloc(1024));
      }
      throw err('UNSUPPORTED', `pkcs11: unknown signing algorithm ${String(algo)}`);
    });
  }

  async decryptAsymmetric(keyId: string, ciphertext: Buffer, algo: EncryptionAlgoSpec): Promise<Buffer> {
    const { lib, p11 } = this;
    if (algo !== 'rsa-oaep-sha256') throw err('UNSUPPORTED', `pkcs11: ${algo} is not done by the PKCS#11 driver`);
    if (!this.caps.oaepSha256) throw err('UNSUPPORTED', `pkcs11: rsa-oaep-sha256 decryption is not available: ${this.caps.oaepWhy}`);
    return this.run(
      `decrypt with key '${keyId}'`,
      async (s) => {
        const { key } = this.key(s, keyId);
        if (key.keyType !== lib.CKK_RSA || key.cls !== lib.CKO_PRIVATE_KEY)
          throw err('KEY_USAGE', `pkcs11: key '${keyId}' is not an RSA decryption key`);
        // an RSA ciphertext is exactly as long as the modulus; anything else is refused here (kryoptic
        // answers a wrong length with CKR_DEVICE_ERROR, or CKR_BUFFER_TOO_SMALL if the output buffer is
        // shorter than the modulus, as it was when sized by the ciphertext)
        let n = attrs(p11, s, key.handle, [lib.CKA_MODULUS])[0]!;
        while (n.length > 0 && n[0] === 0) n = n.subarray(1);
        if (ciphertext.length !== n.length)
          throw err(
            'INVALID_CIPHERTEXT',
            `pkcs11: a ciphertext of the RSA-${n.length * 8} key '${keyId}' is ${n.length} bytes, not ${ciphertext.length}`,
          );
        p11.C_DecryptInit(s, oaepMechanism(lib), key.handle);
        return await p11.C_DecryptAsync(s, ciphertext, Buffer.alloc(n.length));
      },
      { CKR_GENERAL_ERROR: 'INVALID_CIPHERTEXT', CKR_FUNCTION_FAILED: 'INVALID_CIPHERTEXT' },
    );
  }

  private secretKey(s: Handle, keyId: string): KeyObj {
    const { key } = this.key(s, keyId);
    if (key.cls !== this.lib.CKO_SECRET_KEY || key.keyType !== this.lib.CKK_AES)
      throw err('KEY_USAGE', `pkcs11: key '${keyId}' is not an AES key`);
    return key;
  }

  private gcm(iv: Buffer) {
    const lib = this.lib;
    return { mechanism: lib.CKM_AES_GCM, parameter: { type: lib.CK_PARAMS_AES_GCM_v240, iv, ivBits: 96, aad: WRAP_AAD, tagBits: 128 } };
  }

  async encryptSymmetric(keyId: string, plaintext: Buffer): Promise<Buffer> {
    if (!this.caps.aesGcm) throw err('UNSUPPORTED', `pkcs11: token '${this.token.label}' has no CKM_AES_GCM`);
    // pkcs11js hands the module no data pointer for 0 bytes, which tokens refuse (CKR_ARGUMENTS_BAD)
    if (plaintext.length === 0) throw err('INVALID_INPUT', 'pkcs11: nothing to encrypt (an empty plaintext)');
    const { p11 } = this;
    return this.run(`encrypt with key '${keyId}'`, async (s) => {
      const key = this.secretKey(s, keyId);
      const iv = randomBytes(12);
      p11.C_EncryptInit(s, this.gcm(iv), key.handle);
      const out = await p11.C_EncryptAsync(s, plaintext, Buffer.alloc(plaintext.length + 16));
      return Buffer.concat([iv, out]);
    });
  }

  async decryptSymmetric(keyId: string, ciphertext: Buffer): Promise<Buffer> {
    if (!this.caps.aesGcm) throw err('UNSUPPORTED', `pkcs11: token '${this.token.label}' has no CKM_AES_GCM`);
    if (ciphertext.length < 12 + 16) throw err('INVALID_CIPHERTEXT', 'pkcs11: ciphertext too short (needs iv ‖ data ‖ 16-byte tag)');
    const { p11 } = this;
    // SoftHSM reports a failed GCM tag check as CKR_GENERAL_ERROR; other tokens use CKR_ENCRYPTED_DATA_INVALID
    return this.run(
      `decrypt with key '${keyId}'`,
      async (s) => {
        const key = this.secretKey(s, keyId);
        p11.C_DecryptInit(s, this.gcm(ciphertext.subarray(0, 12)), key.handle);
        const body = ciphertext.subarray(12);
        return await p11.C_DecryptAsync(s, body, Buffer.alloc(body.length));
      },
      { CKR_GENERAL_ERROR: 'INVALID_CIPHERTEXT', CKR_FUNCTION_FAILED: 'INVALID_CIPHERTEXT' },
    ).catch((e) => {
      if ((e as { code?: string }).code === 'INVALID_CIPHERTEXT')
        throw err('INVALID_CIPHERTEXT', `pkcs11: the ciphertext does not decrypt under key '${keyId}' (wrong key, or altered)`);
      throw e;
    });
  }

  async getPublicKey(keyId: string): Promise<DriverPublicKey> {
    const { lib, p11 } = this;
    return this.run(`read the public key of '${keyId}'`, (s) => {
      const { key, pub } = this.key(s, keyId);
      if (key.cls === lib.CKO_SECRET_KEY) throw err('KEY_USAGE', `pkcs11: key '${keyId}' is symmetric and has no public key`);
      const spec = this.specOf(s, key);
      if (key.keyType === lib.CKK_RSA) {
        const src = pub ?? key; // RSA private objects carry the modulus and exponent too
        const [n, e] = attrs(p11, s, src.handle, [lib.CKA_MODULUS, lib.CKA_PUBLIC_EXPONENT]);
        if (spec !== 'rsa-2048' && spec !== 'rsa-3072')
          throw err('UNSUPPORTED', `pkcs11: key '${keyId}' is ${spec}; keyport uses rsa-2048 and rsa-3072`);
        return { spki: rsaSpki(n!, e!), spec };
      }
      if (!pub) throw err('UNSUPPORTED', `pkcs11: key '${keyId}' has no public-key object on the token (needed for its EC point)`);
      const [point] = attrs(p11, s, pub.handle, [lib.CKA_EC_POINT]);
      if (spec === 'ed25519') return { spki: ed25519Spki(point!), spec };
      if (spec === 'ec-p256' || spec === 'ec-p384' || spec === 'secp256k1') return { spki: ecSpki(spec, point!), spec };
      throw err('UNSUPPORTED', `pkcs11: key '${keyId}' is of a kind keyport does not use (${spec})`);
    });
  }

  async keyExistsAndIsActive(keyId: string): Promise<void> {
    const { lib, p11 } = this;
    await this.run(`look up key '${keyId}'`, (s) => {
      const { key } = this.key(s, keyId);
      // a key none of whose uses is allowed any more counts as disabled
      const uses = key.cls === lib.CKO_SECRET_KEY ? [lib.CKA_ENCRYPT, lib.CKA_DECRYPT] : [lib.CKA_SIGN, lib.CKA_DECRYPT];
      const vals = attrs(p11, s, key.handle, uses);
      if (!vals.some(bool))
        throw err('KEY_DISABLED', `pkcs11: key '${keyId}' allows no operation (CKA_SIGN/CKA_DECRYPT/CKA_ENCRYPT all false)`);
    });
  }

  async deleteKey(keyId: string): Promise<void> {
    const { p11 } = this;
    await this.run(`delete key '${keyId}'`, (s) => {
      const { key } = this.key(s, keyId);
      // both halves: every key object with the key's CKA_ID and label
      const halves = this.objects(s, `id=${key.id.toString('hex')}`).filter((o) => o.label === key.label);
      const all = halves.some((o) => o.handle.equals(key.handle)) ? halves : [key, ...halves];
      for (const o of all) p11.C_DestroyObject(s, o.handle);
    });
  }

  async describeKey(keyId: string): Promise<DriverKeyDescription> {
    const { lib, p11 } = this;
    return this.run(`look up key '${keyId}'`, (s) => {
      const { key } = this.key(s, keyId);
      const spec = this.specOf(s, key);
      const known = ['aes256', 'ec-p256', 'ec-p384', 'secp256k1', 'ed25519', 'rsa-2048', 'rsa-3072'].includes(spec);
      const flag = (t: number) => {
        try {
          return bool(attrs(p11, s, key.handle, [t])[0]!);
        } catch {
          return false; // an attribute the token does not report allows nothing
        }
      };
      const secret = key.cls === lib.CKO_SECRET_KEY;
      const sign = !secret && flag(lib.CKA_SIGN);
      const decrypt = secret ? flag(lib.CKA_ENCRYPT) && flag(lib.CKA_DECRYPT) : flag(lib.CKA_DECRYPT);
      const cls = secret ? 'secret key' : 'private key';
      const flags = secret ? `CKA_ENCRYPT/CKA_DECRYPT=${decrypt}` : `CKA_SIGN=${sign}, CKA_DECRYPT=${decrypt}`;
      return {
        keyId: this.keyIdOf(key),
        ...(known ? { spec: spec as Spec } : {}),
        sign,
        decrypt,
        native: `a ${spec === 'ec-unknown-curve' ? 'EC key on a curve keyport does not use' : spec} ${cls} with ${flags}`,
        words: { sign: 'CKA_SIGN=true', decrypt: 'CKA_DECRYPT=true' },
      };
    });
  }

  async resolveKeyId(ref: string): Promise<string> {
    return this.run(`look up key '${ref}'`, (s) => this.keyIdOf(this.key(s, ref).key));
  }

  async *listKeys(): AsyncIterable<DriverKeyInfo> {
    const { lib, p11 } = this;
    const infos = await this.run('list keys', (s) => {
      const out: DriverKeyInfo[] = [];
      for (const cls of [lib.CKO_PRIVATE_KEY, lib.CKO_SECRET_KEY]) {
        for (const h of find(p11, s, [{ type: lib.CKA_CLASS, value: cls }])) {
          const k = this.describe(s, h);
          let spec: string | undefined;
          try {
            spec = this.specOf(s, k);
          } catch {
            spec = undefined;
          }
          out.push({ keyId: this.keyIdOf(k), name: k.label || undefined, kind: this.kindOf(s, k), spec, state: 'enabled' });
        }
      }
      return out;
    });
    yield* infos;
  }

  // ------------------------------------------------------------------------------- import (BYOK)

  async importKey(material: KeyMaterialForImport, name?: string): Promise<string> {
    const { lib, p11 } = this;
    const label = this.newLabel(name);
    const id = randomBytes(16);
    if (material.kind === 'symmetric') {
      if (material.spec !== 'aes256' || material.secret.length !== 32)
        throw err('INVALID_INPUT', 'pkcs11: a symmetric key to import must be 32 raw bytes (aes256)');
      const template = [
        { type: lib.CKA_CLASS, value: lib.CKO_SECRET_KEY },
        { type: lib.CKA_KEY_TYPE, value: lib.CKK_AES },
        ...this.common(label, id),
        ...this.privateAttrs(),
        ...this.usage('symmetric', 'secret'),
      ];
      return this.run(`import key '${label}'`, async (s) => {
        this.ensureFree(s, label);
        if (this.caps.kwp) await this.unwrap(s, material.secret, template);
        else p11.C_CreateObject(s, [...template, { type: lib.CKA_VALUE, value: material.secret }]);
        return label;
      });
    }
    let priv: KeyObject;
    try {
      priv = createPrivateKey({ key: material.secret, format: 'der', type: 'pkcs8' });
    } catch {
      throw err('INVALID_INPUT', 'pkcs11: the key to import is not a PKCS#8 DER private key');
    }
    const spec = specOfKeyObject(priv);
    if (spec !== material.spec)
      throw err('INVALID_INPUT', `pkcs11: the key to import is ${spec ?? 'of an unsupported type'}, not ${material.spec}`);
    const kind: Kind = material.kind;
    if (kind === 'encryption' && !this.supportedEncryptionKeySpecs().includes(spec as EncryptionKeySpec)) {
      throw err(
        'UNSUPPORTED',
        `pkcs11: no ${spec} encryption keys: ${spec.startsWith('rsa') ? this.caps.oaepWhy : 'this driver does no ECIES'}`,
      );
    }
    if (kind === 'signing' && !this.supportedSigningKeySpecs().includes(spec as SigningKeySpec)) {
      throw err('UNSUPPORTED', `pkcs11: token '${this.token.label}' cannot use ${spec} signing keys`);
    }
    const jwk = priv.export({ format: 'jwk' }) as JsonWebKey;
    const b = (v: string | undefined) => Buffer.from(v ?? '', 'base64url');
    const keyType = spec === 'ed25519' ? CKK_EC_EDWARDS : spec.startsWith('rsa') ? lib.CKK_RSA : lib.CKK_EC;
    const privTemplate = [
      { type: lib.CKA_CLASS, value: lib.CKO_PRIVATE_KEY },
      { type: lib.CKA_KEY_TYPE, value: keyType },
      ...this.common(label, id),
      ...this.privateAttrs(),
      ...this.usage(kind, 'private'),
    ];
    let pubSpecific: Array<{ type: number; value: Buffer }>;
    let privComponents: Array<{ type: number; value: Buffer }>;
    if (keyType === lib.CKK_RSA) {
      pubSpecific = [
        { type: lib.CKA_MODULUS, value: b(jwk.n) },
        { type: lib.CKA_PUBLIC_EXPONENT, value: b(jwk.e) },
      ];
      privComponents = [
        ...pubSpecific,
        { type: lib.CKA_PRIVATE_EXPONENT, value: b(jwk.d) },
        { type: lib.CKA_PRIME_1, value: b(jwk.p) },
        { type: lib.CKA_PRIME_2, value: b(jwk.q) },
        { type: lib.CKA_EXPONENT_1, value: b(jwk.dp) },
        { type: lib.CKA_EXPONENT_2, value: b(jwk.dq) },
        { type: lib.CKA_COEFFICIENT, value: b(jwk.qi) },
      ];
    } else if (keyType === CKK_EC_EDWARDS) {
      pubSpecific = [
        { type: lib.CKA_EC_PARAMS, value: ED25519_PARAMS },
        { type: lib.CKA_EC_POINT, value: octetString(b(jwk.x)) },
      ];
      privComponents = [
        { type: lib.CKA_EC_PARAMS, value: ED25519_PARAMS },
        { type: lib.CKA_VALUE, value: b(jwk.d) },
      ];
    } else {
      const params = CURVES[spec as EcSpec].params;
      pubSpecific = [
        { type: lib.CKA_EC_PARAMS, value: params },
        { type: lib.CKA_EC_POINT, value: octetString(Buffer.concat([Buffer.from([4]), b(jwk.x), b(jwk.y)])) },
      ];
      privComponents = [
        { type: lib.CKA_EC_PARAMS, value: params },
        { type: lib.CKA_VALUE, value: b(jwk.d) },
      ];
    }
    const pubTemplate = [
      { type: lib.CKA_CLASS, value: lib.CKO_PUBLIC_KEY },
      { type: lib.CKA_KEY_TYPE, value: keyType },
      ...this.common(label, id),
      { type: lib.CKA_PRIVATE, value: false },
      ...pubSpecific,
      ...this.usage(kind, 'public'),
    ];
    return this.run(`import key '${label}'`, async (s) => {
      this.ensureFree(s, label);
      // SoftHSM 2.6 cannot unwrap an Ed25519 PKCS#8; RSA/EC go through C_UnwrapKey
      const privHandle =
        this.caps.kwp && keyType !== CKK_EC_EDWARDS
          ? await this.unwrap(s, material.secret, privTemplate)
          : p11.C_CreateObject(s, [...privTemplate, ...privComponents]);
      try {
        p11.C_CreateObject(s, pubTemplate);
      } catch (e) {
        try {
          p11.C_DestroyObject(s, privHandle);
        } catch {
          /* best effort */
        }
        throw e;
      }
      return label;
    });
  }

  /**
   * C_UnwrapKey with AES-KWP (RFC 5649; caps.kwp) under a transient session AES key. The transient
   * key is made here (C_CreateObject), wraps the material locally and is destroyed right after.
   */
  private async unwrap(
    s: Handle,
    secret: Buffer,
    template: Array<{ type: number; value?: number | boolean | string | Buffer }>,
  ): Promise<Handle> {
    const { lib, p11 } = this;
    const kek = randomBytes(32);
    const wrapped = aesKeyWrap(kek, secret, true);
    const kekHandle = p11.C_CreateObject(s, [
      { type: lib.CKA_CLASS, value: lib.CKO_SECRET_KEY },
      { type: lib.CKA_KEY_TYPE, value: lib.CKK_AES },
      { type: lib.CKA_TOKEN, value: false },
      { type: lib.CKA_SENSITIVE, value: true },
      { type: lib.CKA_EXTRACTABLE, value: false },
      { type: lib.CKA_UNWRAP, value: true },
      { type: lib.CKA_VALUE, value: kek },
    ]);
    kek.fill(0);
    try {
      return await p11.C_UnwrapKeyAsync(s, { mechanism: this.caps.kwp }, kekHandle, wrapped, template);
    } finally {
      try {
        p11.C_DestroyObject(s, kekHandle);
      } catch {
        /* a session object; it goes with the session anyway */
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.token.close();
  }
}

function specOfKeyObject(k: KeyObject): Spec | undefined {
  const d = k.asymmetricKeyDetails ?? {};
  switch (k.asymmetricKeyType) {
    case 'ed25519':
      return 'ed25519';
    case 'ec':
      return d.namedCurve === 'prime256v1'
        ? 'ec-p256'
        : d.namedCurve === 'secp384r1'
          ? 'ec-p384'
          : d.namedCurve === 'secp256k1'
            ? 'secp256k1'
            : undefined;
    case 'rsa':
      return d.modulusLength === 2048 ? 'rsa-2048' : d.modulusLength === 3072 ? 'rsa-3072' : undefined;
    default:
      return undefined;
  }
}

// re-exported for tests / the lead: the PKCS#11 3.0 numbers pkcs11js lacks
export const MECHANISMS = { CKK_EC_EDWARDS, CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA, CKM_AES_KEY_WRAP_PAD, CKM_AES_KEY_WRAP_KWP } as const;
