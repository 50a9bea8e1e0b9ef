/**
 * Store addresses, parsed once at the edge into one typed, validated value per backend (a zod schema per
 * scheme; unknown attributes refused). `identity` is the one notion of "the same store" (sqlite:k.db and
 * sqlite:./k.db are the same file; a PostgreSQL store is its host, port, database and table, whoever logs
 * in); `toString` prints redacted. Openers (store/open.ts) take this value, never a string.
 */
import { resolve } from 'node:path';
import { inspect } from 'node:util';
import { z } from 'zod';
import { err } from '../errors.js';
import { parseUri, type ParsedUri } from '../config/uri.js';
import { redactGeneric } from '../kms/address.js';

export type StoreScheme = 'sqlite' | 'fs' | 'kes-fs' | 'postgres' | 'awssm';

const PathStore = z.object({ path: z.string().min(1) }).strict();
const AwsSm = z
  .object({
    region: z.string().optional(),
    endpoint: z
      .string()
      .regex(/^https?:\/\/\S+$/, 'must be an http(s) URL')
      .optional(),
    profile: z.string().optional(),
    'access-key-id': z.string().optional(),
    'secret-access-key': z.string().optional(),
    'session-token': z.string().optional(),
    'timeout-ms': z.string().regex(/^\d+$/, 'must be a whole number').optional(),
    prefix: z.string().optional(),
    'kms-key-id': z.string().optional(),
    layout: z.enum(['kes', 'keyport']).optional(),
  })
  .strict();

const SCHEMAS: Record<Exclude<StoreScheme, 'postgres'>, z.ZodObject<Record<string, z.ZodType>>> = {
  sqlite: PathStore,
  fs: PathStore,
  'kes-fs': PathStore,
  awssm: AwsSm,
};
const SECRETS = ['secret-access-key', 'session-token'];

export const STORE_SCHEMES: StoreScheme[] = ['sqlite', 'fs', 'kes-fs', 'postgres', 'awssm'];
export const isStoreScheme = (s: string): boolean => (STORE_SCHEMES as string[]).includes(s) || s === 'postgresql';

const EXAMPLE: Record<string, string> = { sqlite: 'sqlite:keys.db', fs: 'fs:./keys', 'kes-fs': 'kes-fs:/var/lib/kes/keys' };

export class StoreAddress {
  private constructor(
    readonly scheme: StoreScheme,
    /** validated attributes; path stores hold an absolute `path`, postgres its `connection` string */
    readonly attrs: Readonly<Record<string, string>>,
  ) {}

  static parse(raw: string, opts: { base?: string } = {}): StoreAddress {
    const u: ParsedUri = parseUri(raw);
    const scheme = u.scheme;
    if (!isStoreScheme(scheme))
      throw err('USAGE', `'${scheme}:' is not a key store: use ${STORE_SCHEMES.map((s) => s + ':').join(', ')} or a KMS`);
    if (scheme === 'postgres' || scheme === 'postgresql') return new StoreAddress('postgres', { connection: u.path! });
    const s = scheme as Exclude<StoreScheme, 'postgres'>;
    const params: Record<string, string> = { ...u.params };
    if (u.path !== undefined && params['path'] === undefined) params['path'] = u.path;
    if (s !== 'awssm' && params['dir'] !== undefined && params['path'] === undefined) {
      params['path'] = params['dir'];
      delete params['dir'];
    }
    if (s !== 'awssm' && !params['path']) throw err('USAGE', `${s}: needs a path, e.g. ${EXAMPLE[s]}`);
    const r = SCHEMAS[s].safeParse(params);
    if (!r.success) {
      const i = r.error.issues[0]!;
      if (i.code === 'unrecognized_keys')
        throw err('USAGE', `${s}: does not take ${i.keys.map((k) => `'${k}'`).join(', ')} (in '${redactGeneric(raw)}')`);
      throw err('USAGE', `${s}: ${i.path.join('.') || 'attributes'}: ${i.message}`);
    }
    const attrs = r.data as Record<string, string>;
    if (s !== 'awssm' && attrs['path'] !== ':memory:') attrs['path'] = resolve(opts.base ?? process.cwd(), attrs['path']!);
    return new StoreAddress(s, attrs);
  }

  /** the local path of a file or directory store */
  get path(): string | undefined {
    return this.scheme === 'postgres' || this.scheme === 'awssm' ? undefined : this.attrs['path'];
  }

  /** The one notion of "the same store": what it is, not how it is reached or who logs in. */
  get identity(): string {
    if (this.path !== undefined) return `${this.scheme}:${this.path}`;
    if (this.scheme === 'awssm') {
      const a = this.attrs;
      return `awssm:${a['endpoint'] ?? ''}|${a['region'] ?? process.env.AWS_REGION ?? ''}|${a['prefix'] ?? ''}|${a['layout'] ?? 'kes'}`;
    }
    return `postgres:${postgresIdentity(this.attrs['connection']!)}`;
  }

  equals(o: StoreAddress): boolean {
    return this.identity === o.identity;
  }

  /** what the awssm opener gets */
  params(): Record<string, string> {
    return { ...this.attrs };
  }

  /** redacted: no password, secret key or token */
  toString(): string {
    if (this.path !== undefined) return `${this.scheme}:${this.path}`;
    if (this.scheme === 'postgres') return `postgres:${redactGeneric(this.attrs['connection']!)}`;
    const parts = Object.entries(this.attrs).map(([k, v]) => `${k}=${SECRETS.includes(k) ? '***' : v}`);
    return `awssm:${parts.join(';')}`;
  }

  toJSON(): string {
    return this.toString();
  }

  [inspect.custom](): string {
    return `StoreAddress(${this.toString()})`;
  }
}

/** host, port, database and table of a PostgreSQL connection string (URL or libpq key=value form) */
function postgresIdentity(conn: string): string {
  const s = conn.trim();
  if (/^postgres(ql)?:\/\//i.test(s)) {
    try {
      const u = new URL(s);
      return `${u.hostname || 'localhost'}:${u.port || '5432'}${u.pathname || '/'}|${u.searchParams.get('table') ?? 'keyport_keys'}`;
    } catch {
      return redactGeneric(s);
    }
  }
  const kv: Record<string, string> = {};
  for (const m of s.matchAll(/([A-Za-z_-]+)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|([^\s;']*))/g)) kv[m[1]!] = m[2] ?? m[3] ?? '';
  return `${kv['host'] ?? 'localhost'}:${kv['port'] ?? '5432'}/${kv['dbname'] ?? ''}|${kv['table'] ?? 'keyport_keys'}`;
}
