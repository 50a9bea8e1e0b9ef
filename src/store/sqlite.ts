/**
 * The embedded default store: one SQLite file (better-sqlite3), WAL journal, synchronous=FULL so a
 * committed key survives power loss; every write is one transaction (all or nothing).
 *
 * better-sqlite3 is synchronous, and SQLite's own busy handler sleeps in the calling thread: another
 * process holding the write lock (`protect rotate`, `migrate`, `sqlite3`) would freeze a server's
 * event loop for the whole busy timeout. So SQLite is told never to wait (busy_timeout 0) and a busy
 * database is retried here with timers, up to BUSY_WAIT_MS, then refused as THROTTLED (HTTP 503).
 * Readers never wait for a writer in WAL mode, so only writes queue behind another process's lock.
 */
import { mkdirSync, chmodSync, existsSync } from 'node:fs';
import { dirname } from 'node:path';
import type DatabaseT from 'better-sqlite3';
import { err } from '../errors.js';
import type { KeyRecord, ListOptions, ListPage, RecordStore, StoreCallOptions } from './types.js';
import { checkCancelled, sleepUnlessCancelled } from '../cancel.js';
import { checkUpdated, parseRecord, prefixEnd } from './record.js';

/** how long a call waits (asynchronously) for another connection's lock before it is refused */
export const BUSY_WAIT_MS = 5_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const isBusy = (e: unknown) => {
  const code = (e as { code?: string }).code ?? '';
  return code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED');
};

export async function openSqliteStore(path: string, uri: string): Promise<RecordStore> {
  const Database = (await import('better-sqlite3')).default;
  const fresh = !existsSync(path);
  if (fresh) mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  let db: DatabaseT.Database | undefined;
  for (const deadline = Date.now() + BUSY_WAIT_MS; ; ) {
    try {
      db = new Database(path, { timeout: 0 });
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      // overwrite freed content so old clear key bytes do not linger after protect enable / delete
      db.pragma('secure_delete = ON');
      db.exec(`CREATE TABLE IF NOT EXISTS keys (name TEXT PRIMARY KEY, record TEXT NOT NULL) WITHOUT ROWID;
               CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;`);
      break;
    } catch (e) {
      if (db?.open) db.close();
      if (isBusy(e) && Date.now() < deadline) {
        await sleep(25);
        continue;
      }
      if (isBusy(e)) throw err('THROTTLED', `SQLite store ${path} is locked by another process: retry later`);
      throw err('UNAVAILABLE', `cannot open SQLite store ${path}: ${(e as Error).message}`, { retryable: false });
    }
  }
  if (fresh) for (const f of [path, `${path}-wal`, `${path}-shm`]) if (existsSync(f)) chmodSync(f, 0o600);
  return new SqliteStore(db!, uri, path);
}

function freeze(r: KeyRecord): KeyRecord {
  for (const v of r.versions) Object.freeze(v);
  Object.freeze(r.versions);
  Object.freeze(r.usage);
  if (r.meta) Object.freeze(r.meta);
  return Object.freeze(r);
}

class SqliteStore implements RecordStore {
  readonly capabilities = { transactions: true, kind: 'sqlite' };
  private q;
  constructor(
    private db: DatabaseT.Database,
    readonly uri: string,
    private path: string,
  ) {
    this.q = {
      insertIgnore: db.prepare('INSERT OR IGNORE INTO keys (name, record) VALUES (?, ?)'),
      upsert: db.prepare('INSERT INTO keys (name, record) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET record = excluded.record'),
      update: db.prepare('UPDATE keys SET record = ? WHERE name = ?'),
      get: db.prepare('SELECT record FROM keys WHERE name = ?').pluck(),
      del: db.prepare('DELETE FROM keys WHERE name = ?'),
      list: db.prepare('SELECT name FROM keys WHERE name > ? AND name >= ? AND name < ? ORDER BY name LIMIT ?').pluck(),
      getMeta: db.prepare('SELECT value FROM meta WHERE key = ?').pluck(),
      setMeta: db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value'),
      delMeta: db.prepare('DELETE FROM meta WHERE key = ?'),
      dataVersion: db.prepare('PRAGMA data_version').pluck(),
    };
  }

  /**
   * Parsed records, reused while the database is unchanged: `PRAGMA data_version` moves when another
   * connection (process, replica) commits, and our own writes drop what they touch. Consistent, and it
   * spares JSON parsing and validation on the signing hot path. Cached records are frozen.
   */
  private cache = new Map<string, KeyRecord>();
  private dataVersion = -1;

  private fresh(): void {
    const dv = this.q.dataVersion.get() as number;
    if (dv !== this.dataVersion) {
      this.cache.clear();
      this.dataVersion = dv;
    }
  }

  /**
   * one synchronous SQLite call; a busy database is tried again after a timer (never a wait in this
   * thread), with backoff, until BUSY_WAIT_MS have passed or the caller's signal fires
   */
  private async wrap<T>(fn: () => T, o?: StoreCallOptions): Promise<T> {
    const deadline = Date.now() + BUSY_WAIT_MS;
    const what = `SQLite store ${this.path}`;
    for (let pause = 2; ; pause = Math.min(pause * 2, 50)) {
      // a cancelled caller's statement is never started (each runs to its end at once, in this thread)
      checkCancelled(what, o?.signal);
      try {
        return fn();
      } catch (e) {
        const code = (e as { code?: string }).code ?? '';
        if (code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw e;
        if (isBusy(e)) {
          if (Date.now() + pause < deadline) {
            await sleepUnlessCancelled(pause + Math.random() * pause, what, o?.signal);
            continue;
          }
          throw err('THROTTLED', `SQLite store ${this.path} is locked by another process: retry later`);
        }
        if (code.startsWith('SQLITE_'))
          throw err('UNAVAILABLE', `SQLite store ${this.path}: ${(e as Error).message}`, { retryable: false });
        throw e;
      }
    }
  }

  /**
   * Group commit: the creates that arrive in one turn of the event loop are written in one transaction,
   * one fsync (synchronous=FULL) instead of one each — each fsync holds this thread ~0.3–1 ms, so 32
   * concurrent creates (a migration, a server's clients) no longer queue behind one another's. Every
   * caller is answered only after the commit and learns its own outcome: EXISTS for a name already
   * taken, by an earlier create of the same batch too.
   */
  private creates: { rec: KeyRecord; o: StoreCallOptions | undefined; done: (e?: unknown) => void }[] = [];

  async create(rec: KeyRecord, o?: StoreCallOptions): Promise<void> {
    this.cache.delete(rec.name);
    checkCancelled(`SQLite store ${this.path}`, o?.signal);
    return new Promise((resolve, reject) => {
      const n = this.creates.push({ rec, o, done: (e) => (e === undefined ? resolve() : reject(e)) });
      if (n === 1) setImmediate(() => void this.flushCreates());
    });
  }

  private async flushCreates(): Promise<void> {
    let live = this.creates.splice(0);
    // every try (the first, and each after the database was busy) first answers the callers cancelled
    // meanwhile: their records are never written
    const stillWanted = (c: (typeof live)[number]) => {
      try {
        checkCancelled(`SQLite store ${this.path}`, c.o?.signal);
        return true;
      } catch (e) {
        c.done(e);
        return false;
      }
    };
    let taken: boolean[];
    try {
      taken = await this.wrap(() => {
        live = live.filter(stillWanted);
        return live.length ? this.createTx(live.map((c) => c.rec)) : [];
      });
    } catch (e) {
      for (const c of live) c.done(e);
      return;
    }
    for (const [i, c] of live.entries()) c.done(taken[i] ? err('EXISTS', `key '${c.rec.name}' already exists`) : undefined);
  }

  /** one transaction of inserts; per record: was its name taken */
  private createTx(rs: KeyRecord[]): boolean[] {
    return this.db.transaction(() => rs.map((r) => this.q.insertIgnore.run(r.name, JSON.stringify(r)).changes === 0))();
  }

  async get(name: string, o?: StoreCallOptions): Promise<KeyRecord> {
    // only a possible hit needs the version check: a row read now is as fresh as it gets, and if the
    // database has not moved since the last check (which predates every cached row) all rows still hold
    if (this.cache.has(name)) {
      await this.wrap(() => this.fresh(), o);
      const hit = this.cache.get(name);
      if (hit) return hit;
    }
    const r = (await this.wrap(() => this.q.get.get(name), o)) as string | undefined;
    if (r === undefined) throw err('NOT_FOUND', `key '${name}' does not exist`);
    const rec = freeze(parseRecord(r, `key '${name}'`));
    if (this.cache.size >= 4096) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(name, rec);
    return rec;
  }

  async list(opts: ListOptions & StoreCallOptions = {}): Promise<ListPage> {
    const limit = Math.max(1, Math.min(opts.limit ?? 1000, 100_000));
    const prefix = opts.prefix ?? '';
    const names = (await this.wrap(() => this.q.list.all(opts.after ?? '', prefix, prefixEnd(prefix), limit + 1), opts)) as string[];
    if (names.length > limit) {
      names.length = limit;
      return { names, next: names[limit - 1] };
    }
    return { names };
  }

  async delete(name: string, o?: StoreCallOptions): Promise<void> {
    this.cache.delete(name);
    const r = await this.wrap(() => this.q.del.run(name), o);
    if (r.changes === 0) throw err('NOT_FOUND', `key '${name}' does not exist`);
  }

  async replace(rec: KeyRecord, o?: StoreCallOptions): Promise<void> {
    this.cache.delete(rec.name);
    const r = await this.wrap(() => this.q.update.run(JSON.stringify(rec), rec.name), o);
    if (r.changes === 0) throw err('NOT_FOUND', `key '${rec.name}' does not exist`);
  }

  async update(name: string, fn: (cur: KeyRecord) => KeyRecord, o?: StoreCallOptions): Promise<KeyRecord> {
    // BEGIN IMMEDIATE takes the write lock before the read, so another process cannot slip in between
    const tx = this.db.transaction(() => {
      const raw = this.q.get.get(name) as string | undefined;
      if (raw === undefined) throw err('NOT_FOUND', `key '${name}' does not exist`);
      const next = fn(parseRecord(raw, `key '${name}'`));
      checkUpdated(name, next);
      this.q.update.run(JSON.stringify(next), name);
      return next;
    });
    this.cache.delete(name);
    try {
      return await this.wrap(() => tx.immediate(), o);
    } finally {
      this.cache.delete(name);
    }
  }

  async updateMany(
    names: string[],
    fn: (cur: KeyRecord) => KeyRecord | undefined,
    meta?: Record<string, string | undefined>,
    o?: StoreCallOptions,
  ): Promise<void> {
    const tx = this.db.transaction(() => {
      for (const name of names) {
        const raw = this.q.get.get(name) as string | undefined;
        if (raw === undefined) continue;
        const next = fn(parseRecord(raw, `key '${name}'`));
        if (!next) continue;
        checkUpdated(name, next);
        this.q.update.run(JSON.stringify(next), name);
      }
      for (const [k, v] of Object.entries(meta ?? {})) v === undefined ? this.q.delMeta.run(k) : this.q.setMeta.run(k, v);
    });
    this.cache.clear();
    try {
      await this.wrap(() => tx.immediate(), o);
    } finally {
      this.cache.clear();
    }
  }

  async putMany(recs: KeyRecord[], meta?: Record<string, string | undefined>, o?: StoreCallOptions): Promise<void> {
    const tx = this.db.transaction((rs: KeyRecord[]) => {
      for (const r of rs) this.q.upsert.run(r.name, JSON.stringify(r));
      for (const [k, v] of Object.entries(meta ?? {})) v === undefined ? this.q.delMeta.run(k) : this.q.setMeta.run(k, v);
    });
    this.cache.clear();
    await this.wrap(() => tx(recs), o);
  }

  async getMeta(key: string, o?: StoreCallOptions): Promise<string | undefined> {
    return (await this.wrap(() => this.q.getMeta.get(key), o)) as string | undefined;
  }

  async setMeta(key: string, value: string | undefined, o?: StoreCallOptions): Promise<void> {
    await this.wrap(() => (value === undefined ? this.q.delMeta.run(key) : this.q.setMeta.run(key, value)), o);
  }

  async createMany(recs: KeyRecord[], o?: StoreCallOptions): Promise<string[]> {
    for (const r of recs) this.cache.delete(r.name);
    const taken = await this.wrap(() => this.createTx(recs), o);
    return recs.filter((_, i) => taken[i]).map((r) => r.name);
  }

  /** fold the WAL into the database file and truncate it, so no superseded page survives */
  async compact(o?: StoreCallOptions): Promise<void> {
    // without a busy handler a checkpoint that meets a reader reports busy instead of waiting: try again
    const deadline = Date.now() + BUSY_WAIT_MS;
    for (;;) {
      const [r] = (await this.wrap(() => this.db.pragma('wal_checkpoint(TRUNCATE)'), o)) as { busy: number }[];
      if (!r?.busy) return;
      if (Date.now() > deadline) throw err('THROTTLED', `SQLite store ${this.path} is in use by another process: retry later`);
      await sleepUnlessCancelled(25, `SQLite store ${this.path}`, o?.signal);
    }
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
