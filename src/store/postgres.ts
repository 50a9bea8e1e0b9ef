/**
 * The shared store: PostgreSQL, for several stateless server replicas. Every read goes to the
 * database (the server layer caches with a TTL); every write is one statement or one transaction, so
 * replicas never see half a change.
 *
 *   keyport_keys(name text primary key collate "C", record jsonb, revision bigint, updated_at timestamptz)
 *   keyport_meta(key text primary key, value text)
 *
 * Names sort in byte order (collation "C"), the order every keyport store lists in. The schema is
 * created on open when missing, under a transaction-scoped advisory lock so replicas starting together
 * do not race on the DDL. Connection string: a `postgresql://` URL or libpq `key=value` pairs; keyport's
 * own parameters (`pool-size`, `statement-timeout` in ms, `connect-timeout` in s, `table`) are taken out
 * before the rest goes to the driver.
 */
import type PgT from 'pg';
import { err, isKeyportError, type KeyportError } from '../errors.js';
import type { KeyRecord, ListOptions, ListPage, RecordStore, StoreCallOptions } from './types.js';
import { cancelled, checkCancelled } from '../cancel.js';
import { checkUpdated, parseRecord } from './record.js';
import { StoreMissingError } from './missing.js';

export interface PostgresStoreOptions {
  /** name of the keys table (the meta table is `<table>_meta`); default keyport_keys / keyport_meta */
  table?: string;
  /** create the tables when they are missing (default true); false: a missing store is NOT_FOUND (StoreMissingError) */
  create?: boolean;
}

const KEYPORT_PARAMS = ['pool-size', 'statement-timeout', 'connect-timeout', 'table'] as const;
const LIBPQ_KEYS: Record<string, keyof PgT.PoolConfig> = {
  host: 'host',
  hostaddr: 'host',
  port: 'port',
  user: 'user',
  password: 'password',
  dbname: 'database',
  application_name: 'application_name',
};

interface Parsed {
  config: PgT.PoolConfig;
  /** user@host:port/db, never the password */
  label: string;
  password?: string;
  params: Record<string, string>;
}

/** Split a connection string into the driver's config and keyport's parameters. */
export function parseConnection(conn: string): Parsed {
  const params: Record<string, string> = {};
  const s = conn.trim();
  if (/^postgres(ql)?:\/\//i.test(s)) {
    let url: URL;
    try {
      url = new URL(s);
    } catch {
      throw err('USAGE', `postgres: the connection string is not a valid URL: use postgresql://USER:PASSWORD@HOST:PORT/DATABASE`);
    }
    for (const k of KEYPORT_PARAMS) {
      const v = url.searchParams.get(k);
      if (v !== null) params[k] = v;
      url.searchParams.delete(k);
    }
    const password = url.password ? safeDecode(url.password) : undefined;
    const host = safeDecode(url.hostname) || 'localhost';
    const label = `${url.username ? safeDecode(url.username) + '@' : ''}${host}:${url.port || '5432'}${url.pathname || '/'}`;
    return { config: { connectionString: url.toString() }, label, password, params };
  }
  // libpq keyword/value form: `host=h port=5432 user=u password='p w' dbname=d` (';' also separates)
  const config: PgT.PoolConfig = {};
  const re = /\s*([A-Za-z_-]+)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|([^\s;']*))\s*;?/gy;
  let m: RegExpExecArray | null;
  let pos = 0;
  while (pos < s.length && (m = re.exec(s))) {
    pos = re.lastIndex;
    const k = m[1]!;
    const v = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]!;
    if ((KEYPORT_PARAMS as readonly string[]).includes(k)) params[k] = v;
    else if (k === 'sslmode') {
      if (v !== 'disable') config.ssl = v === 'verify-full' || v === 'verify-ca' ? true : { rejectUnauthorized: false };
    } else if (k === 'connect_timeout') params['connect-timeout'] = v;
    else if (LIBPQ_KEYS[k]) (config as Record<string, unknown>)[LIBPQ_KEYS[k]] = k === 'port' ? Number(v) : v;
    else
      throw err(
        'USAGE',
        `postgres: unknown connection parameter '${k}': use host, port, user, password, dbname, sslmode, or a postgresql:// URL`,
      );
  }
  if (pos < s.length || s === '')
    throw err(
      'USAGE',
      `postgres: cannot read the connection string: use postgresql://USER:PASSWORD@HOST:PORT/DATABASE or host=… user=… dbname=…`,
    );
  const label = `${config.user ? config.user + '@' : ''}${config.host ?? 'localhost'}:${config.port ?? 5432}/${config.database ?? ''}`;
  return { config, label, password: typeof config.password === 'string' ? config.password : undefined, params };
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function intParam(params: Record<string, string>, key: string, def: number, min: number, max: number): number {
  const raw = params[key];
  if (raw === undefined) return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw err('USAGE', `postgres: ${key}=${raw} is not a whole number from ${min} to ${max}`);
  return n;
}

const IDENT = /^[a-z_][a-z0-9_]{0,50}$/;

export async function openPostgresStore(conn: string, uri: string, opts: PostgresStoreOptions = {}): Promise<RecordStore> {
  const parsed = parseConnection(conn);
  const table = opts.table ?? parsed.params['table'] ?? 'keyport_keys';
  if (!IDENT.test(table)) throw err('USAGE', `postgres: table '${table}' is not a plain lower-case SQL name (a-z, 0-9, _)`);
  const metaTable = table === 'keyport_keys' ? 'keyport_meta' : `${table}_meta`;
  const poolSize = intParam(parsed.params, 'pool-size', 10, 1, 1000);
  const statementTimeout = intParam(parsed.params, 'statement-timeout', 30_000, 0, 3_600_000);
  const connectTimeout = intParam(parsed.params, 'connect-timeout', 10, 1, 3600);

  const pg = (await import('pg')).default;
  const pool = new pg.Pool({
    ...parsed.config,
    max: poolSize,
    statement_timeout: statementTimeout || false,
    connectionTimeoutMillis: connectTimeout * 1000,
    idleTimeoutMillis: 30_000,
    allowExitOnIdle: true,
    application_name: parsed.config.application_name ?? 'keyport',
  });
  // an idle client losing its server emits on the pool: without a listener that would kill the process;
  // the pool drops the client, and the next query gets a fresh connection (or a clear UNAVAILABLE)
  pool.on('error', () => {});
  const store = new PostgresStore(pool, uri, parsed, table, metaTable);
  try {
    await store.init(opts.create !== false);
  } catch (e) {
    await pool.end().catch(() => {});
    throw e;
  }
  return store;
}

/** Map a pg / socket error to a one-line KeyportError; never the password, never a stack. */
function mapError(e: unknown, where: string, secret: string | undefined): KeyportError {
  if (isKeyportError(e)) return e;
  const x = e as { code?: string; message?: string; errno?: number };
  const code = typeof x.code === 'string' ? x.code : '';
  let msg = String(x.message ?? e)
    .replace(/\s*\n\s*/g, ' ')
    .trim();
  if (secret) msg = msg.split(secret).join('***');
  msg = msg.replace(/(\/\/[^:/@\s]+:)[^@\s]*@/g, '$1***@');
  const cls = code.slice(0, 2);
  // a server-side error carries a five-character SQLSTATE; socket errors carry E-codes (ECONNREFUSED)
  const sqlState = /^[0-9A-Z]{5}$/.test(code) && !/^E[A-Z]+$/.test(code);
  switch (true) {
    case code === '28P01' || code === '28000':
      return err('AUTH', `${where}: authentication failed (${msg}): check the user and password in the connection string`);
    case code === '42501':
      return err('PERMISSION', `${where}: permission denied (${msg}): grant the keyport role access to its tables`);
    case code === '3D000':
      return err('UNAVAILABLE', `${where}: ${msg}: create the database or fix the connection string`, { retryable: false });
    case code === '57014':
      return err('TIMEOUT', `${where}: statement timed out (${msg}): the database is slow or locked; retry, or raise statement-timeout`);
    case code === '40001' || code === '40P01' || code === '55P03':
      return err('CONFLICT', `${where}: concurrent update (${msg}): retry`);
    case code === '53300' || cls === '53':
      return err('THROTTLED', `${where}: the server is out of resources (${msg}): retry later or lower pool-size`);
    case cls === '08' || code === '57P01' || code === '57P02' || code === '57P03':
      return err('UNAVAILABLE', `${where}: connection lost (${msg}): check that PostgreSQL is running; retry`);
    case code === '22021' || code === '22P02' || code === '22P05':
      return err('INVALID_INPUT', `${where}: the database refused a value (${msg})`);
    case /^E[A-Z]+$/.test(code) || (!sqlState && /connect|terminat|timeout|socket|closed|not queryable/i.test(msg)):
      return err(
        'UNAVAILABLE',
        `${where}: cannot reach PostgreSQL (${msg || code}): check host and port, and that the server is running; retry`,
      );
    case !sqlState && /SSL|TLS|certificate/i.test(msg):
      return err('UNAVAILABLE', `${where}: TLS problem (${msg}): fix sslmode or the server certificate`, { retryable: false });
    default:
      return err('INTERNAL', `${where}: PostgreSQL error${code ? ` ${code}` : ''}: ${msg}`);
  }
}

const likeEscape = (s: string) => s.replace(/[\\%_]/g, '\\$&');

class PostgresStore implements RecordStore {
  readonly capabilities = { transactions: true, kind: 'postgres' };
  private closed = false;
  private readonly where: string;
  private readonly sql;

  constructor(
    private pool: PgT.Pool,
    readonly uri: string,
    private parsed: Parsed,
    private table: string,
    private metaTable: string,
  ) {
    this.where = `PostgreSQL store ${parsed.label}`;
    const t = `"${table}"`;
    const mt = `"${metaTable}"`;
    this.sql = {
      insert: `INSERT INTO ${t} (name, record, revision, updated_at) VALUES ($1, $2::jsonb, 1, now())`,
      get: `SELECT record::text AS record FROM ${t} WHERE name = $1`,
      getForUpdate: `SELECT record::text AS record FROM ${t} WHERE name = $1 FOR UPDATE`,
      getManyForUpdate: `SELECT name, record::text AS record FROM ${t} WHERE name = ANY($1::text[]) ORDER BY name COLLATE "C" FOR UPDATE`,
      list: `SELECT name FROM ${t} WHERE name > $1 AND name >= $2 AND name LIKE $3 ESCAPE '\\' ORDER BY name COLLATE "C" LIMIT $4`,
      del: `DELETE FROM ${t} WHERE name = $1`,
      update: `UPDATE ${t} SET record = $2::jsonb, revision = revision + 1, updated_at = now() WHERE name = $1`,
      upsertMany: `INSERT INTO ${t} AS k (name, record, revision, updated_at)
                   SELECT n, r, 1, now() FROM unnest($1::text[], $2::jsonb[]) AS u(n, r)
                   ON CONFLICT (name) DO UPDATE SET record = excluded.record, revision = k.revision + 1, updated_at = now()`,
      insertMany: `INSERT INTO ${t} (name, record, revision, updated_at)
                   SELECT n, r, 1, now() FROM unnest($1::text[], $2::jsonb[]) AS u(n, r)
                   ON CONFLICT (name) DO NOTHING RETURNING name`,
      getMeta: `SELECT value FROM ${mt} WHERE key = $1`,
      setMeta: `INSERT INTO ${mt} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
      delMeta: `DELETE FROM ${mt} WHERE key = $1`,
      exists: `SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL AS ok`,
      ddl: [
        `CREATE TABLE IF NOT EXISTS ${t} (
           name text COLLATE "C" PRIMARY KEY,
           record jsonb NOT NULL,
           revision bigint NOT NULL,
           updated_at timestamptz NOT NULL DEFAULT now())`,
        `CREATE TABLE IF NOT EXISTS ${mt} (key text COLLATE "C" PRIMARY KEY, value text NOT NULL)`,
      ],
    };
  }

  private fail(e: unknown): never {
    throw mapError(e, this.where, this.parsed.password);
  }

  private live(): void {
    if (this.closed) throw err('UNAVAILABLE', `${this.where} is closed`, { retryable: false });
  }

  /** one statement; reads are retried once when the connection dropped (a replica after a DB restart) */
  private async q(text: string, values: unknown[], read = false, o?: StoreCallOptions): Promise<PgT.QueryResult> {
    this.live();
    const run = () => (o?.signal ? this.onClient(o.signal, (c) => c.query(text, values)) : this.pool.query(text, values));
    try {
      return await run();
    } catch (e) {
      const k = mapError(e, this.where, this.parsed.password);
      if (!read || k.code !== 'UNAVAILABLE' || !k.retryable || o?.signal?.aborted) throw k;
      try {
        return await run();
      } catch (e2) {
        this.fail(e2);
      }
    }
  }

  /**
   * A pooled connection for a caller with a signal: waiting for a free one stops when the signal fires
   * (a connection that arrives later goes back to the pool).
   */
  private connect(signal?: AbortSignal): Promise<PgT.PoolClient> {
    const p = this.pool.connect();
    if (!signal) return p;
    return new Promise((resolve, reject) => {
      let done = false;
      const onAbort = () => {
        if (done) return;
        done = true;
        p.then(
          (c) => c.release(),
          () => undefined,
        );
        reject(cancelled(this.where, signal));
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      p.then(
        (c) => {
          signal.removeEventListener('abort', onAbort);
          if (done) return;
          done = true;
          resolve(c);
        },
        (e) => {
          signal.removeEventListener('abort', onAbort);
          if (!done) reject(e);
          done = true;
        },
      );
    });
  }

  /**
   * run `fn` on one connection while the caller waits: when its signal fires, PostgreSQL cancels the
   * statement running for it (pg_cancel_backend: its transaction rolls back) and the call fails with
   * TIMEOUT; a connection that saw a cancel is not reused
   */
  private async onClient<T>(signal: AbortSignal, fn: (c: PgT.PoolClient, unusable: () => void) => Promise<T>): Promise<T> {
    let c: PgT.PoolClient;
    try {
      c = await this.connect(signal);
    } catch (e) {
      this.fail(e);
    }
    let drop = false;
    const pid = (c as unknown as { processID?: number }).processID;
    const onAbort = () => {
      drop = true;
      if (pid) this.pool.query('SELECT pg_cancel_backend($1)', [pid]).catch(() => undefined);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      checkCancelled(this.where, signal);
      return await fn(c, () => {
        drop = true;
      });
    } catch (e) {
      if (signal.aborted) throw cancelled(this.where, signal);
      throw e;
    } finally {
      signal.removeEventListener('abort', onAbort);
      // a cancel that may still land, or a transaction that could not be closed: the connection goes
      c.release(drop || undefined);
    }
  }

  /** run fn in one transaction on one pooled connection: all or nothing; the caller's signal cancels it (rolled back) */
  private async tx<T>(fn: (c: PgT.PoolClient) => Promise<T>, o?: StoreCallOptions): Promise<T> {
    this.live();
    if (o?.signal) {
      const signal = o.signal;
      try {
        return await this.onClient(signal, async (c, unusable) => {
          await c.query('BEGIN');
          try {
            const r = await fn(c);
            // the caller is gone: its work is rolled back (the connection is dropped), not committed
            checkCancelled(this.where, signal);
            await c.query('COMMIT');
            return r;
          } catch (e) {
            if (signal.aborted) unusable();
            else await c.query('ROLLBACK').catch(unusable);
            throw e;
          }
        });
      } catch (e) {
        this.fail(e);
      }
    }
    let c: PgT.PoolClient;
    try {
      c = await this.pool.connect();
    } catch (e) {
      this.fail(e);
    }
    let broken: Error | undefined;
    try {
      await c.query('BEGIN');
      const r = await fn(c);
      await c.query('COMMIT');
      return r;
    } catch (e) {
      try {
        await c.query('ROLLBACK');
      } catch (re) {
        broken = re as Error; // the connection is unusable: do not return it to the pool
      }
      this.fail(e);
    } finally {
      c.release(broken);
    }
  }

  async init(create = true): Promise<void> {
    // tables already there (the usual case): no DDL, so a role without CREATE rights works too
    const ok = await this.q(this.sql.exists, [`"${this.table}"`, `"${this.metaTable}"`], true);
    if (ok.rows[0]?.ok) return;
    if (!create)
      throw new StoreMissingError(
        this.uri,
        `store ${this.uri} does not exist (no table ${this.table}): check the address (key create, key import, key register, node init ` +
          `and migrate --to create a store)`,
      );
    await this.tx(async (c) => {
      // replicas starting together: one runs the DDL, the others wait and find the tables there
      await c.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`keyport-schema:${this.table}`]);
      for (const d of this.sql.ddl) await c.query(d);
    });
  }

  async create(rec: KeyRecord, o?: StoreCallOptions): Promise<void> {
    this.live();
    try {
      if (o?.signal) await this.onClient(o.signal, (c) => c.query(this.sql.insert, [rec.name, JSON.stringify(rec)]));
      else await this.pool.query(this.sql.insert, [rec.name, JSON.stringify(rec)]);
    } catch (e) {
      if ((e as { code?: string }).code === '23505') throw err('EXISTS', `key '${rec.name}' already exists`);
      this.fail(e);
    }
  }

  async get(name: string, o?: StoreCallOptions): Promise<KeyRecord> {
    const r = await this.q(this.sql.get, [name], true, o);
    if (r.rowCount === 0) throw err('NOT_FOUND', `key '${name}' does not exist`);
    return parseRecord(r.rows[0].record as string, `key '${name}'`);
  }

  async list(opts: ListOptions & StoreCallOptions = {}): Promise<ListPage> {
    const limit = Math.max(1, Math.min(opts.limit ?? 1000, 100_000));
    const prefix = opts.prefix ?? '';
    const r = await this.q(this.sql.list, [opts.after ?? '', prefix, likeEscape(prefix) + '%', limit + 1], true, opts);
    const names = r.rows.map((row) => row.name as string);
    if (names.length > limit) {
      names.length = limit;
      return { names, next: names[limit - 1] };
    }
    return { names };
  }

  async delete(name: string, o?: StoreCallOptions): Promise<void> {
    const r = await this.q(this.sql.del, [name], false, o);
    if (r.rowCount === 0) throw err('NOT_FOUND', `key '${name}' does not exist`);
  }

  async replace(rec: KeyRecord, o?: StoreCallOptions): Promise<void> {
    const r = await this.q(this.sql.update, [rec.name, JSON.stringify(rec)], false, o);
    if (r.rowCount === 0) throw err('NOT_FOUND', `key '${rec.name}' does not exist`);
  }

  async update(name: string, fn: (cur: KeyRecord) => KeyRecord, o?: StoreCallOptions): Promise<KeyRecord> {
    // the row lock (FOR UPDATE) holds other replicas' read-modify-writes of this key until we commit
    return this.tx(async (c) => {
      const r = await c.query(this.sql.getForUpdate, [name]);
      if (r.rowCount === 0) throw err('NOT_FOUND', `key '${name}' does not exist`);
      const next = fn(parseRecord(r.rows[0].record as string, `key '${name}'`));
      checkUpdated(name, next);
      await c.query(this.sql.update, [name, JSON.stringify(next)]);
      return next;
    }, o);
  }

  async updateMany(
    names: string[],
    fn: (cur: KeyRecord) => KeyRecord | undefined,
    meta?: Record<string, string | undefined>,
    o?: StoreCallOptions,
  ): Promise<void> {
    // rows locked in name order, so two such transactions cannot deadlock each other
    await this.tx(async (c) => {
      const sorted = [...new Set(names)].sort();
      for (let i = 0; i < sorted.length; i += 1000) {
        const r = await c.query(this.sql.getManyForUpdate, [sorted.slice(i, i + 1000)]);
        const changed: KeyRecord[] = [];
        for (const row of r.rows) {
          const name = row.name as string;
          const next = fn(parseRecord(row.record as string, `key '${name}'`));
          if (!next) continue;
          checkUpdated(name, next);
          changed.push(next);
        }
        if (changed.length) await c.query(this.sql.upsertMany, [changed.map((x) => x.name), changed.map((x) => JSON.stringify(x))]);
      }
      for (const [k, v] of Object.entries(meta ?? {})) {
        await c.query(v === undefined ? this.sql.delMeta : this.sql.setMeta, v === undefined ? [k] : [k, v]);
      }
    }, o);
  }

  async putMany(recs: KeyRecord[], meta?: Record<string, string | undefined>, o?: StoreCallOptions): Promise<void> {
    // the last record of a name wins (one statement cannot update a row twice)
    const byName = new Map<string, KeyRecord>();
    for (const r of recs) byName.set(r.name, r);
    const all = [...byName.values()];
    await this.tx(async (c) => {
      for (let i = 0; i < all.length; i += 1000) {
        const chunk = all.slice(i, i + 1000);
        await c.query(this.sql.upsertMany, [chunk.map((r) => r.name), chunk.map((r) => JSON.stringify(r))]);
      }
      for (const [k, v] of Object.entries(meta ?? {})) {
        await c.query(v === undefined ? this.sql.delMeta : this.sql.setMeta, v === undefined ? [k] : [k, v]);
      }
    }, o);
  }

  async createMany(recs: KeyRecord[], o?: StoreCallOptions): Promise<string[]> {
    const inserted = new Set<string>();
    await this.tx(async (c) => {
      for (let i = 0; i < recs.length; i += 1000) {
        const chunk = recs.slice(i, i + 1000);
        const r = await c.query(this.sql.insertMany, [chunk.map((x) => x.name), chunk.map((x) => JSON.stringify(x))]);
        for (const row of r.rows) inserted.add(row.name as string);
      }
    }, o);
    const skipped: string[] = [];
    for (const r of recs) {
      if (inserted.has(r.name))
        inserted.delete(r.name); // a repeated name in the batch: the later ones were skipped
      else skipped.push(r.name);
    }
    return skipped;
  }

  async getMeta(key: string, o?: StoreCallOptions): Promise<string | undefined> {
    const r = await this.q(this.sql.getMeta, [key], true, o);
    return r.rowCount === 0 ? undefined : (r.rows[0].value as string);
  }

  async setMeta(key: string, value: string | undefined, o?: StoreCallOptions): Promise<void> {
    await this.q(value === undefined ? this.sql.delMeta : this.sql.setMeta, value === undefined ? [key] : [key, value], false, o);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end().catch(() => {});
  }
}
