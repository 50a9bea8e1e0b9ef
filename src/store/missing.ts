/**
 * A store that is not there. Whether opening may create one is the caller's explicit choice
 * (store/open.ts `create`): only commands that put keys into a store of the user's choosing create one
 * (key create, import, register; node init and import; migrate's target once it has something to write).
 * Everything else finds a missing store a one-line NOT_FOUND (`StoreMissingError`), and migrate plans
 * against a `StandInStore` (empty, in memory, writes nothing) before it creates its target.
 */
import { KeyportError } from '../errors.js';
import type { KeyRecord, ListOptions, ListPage, RecordStore, StoreCapabilities } from './types.js';

export class StoreMissingError extends KeyportError {
  constructor(
    /** the store's redacted address */
    readonly store: string,
    message = `store ${store} does not exist: check the address (key create, key import, key register, node init and migrate --to create a store)`,
  ) {
    super('NOT_FOUND', message);
  }
}

/** the error of opening a store that is not there without `create: true` */
export function isStoreMissing(e: unknown): e is StoreMissingError {
  return e instanceof StoreMissingError;
}

export class StandInStore implements RecordStore {
  private meta = new Map<string, string>();
  constructor(
    readonly uri: string,
    readonly capabilities: StoreCapabilities,
  ) {}
  private refuse(): never {
    throw new KeyportError('INTERNAL', `store ${this.uri} does not exist yet: nothing can be written into its stand-in`);
  }
  async create(_rec: KeyRecord): Promise<void> {
    this.refuse();
  }
  async get(name: string): Promise<KeyRecord> {
    throw new KeyportError('NOT_FOUND', `key '${name}' does not exist`);
  }
  async list(_opts?: ListOptions): Promise<ListPage> {
    return { names: [] };
  }
  async delete(name: string): Promise<void> {
    throw new KeyportError('NOT_FOUND', `key '${name}' does not exist`);
  }
  async replace(rec: KeyRecord): Promise<void> {
    throw new KeyportError('NOT_FOUND', `key '${rec.name}' does not exist`);
  }
  async putMany(recs: KeyRecord[], meta?: Record<string, string | undefined>): Promise<void> {
    if (recs.length) this.refuse();
    for (const [k, v] of Object.entries(meta ?? {})) await this.setMeta(k, v);
  }
  async getMeta(key: string): Promise<string | undefined> {
    return this.meta.get(key);
  }
  async setMeta(key: string, value: string | undefined): Promise<void> {
    if (value === undefined) this.meta.delete(key);
    else this.meta.set(key, value);
  }
  async close(): Promise<void> {}
}
