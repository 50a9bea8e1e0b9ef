/**
 * `local:PATH`: the development KMS. A key is a file (0600): 32 random bytes for a symmetric wrapper
 * key, PKCS#8 PEM for signing/encryption keys; the key id is the file's path. `local:FILE` used as a
 * wrapper key is created on first use. Generated keys go into PATH when it is a directory, else beside
 * it. All crypto is src/crypto's.
 */
import { existsSync, readFileSync, statSync, unlinkSync, readdirSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve, basename } from 'node:path';
import { randomBytes } from 'node:crypto';
import { err } from '../../errors.js';
import type {
  Driver,
  DriverFactory,
  EncryptionAlgoSpec,
  EncryptionKeySpec,
  KeyMaterialForImport,
  SigningAlgoSpec,
  SigningKeySpec,
} from '../driver.js';
import { generateKeyAsync, keyTypeOf, parseKeyMaterial, spkiOf, toPem } from '../../crypto/keys.js';
import { aesGcmDecrypt, aesGcmEncrypt } from '../../crypto/aead.js';
import { signData } from '../../crypto/sign.js';
import { eciesDecrypt, rsaOaepDecrypt } from '../../crypto/asym.js';
import { createFileAtomic } from '../../store/atomic-file.js';
import { createPrivateKey } from 'node:crypto';
import type { KeyType } from '../../crypto/keytypes.js';

const WRAP_AAD = Buffer.from('keyport-local-wrap-v1');
const SIGNING: SigningKeySpec[] = ['ec-p256', 'ec-p384', 'secp256k1', 'ed25519', 'rsa-2048', 'rsa-3072'];
const ENCRYPTION: EncryptionKeySpec[] = ['rsa-2048', 'rsa-3072', 'ec-p256'];

export const factory: DriverFactory = async (params) => {
  const path = params['path'];
  if (!path) throw err('USAGE', 'local: needs a path, e.g. local:/var/lib/keyport/wrapper.key');
  // a trailing '/' names a directory of keys that may not exist yet: keep it (resolve() drops it)
  return new LocalDriver(resolve(path) + (path.endsWith('/') && path !== '/' ? '/' : ''));
};

class LocalDriver implements Driver {
  readonly name = 'local';
  constructor(private base: string) {}

  private dirForNew(): string {
    if (existsSync(this.base) && statSync(this.base).isDirectory()) return this.base;
    if (this.base.endsWith('/')) return this.base;
    return dirname(this.base);
  }

  private resolveId(keyId: string): string {
    return resolve(this.dirForNew(), keyId);
  }

  private read(keyId: string): Buffer {
    const p = this.resolveId(keyId);
    try {
      return readFileSync(p);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw err('NOT_FOUND', `local key ${p} does not exist`);
      if (code === 'EACCES') throw err('PERMISSION', `local key ${p}: permission denied`);
      throw err('UNAVAILABLE', `local key ${p}: ${code}`, { retryable: false });
    }
  }

  /** a wrapper key file named by the URI is created (0600) on first use */
  private symmetric(keyId: string): Buffer {
    const p = this.resolveId(keyId);
    if (!existsSync(p) && p === this.base) {
      try {
        createFileAtomic(p, randomBytes(32));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST')
          throw err('UNAVAILABLE', `cannot create wrapper key ${p}: ${(e as NodeJS.ErrnoException).code}`, { retryable: false });
      }
    }
    const k = this.read(keyId);
    if (k.length !== 32) throw err('KEY_USAGE', `local key ${p} is not a 256-bit symmetric key`);
    return k;
  }

  private privateKey(keyId: string) {
    const b = this.read(keyId);
    try {
      return createPrivateKey(b.toString('latin1'));
    } catch {
      throw err('KEY_USAGE', `local key ${this.resolveId(keyId)} is not a private key`);
    }
  }

  private newPath(name: string | undefined, ext: string): string {
    const dir = this.dirForNew();
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return join(dir, `${name ?? 'key-' + randomBytes(8).toString('hex')}${ext}`);
  }

  private create(path: string, data: Buffer | string): string {
    try {
      createFileAtomic(path, data);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw err('EXISTS', `local key ${path} already exists`);
      throw err('UNAVAILABLE', `cannot write ${path}: ${(e as NodeJS.ErrnoException).code}`, { retryable: false });
    }
    return path;
  }

  async health() {
    const dir = this.dirForNew();
    return existsSync(dir) || existsSync(dirname(dir))
      ? ({ state: 'ok' } as const)
      : ({ state: 'failed', reason: `${dir} does not exist` } as const);
  }
  supportedSigningKeySpecs() {
    return [...SIGNING];
  }
  supportedSigningAlgoSpecs(): SigningAlgoSpec[] {
    return ['ecdsa-sha256', 'ecdsa-sha384', 'ed25519', 'rsa-pss-sha256'];
  }
  supportedEncryptionKeySpecs() {
    return [...ENCRYPTION];
  }
  supportedEncryptionAlgoSpecs(): EncryptionAlgoSpec[] {
    return ['rsa-oaep-sha256', 'ecies-p256-hkdf-sha256-aes-gcm'];
  }

  // off the event loop: a server in external mode on local: keys must not stall on an RSA key
  async generateSigningKeyPair(spec: SigningKeySpec, name?: string) {
    return this.create(this.newPath(name, '.pem'), toPem((await generateKeyAsync(spec)).secret, 'PRIVATE KEY'));
  }
  async generateEncryptionKeyPair(spec: EncryptionKeySpec, name?: string) {
    return this.create(this.newPath(name, '.pem'), toPem((await generateKeyAsync(spec)).secret, 'PRIVATE KEY'));
  }
  async generateSymmetricKey(name?: string) {
    return this.create(this.newPath(name, '.key'), randomBytes(32));
  }
  async importKey(m: KeyMaterialForImport, name?: string) {
    if (m.kind === 'symmetric') {
      if (m.secret.length !== 32) throw err('INVALID_INPUT', 'a symmetric key is 32 bytes');
      return this.create(this.newPath(name, '.key'), m.secret);
    }
    const km = parseKeyMaterial(m.secret, m.spec as KeyType);
    return this.create(this.newPath(name, '.pem'), toPem(km.secret, 'PRIVATE KEY'));
  }

  async sign(keyId: string, data: Buffer, algo: SigningAlgoSpec) {
    const k = this.privateKey(keyId);
    const type = keyTypeOf(k);
    const expected: Record<string, SigningAlgoSpec> = {
      'ec-p256': 'ecdsa-sha256',
      secp256k1: 'ecdsa-sha256',
      'ec-p384': 'ecdsa-sha384',
      ed25519: 'ed25519',
      'rsa-2048': 'rsa-pss-sha256',
      'rsa-3072': 'rsa-pss-sha256',
    };
    if (expected[type] !== algo) throw err('KEY_USAGE', `key ${basename(keyId)} is ${type}: it cannot sign with ${algo}`);
    return signData(type, k, data, 'der');
  }

  async decryptAsymmetric(keyId: string, ciphertext: Buffer, algo: EncryptionAlgoSpec) {
    const k = this.privateKey(keyId);
    const type = keyTypeOf(k);
    if (algo === 'rsa-oaep-sha256' && type.startsWith('rsa-')) return rsaOaepDecrypt(k, ciphertext);
    if (algo === 'ecies-p256-hkdf-sha256-aes-gcm' && type === 'ec-p256') return eciesDecrypt(k, ciphertext);
    throw err('KEY_USAGE', `key ${basename(keyId)} is ${type}: it cannot decrypt with ${algo}`);
  }

  async encryptSymmetric(keyId: string, plaintext: Buffer) {
    return aesGcmEncrypt(this.symmetric(keyId), plaintext, WRAP_AAD);
  }
  async decryptSymmetric(keyId: string, ciphertext: Buffer) {
    return aesGcmDecrypt(this.symmetric(keyId), ciphertext, WRAP_AAD);
  }

  async getPublicKey(keyId: string) {
    const k = this.privateKey(keyId);
    return { spki: spkiOf(k), spec: keyTypeOf(k) as SigningKeySpec };
  }

  async keyExistsAndIsActive(keyId: string) {
    this.read(keyId);
  }

  async deleteKey(keyId: string) {
    const p = this.resolveId(keyId);
    try {
      unlinkSync(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw err('NOT_FOUND', `local key ${p} does not exist`);
      throw err('UNAVAILABLE', `cannot delete ${p}: ${(e as NodeJS.ErrnoException).code}`, { retryable: false });
    }
  }

  async *listKeys() {
    const dir = this.dirForNew();
    if (!existsSync(dir)) return;
    for (const f of readdirSync(dir).sort()) {
      if (f.startsWith('.')) continue;
      if (f.endsWith('.key'))
        yield { keyId: join(dir, f), name: f.slice(0, -4), kind: 'symmetric' as const, spec: 'aes256', state: 'enabled' as const };
      else if (f.endsWith('.pem')) yield { keyId: join(dir, f), name: f.slice(0, -4), state: 'enabled' as const };
    }
  }
}
