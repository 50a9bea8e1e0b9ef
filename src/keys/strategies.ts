/**
 * One strategy object per protection mode — the one place that knows how a store of that mode makes
 * and holds a version's secret:
 *   clear    — generated here, held as it is
 *   envelope — generated here, sealed under the store's wrapper (a KeyRef resolved through Connections)
 *   external — generated or imported inside the store's KMS (a KmsRef resolved through Connections)
 * Opening a version depends on how that version is held (clear, sealed, external), not on the store's
 * mode: `openHeld` does that for every strategy.
 */
import { err } from '../errors.js';
import type { KeyType, Purpose } from '../crypto/keytypes.js';
import { generateKeyAsync } from '../crypto/keys.js';
import { fingerprintOf } from '../crypto/fingerprint.js';
import { parseStoredKeyRef, parseStoredKmsRef } from '../kms/address.js';
import type { Connections } from '../kms/connections.js';
import type { Driver, EncryptionKeySpec, SigningKeySpec } from '../kms/driver.js';
import type { WrapperKeys } from '../store/envelope.js';
import type { Protection } from '../store/protection.js';
import type { VersionRecord } from '../store/types.js';

export type Holding = Pick<VersionRecord, 'clear' | 'sealed' | 'external'>;

export interface ProtectionStrategy {
  readonly mode: Protection['mode'];
  /** a new version: key material generated here (and held) or inside the KMS */
  generate(name: string, type: KeyType, purpose: Purpose, version: number, signal?: AbortSignal): Promise<VersionRecord>;
  /** hold secret bytes that came from elsewhere (import, migration) the way this mode holds secrets */
  hold(name: string, type: KeyType, purpose: Purpose, secret: Buffer, version: number, signal?: AbortSignal): Promise<Holding>;
}

const label = (name: string, version: number) => (version === 1 ? name : `${name}-v${version}`);

/** generated here, then held by `hold` */
abstract class LocalMaterial implements ProtectionStrategy {
  abstract readonly mode: Protection['mode'];
  abstract hold(name: string, type: KeyType, purpose: Purpose, secret: Buffer, version: number, signal?: AbortSignal): Promise<Holding>;

  async generate(name: string, type: KeyType, purpose: Purpose, version: number, signal?: AbortSignal): Promise<VersionRecord> {
    const createdAt = new Date().toISOString();
    // off the event loop: an RSA key takes seconds
    const m = await generateKeyAsync(type, signal);
    return {
      version,
      createdAt,
      ...(m.publicKey ? { publicKey: m.publicKey.toString('base64') } : {}),
      fingerprint: fingerprintOf(type, m),
      ...(await this.hold(name, type, purpose, m.secret, version, signal)),
    };
  }
}

export class ClearStrategy extends LocalMaterial {
  readonly mode = 'clear' as const;
  async hold(_n: string, _t: KeyType, _p: Purpose, secret: Buffer): Promise<Holding> {
    return { clear: secret.toString('base64') };
  }
}

export class EnvelopeStrategy extends LocalMaterial {
  readonly mode = 'envelope' as const;
  constructor(
    private wrapper: string,
    private wrappers: WrapperKeys,
  ) {
    super();
  }
  async hold(_n: string, _t: KeyType, _p: Purpose, secret: Buffer, _v: number, signal?: AbortSignal): Promise<Holding> {
    return { sealed: await this.wrappers.seal(parseStoredKeyRef(this.wrapper, "the store's wrapper key"), secret, { signal }) };
  }
}

export class ExternalStrategy implements ProtectionStrategy {
  readonly mode = 'external' as const;
  constructor(
    private kms: string,
    private connections: Connections,
  ) {}

  private driver(): Promise<Driver> {
    return this.connections.kms(parseStoredKmsRef(this.kms));
  }

  async generate(name: string, type: KeyType, purpose: Purpose, version: number, signal?: AbortSignal): Promise<VersionRecord> {
    const createdAt = new Date().toISOString();
    const driver = await this.driver();
    const l = label(name, version);
    const o = { signal };
    let keyId: string;
    if (type === 'aes256') keyId = await driver.generateSymmetricKey(l, o);
    else if (purpose === 'signing') keyId = await driver.generateSigningKeyPair(type as SigningKeySpec, l, o);
    else keyId = await driver.generateEncryptionKeyPair(type as EncryptionKeySpec, l, o);
    const ext = { kms: this.kms, keyId };
    if (type === 'aes256') return { version, createdAt, fingerprint: `kms:${keyId}`, external: ext };
    const { spki } = await driver.getPublicKey(keyId, o).catch(async (e: unknown) => {
      // the key was made but cannot be recorded (its public key read failed or was cancelled): it goes again
      await driver.deleteKey(keyId).catch(() => undefined);
      throw e;
    });
    return { version, createdAt, publicKey: spki.toString('base64'), fingerprint: fingerprintOf(type, { publicKey: spki }), external: ext };
  }

  async hold(name: string, type: KeyType, purpose: Purpose, secret: Buffer, version: number, signal?: AbortSignal): Promise<Holding> {
    const driver = await this.driver();
    if (!driver.importKey)
      throw err('UNSUPPORTED', `${driver.name} cannot import key material (no BYOK here): create the key in the KMS and register it`);
    const kind = type === 'aes256' ? 'symmetric' : purpose === 'signing' ? 'signing' : 'encryption';
    const keyId = await driver.importKey(
      { kind, spec: type as SigningKeySpec, secret: type === 'aes256' ? secret.subarray(0, 32) : secret },
      label(name, version),
      { signal },
    );
    return { external: { kms: this.kms, keyId } };
  }
}

export function strategyFor(p: Protection, deps: { wrappers: WrapperKeys; connections: Connections }): ProtectionStrategy {
  if (p.mode === 'envelope') return new EnvelopeStrategy(p.wrapper, deps.wrappers);
  if (p.mode === 'external') return new ExternalStrategy(p.kms, deps.connections);
  return new ClearStrategy();
}
