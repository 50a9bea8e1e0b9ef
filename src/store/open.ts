/**
 * Open a RecordStore for a StoreAddress (parsed once, at the edge: store/address.ts). Backends are
 * imported lazily so unused drivers cost nothing.
 */
import { err } from '../errors.js';
import { STORE_SCHEMES, StoreAddress, isStoreScheme } from './address.js';
import type { RecordStore } from './types.js';

export { STORE_SCHEMES, isStoreScheme };

type Opener = (a: StoreAddress) => Promise<RecordStore>;

// a computed specifier: a backend module is only loaded when its scheme is used
const lazy = <T>(file: string): Promise<T> => import(`./${file}.js`) as Promise<T>;

const OPENERS: Record<string, Opener> = {
  sqlite: async (a) => (await import('./sqlite.js')).openSqliteStore(a.path!, a.toString()),
  fs: async (a) => (await import('./fs.js')).openFsStore(a.path!, a.toString()),
  'kes-fs': async (a) =>
    (await lazy<{ openKesFsStore(d: string, uri: string): Promise<RecordStore> }>('kes-fs')).openKesFsStore(a.path!, a.toString()),
  postgres: async (a) =>
    (await lazy<{ openPostgresStore(c: string, uri: string): Promise<RecordStore> }>('postgres')).openPostgresStore(
      a.attrs['connection']!,
      a.toString(),
    ),
  awssm: async (a) =>
    (await lazy<{ openAwsSmStore(p: Record<string, string>, uri: string): Promise<RecordStore> }>('awssm')).openAwsSmStore(
      a.params(),
      a.toString(),
    ),
};

export async function openRecordStore(address: string | StoreAddress): Promise<RecordStore> {
  const a = typeof address === 'string' ? StoreAddress.parse(address) : address;
  const open = OPENERS[a.scheme];
  if (!open) throw err('USAGE', `'${a.scheme}:' is not a key store: use ${STORE_SCHEMES.map((s) => s + ':').join(', ')} or a KMS`);
  return open(a);
}
