/**
 * `fs:DIR`: one JSON file per key (`DIR/NAME.key`), written temp + fsync + rename (create: link, so it
 * never replaces), files 0600 in a 0700 directory. Listing reads the whole directory and sorts, so it
 * never truncates. Store settings live in `DIR/.keyport-meta.json`. Read-modify-writes (rotate,
 * protect) and deletes take a per-key lock file, so processes sharing the directory do not lose updates.
 * Before its first write a store removes the temp files a writer that died left (they may hold whole key
 * records), under a store-wide lock.
 */
import { readFileSync, readdirSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { err } from '../errors.js';
import { DirListing } from './dir-listing.js';
import { withFileLock } from './file-lock.js';
import type { KeyRecord, ListOptions, ListPage, RecordStore, StoreCallOptions } from './types.js';
import { checkCancelled } from '../cancel.js';
import { checkUpdated, parseRecord } from './record.js';
import {
  createFileAtomic,
  createFilesAtomic,
  ioError,
  removeKeyFile,
  removeStaleTemps,
  staleTemps,
  writeFileAtomic,
  TEMP_PREFIX,
} from './atomic-file.js';

const EXT = '.key';
const META = '.keyport-meta.json';

export async function openFsStore(dir: string, uri: string): Promise<RecordStore> {
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw err('USAGE', `fs: store ${dir} is not a directory`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return new FsStore(dir, uri);
}

class FsStore implements RecordStore {
  readonly capabilities = { transactions: false, kind: 'fs' };
  constructor(
    private dir: string,
    readonly uri: string,
  ) {}

  private file(name: string) {
    return join(this.dir, name + EXT);
  }

  private cleaned?: Promise<void>;

  /** once, before the first write: remove stale temp files under the store's lock */
  private writable(): Promise<void> {
    this.cleaned ??= withFileLock(join(this.dir, '.keyport-store.lock'), `store ${this.dir}`, () => {
      removeStaleTemps(this.dir);
    }).catch((e) => {
      this.cleaned = undefined;
      throw e;
    });
    return this.cleaned;
  }

  /**
   * before a write: the one-time clean-up done, and the caller still waiting (a cancelled caller's write
   * is never started; once started it runs to its end, synchronously)
   */
  private async ready(o?: StoreCallOptions): Promise<void> {
    checkCancelled(`store ${this.dir}`, o?.signal);
    await this.writable();
    checkCancelled(`store ${this.dir}`, o?.signal);
  }

  staleFiles(): string[] {
    return staleTemps(this.dir).map((f) => join(this.dir, f));
  }

  /** per-key lock file (a dot file: never listed as a key) */
  private locked<T>(name: string, fn: () => T | Promise<T>, o?: StoreCallOptions): Promise<T> {
    return withFileLock(join(this.dir, `.lock-${name}`), `key '${name}'`, fn, { signal: o?.signal });
  }

  async create(rec: KeyRecord, o?: StoreCallOptions): Promise<void> {
    await this.ready(o);
    this.listing.invalidate();
    try {
      createFileAtomic(this.file(rec.name), JSON.stringify(rec));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw err('EXISTS', `key '${rec.name}' already exists`);
      ioError(e, `cannot write key '${rec.name}'`);
    }
  }

  async get(name: string, o?: StoreCallOptions): Promise<KeyRecord> {
    checkCancelled(`store ${this.dir}`, o?.signal);
    let text: string;
    try {
      text = readFileSync(this.file(name), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw err('NOT_FOUND', `key '${name}' does not exist`);
      ioError(e, `cannot read key '${name}'`);
    }
    return parseRecord(text, `key '${name}' (${this.file(name)})`);
  }

  private listing = new DirListing(() => {
    let entries: string[];
    try {
      entries = readdirSync(this.dir);
    } catch (e) {
      ioError(e, `cannot list ${this.dir}`);
    }
    return entries.filter((f) => f.endsWith(EXT) && !f.startsWith('.')).map((f) => f.slice(0, -EXT.length));
  });

  async list(opts: ListOptions & StoreCallOptions = {}): Promise<ListPage> {
    checkCancelled(`store ${this.dir}`, opts.signal);
    return this.listing.page(opts);
  }

  async delete(name: string, o?: StoreCallOptions): Promise<void> {
    await this.ready(o);
    this.listing.invalidate();
    // under the key's lock, so a rotation in another process cannot write the deleted key back
    await this.locked(name, () => removeKeyFile(this.file(name), this.dir, name), o);
  }

  async update(name: string, fn: (cur: KeyRecord) => KeyRecord, o?: StoreCallOptions): Promise<KeyRecord> {
    await this.ready(o);
    this.listing.invalidate();
    return this.locked(
      name,
      async () => {
        const next = fn(await this.get(name));
        checkUpdated(name, next);
        try {
          writeFileAtomic(this.file(name), JSON.stringify(next));
        } catch (e) {
          ioError(e, `cannot write key '${name}'`);
        }
        return next;
      },
      o,
    );
  }

  async replace(rec: KeyRecord, o?: StoreCallOptions): Promise<void> {
    await this.ready(o);
    this.listing.invalidate();
    if (!existsSync(this.file(rec.name))) throw err('NOT_FOUND', `key '${rec.name}' does not exist`);
    try {
      writeFileAtomic(this.file(rec.name), JSON.stringify(rec));
    } catch (e) {
      ioError(e, `cannot write key '${rec.name}'`);
    }
  }

  async createMany(recs: KeyRecord[], o?: StoreCallOptions): Promise<string[]> {
    await this.ready(o);
    this.listing.invalidate();
    try {
      const existed = await createFilesAtomic(
        this.dir,
        recs.map((r) => ({ path: this.file(r.name), data: JSON.stringify(r) })),
      );
      return existed.map((p) => p.slice(this.dir.length + 1, -EXT.length));
    } catch (e) {
      ioError(e, `cannot write keys into ${this.dir}`);
    }
  }

  async putMany(recs: KeyRecord[], meta?: Record<string, string | undefined>, o?: StoreCallOptions): Promise<void> {
    await this.ready(o);
    this.listing.invalidate();
    // each file is replaced atomically; the directory has no multi-file transaction
    for (const r of recs) {
      try {
        writeFileAtomic(this.file(r.name), JSON.stringify(r));
      } catch (e) {
        ioError(e, `cannot write key '${r.name}'`);
      }
    }
    for (const [k, v] of Object.entries(meta ?? {})) await this.setMeta(k, v);
  }

  private readMeta(): Record<string, string> {
    try {
      return JSON.parse(readFileSync(join(this.dir, META), 'utf8')) as Record<string, string>;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw err('INVALID_INPUT', `${join(this.dir, META)} is damaged: ${(e as Error).message.split('\n')[0]}`);
    }
  }

  async getMeta(key: string, o?: StoreCallOptions): Promise<string | undefined> {
    checkCancelled(`store ${this.dir}`, o?.signal);
    return this.readMeta()[key];
  }

  async setMeta(key: string, value: string | undefined, o?: StoreCallOptions): Promise<void> {
    await this.ready(o);
    const m = this.readMeta();
    if (value === undefined) delete m[key];
    else m[key] = value;
    writeFileAtomic(join(this.dir, META), JSON.stringify(m));
  }

  async close(): Promise<void> {}
}

export { TEMP_PREFIX };
