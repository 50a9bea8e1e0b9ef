/** Open a RecordStore by URI. Backends are imported lazily so unused drivers cost nothing. */
import { resolve } from 'node:path';
import { err } from '../errors.js';
import { parseUri, redactUri, type ParsedUri } from '../config/uri.js';
import type { RecordStore } from './types.js';

type Opener = (u: ParsedUri, uri: string) => Promise<RecordStore>;

function needPath(u: ParsedUri, example: string): string {
  const p = u.path ?? u.params['path'] ?? u.params['dir'];
  if (!p) throw err('USAGE', `${u.scheme}: needs a path, e.g. ${example}`);
  return resolve(p);
}

// a computed specifier: a backend module is only loaded when its scheme is used
const lazy = <T>(file: string): Promise<T> => import(`./${file}.js`) as Promise<T>;

const OPENERS: Record<string, Opener> = {
  sqlite: async (u, uri) => (await import('./sqlite.js')).openSqliteStore(needPath(u, 'sqlite:keys.db'), uri),
  fs: async (u, uri) => (await import('./fs.js')).openFsStore(needPath(u, 'fs:./keys'), uri),
  'kes-fs': async (u, uri) =>
    (await lazy<{ openKesFsStore(d: string, uri: string): Promise<RecordStore> }>('kes-fs')).openKesFsStore(
      needPath(u, 'kes-fs:/var/lib/kes/keys'),
      uri,
    ),
  postgres: async (u, uri) =>
    (await lazy<{ openPostgresStore(c: string, uri: string): Promise<RecordStore> }>('postgres')).openPostgresStore(u.path!, uri),
  awssm: async (u, uri) =>
    (await lazy<{ openAwsSmStore(p: Record<string, string>, uri: string): Promise<RecordStore> }>('awssm')).openAwsSmStore(u.params, uri),
};

export const STORE_SCHEMES = Object.keys(OPENERS);

export function isStoreScheme(s: string): boolean {
  return s in OPENERS || s === 'postgresql';
}

export async function openRecordStore(uri: string | ParsedUri): Promise<RecordStore> {
  const u = typeof uri === 'string' ? parseUri(uri) : uri;
  const open = OPENERS[u.scheme];
  if (!open) throw err('USAGE', `'${u.scheme}:' is not a key store: use ${STORE_SCHEMES.map((s) => s + ':').join(', ')} or a KMS`);
  return open(u, redactUri(u.raw));
}
