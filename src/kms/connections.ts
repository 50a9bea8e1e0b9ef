/**
 * The connections a process may use, from operator configuration only (store YAML, server config, CLI
 * flags, environment), and the one pool of KMS drivers opened through them. A stored KeyRef / KmsRef is
 * resolved here to a configured KmsAddress; a reference nothing configured resolves is a one-line USAGE
 * error naming the reference and the configuration to add — never an import, a guessed endpoint or a new
 * connection. Wrapper keys and external-key KMSs share this pool (one driver per connection).
 */
import { err } from '../errors.js';
import type { Driver } from './driver.js';
import { openInstrumentedDriver } from './instrument.js';
import { KmsAddress, type KeyRef, type KmsRef, type ParseOptions } from './address.js';

export class Connections {
  private addrs: KmsAddress[] = [];
  private pool = new Map<string, Promise<Driver>>();
  private resolved = new Map<string, Promise<string>>();

  constructor(addrs: (KmsAddress | string)[] = [], opts: ParseOptions = {}) {
    for (const a of addrs) this.add(a, opts);
  }

  /** a connection the operator configured (a string is parsed and validated here, at the edge) */
  add(a: KmsAddress | string, opts: ParseOptions = {}): KmsAddress {
    const addr = typeof a === 'string' ? KmsAddress.parse(a, opts) : a;
    // the newest configuration of the same key or KMS wins (e.g. --wrapper over the YAML)
    this.addrs.unshift(addr);
    return addr;
  }

  get configured(): readonly KmsAddress[] {
    return this.addrs;
  }

  /** the configured connection for a key: one that names this very key, else one to its KMS */
  forKey(ref: KeyRef): KmsAddress | undefined {
    return (
      this.addrs.find((a) => a.wrapperKeyId !== undefined && a.key.equals(ref)) ??
      this.addrs.find((a) => a.scheme !== 'local' && a.kms.equals(ref.kms))
    );
  }

  /** the configured connection for a KMS */
  forKms(ref: KmsRef): KmsAddress | undefined {
    return this.addrs.find((a) => a.kms.equals(ref));
  }

  /** the configured connection for a KMS, or the one-line USAGE error naming the reference and what to configure */
  address(ref: KmsRef, what = 'KMS'): KmsAddress {
    const a = this.forKms(ref);
    if (!a) throw unresolved(`${what} ${ref}`, ref.scheme, `${ref}`);
    return a;
  }

  /** the driver for a configured connection (one per connection, reused) */
  driver(a: KmsAddress): Promise<Driver> {
    const k = a.connectionKey();
    let d = this.pool.get(k);
    if (!d) {
      // retries, timeouts and the KMS audit log come with every driver keyport opens
      d = openInstrumentedDriver(a.withoutKey());
      d.catch(() => this.pool.delete(k));
      this.pool.set(k, d);
    }
    return d;
  }

  /** the driver and the KMS's own id for a stored key reference */
  async key(ref: KeyRef, what = 'key'): Promise<{ driver: Driver; keyId: string; address: KmsAddress }> {
    const a = this.forKey(ref);
    if (!a) throw unresolved(`${what} ${ref}`, ref.kms.scheme, ref.toString());
    const driver = await this.driver(a);
    const rk = `${a.connectionKey()}#${ref.keyId}`;
    let id = this.resolved.get(rk);
    if (!id) {
      id = driver.resolveKeyId ? driver.resolveKeyId(ref.keyId) : Promise.resolve(ref.keyId);
      id.catch(() => this.resolved.delete(rk));
      this.resolved.set(rk, id);
    }
    return { driver, keyId: await id, address: a };
  }

  /** the driver for a stored KMS reference (external keys) */
  async kms(ref: KmsRef, what = 'KMS'): Promise<Driver> {
    return this.driver(this.address(ref, what));
  }

  async close(): Promise<void> {
    for (const d of this.pool.values()) await d.then((x) => x.close?.()).catch(() => undefined);
    this.pool.clear();
    this.resolved.clear();
  }
}

function unresolved(what: string, scheme: string, ref: string): Error {
  const example = scheme === 'local' ? ref : `${scheme}:…`;
  return err(
    'USAGE',
    `no configured connection reaches ${what}: give it with --kms '${example}' (or --wrapper), KEYPORT_KMS, or kms:/envelope.wrapper in ` +
      `the store YAML (docs/connections.md)`,
    { httpStatus: 500 },
  );
}
