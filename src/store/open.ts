/**
 * Open a RecordStore for a StoreAddress (parsed once, at the edge: store/address.ts). Backends are
 * imported lazily so unused drivers cost nothing.
 *
 * Whether opening may CREATE the store (a directory, a database file, tables) is the caller's explicit
 * choice (`create`, see store/missing.ts): the CLI says it for every command, and only commands that put
 * keys into a store create one. The library's default stays `true`.
 */
import { existsSync } from 'node:fs';
import { err } from '../errors.js';
import { STORE_SCHEMES, StoreAddress, isStoreScheme } from './address.js';
import { StandInStore, StoreMissingError, isStoreMissing } from './missing.js';
import type { RecordStore, StoreCapabilities } from './types.js';

export { STORE_SCHEMES, isStoreScheme, isStoreMissing };

export interface OpenStoreOptions {
  /**
   * true (the library's default): make the store if it is missing. false: a missing store is a one-line
   * NOT_FOUND (`isStoreMissing`) and nothing is created. 'stand-in': a missing store opens as an empty
   * one held in memory that writes nothing anywhere (what migrate plans against before creating its target).
   */
  create?: boolean | 'stand-in';
}

type Opener = (a: StoreAddress, create: boolean) => Promise<RecordStore>;

// a computed specifier: a backend module is only loaded when its scheme is used
const lazy = <T>(file: string): Promise<T> => import(`./${file}.js`) as Promise<T>;

const OPENERS: Record<string, Opener> = {
  sqlite: async (a) => (await import('./sqlite.js')).openSqliteStore(a.path!, a.toString()),
  fs: async (a) => (await import('./fs.js')).openFsStore(a.path!, a.toString()),
  'kes-fs': async (a) =>
    (await lazy<{ openKesFsStore(d: string, uri: string): Promise<RecordStore> }>('kes-fs')).openKesFsStore(a.path!, a.toString()),
  postgres: async (a, create) =>
    (
      await lazy<{ openPostgresStore(c: string, uri: string, o: { create?: boolean }): Promise<RecordStore> }>('postgres')
    ).openPostgresStore(a.attrs['connection']!, a.toString(), { create }),
  // a secrets-manager store is a name prefix: opening it creates nothing
  awssm: async (a) =>
    (await lazy<{ openAwsSmStore(p: Record<string, string>, uri: string): Promise<RecordStore> }>('awssm')).openAwsSmStore(
      a.params(),
      a.toString(),
    ),
};

/** what a store that is not there yet would be, for its stand-in (the same as the real store's) */
const CAPABILITIES: Record<string, StoreCapabilities> = {
  sqlite: { transactions: true, kind: 'sqlite' },
  fs: { transactions: false, kind: 'fs' },
  'kes-fs': { transactions: false, kind: 'kes-fs', kesOnly: true },
  postgres: { transactions: true, kind: 'postgres' },
};

export async function openRecordStore(address: string | StoreAddress, o: OpenStoreOptions = {}): Promise<RecordStore> {
  const a = typeof address === 'string' ? StoreAddress.parse(address) : address;
  const open = OPENERS[a.scheme];
  if (!open) throw err('USAGE', `'${a.scheme}:' is not a key store: use ${STORE_SCHEMES.map((s) => s + ':').join(', ')} or a KMS`);
  const create = o.create ?? true;
  const standIn = () => new StandInStore(a.toString(), CAPABILITIES[a.scheme]!);
  // a file or directory store that is not there: created only when asked to
  if (create !== true && a.path !== undefined && a.path !== ':memory:' && !existsSync(a.path)) {
    if (create === 'stand-in') return standIn();
    throw new StoreMissingError(a.toString());
  }
  try {
    return await open(a, create === true);
  } catch (e) {
    if (create === 'stand-in' && isStoreMissing(e)) return standIn();
    throw e;
  }
}
