/**
 * `kes-fs:DIR`: a MinIO KES filesystem keystore, opened as it is. One file per key, file name = key
 * name, content = KES's stored key format (src/store/kes-format.ts). KES v0.24 writes files 0600 with
 * O_EXCL; we write temp + fsync + rename (create: link, which never replaces), also 0600, so a
 * running KES never reads a half-written key. Temp files and our `.keyport-meta.json` start with a
 * dot: KES never treats a name with a dot as a key.
 *
 * A KES key is one 256-bit AES256 or ChaCha20 key (plus, since v0.24, an HMAC key) with created_at /
 * created_by: records that do not fit (other types, several versions, sealed or KMS-held material,
 * disabled keys) are refused with UNSUPPORTED.
 */
import { readFileSync, readdirSync, unlinkSync, existsSync, mkdirSync, statSync, openSync, readSync, closeSync, fstatSync } from 'node:fs';
import { join } from 'node:path';
import { err } from '../errors.js';
import { kcv } from '../crypto/fingerprint.js';
import { DirListing } from './dir-listing.js';
import type { KeyRecord, ListOptions, ListPage, RecordStore, StoreCallOptions } from './types.js';
import { checkCancelled } from '../cancel.js';
import {
  createFileAtomic,
  createFilesAtomic,
  fsyncDir,
  ioError,
  removeKeyFile,
  removeStaleTemps,
  staleTemps,
  writeFileAtomic,
} from './atomic-file.js';
import { withFileLock } from './file-lock.js';
import { decodeKesKey, encodeKesKey, kesKeyForm, type KesKey, type KesKeyForm } from './kes-format.js';

const META = '.keyport-meta.json';
const MAX_FILE = 1 << 20; // KES reads at most 1 MiB of a key file

export async function openKesFsStore(dir: string, uri: string): Promise<RecordStore> {
  try {
    if (existsSync(dir) && !statSync(dir).isDirectory()) throw err('USAGE', `kes-fs: ${dir} is not a directory`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    if ((e as { code?: string }).code === 'USAGE') throw e;
    ioError(e, `kes-fs: cannot open ${dir}`);
  }
  return new KesFsStore(dir, uri);
}

/** a name KES can hold as a file (KES's fs keystore refuses '/', '\' and '.') */
function fileName(name: string): string {
  if (!name || /[/\\.]/.test(name) || name.length > 255)
    throw err('INVALID_NAME', `'${name.slice(0, 80)}' cannot be a key file name in a KES keystore`);
  return name;
}

/** map a KES key to a keyport record */
export function kesKeyToRecord(name: string, k: KesKey & { form?: KesKeyForm }): KeyRecord {
  const clear = k.hmacKey ? Buffer.concat([k.secret, k.hmacKey]) : k.secret;
  return {
    name,
    type: 'aes256',
    purpose: 'symmetric',
    usage: ['any'],
    state: 'active',
    createdAt: k.createdAt,
    createdBy: k.createdBy,
    // a legacy JSON key remembers its form, so a KES keystore it moves to gets the same bytes (as `kes migrate` copies them)
    meta: { kes_algorithm: k.algorithm, ...(k.form === 'json' ? { kes_form: 'json' } : {}) },
    versions: [{ version: 1, createdAt: k.createdAt, fingerprint: kcv(k.secret), clear: clear.toString('base64') }],
  };
}

/** map a keyport record to a KES key, or refuse what KES cannot hold */
export function recordToKesKey(r: KeyRecord): KesKey {
  const no = (why: string) => err('UNSUPPORTED', `key '${r.name}': a KES keystore ${why}`);
  if (r.type !== 'aes256') throw no(`holds only aes256 keys, this one is ${r.type}`);
  if (r.versions.length !== 1)
    throw no(`holds one key version, this key has ${r.versions.length}: migrate it before rotating, or to another store`);
  if (r.state !== 'active') throw no('cannot mark a key disabled: enable it first');
  const v = r.versions[0]!;
  if (v.clear === undefined)
    throw no(
      v.sealed
        ? 'stores keys in clear and cannot hold envelope-sealed keys: unseal (protect disable) first'
        : 'cannot hold a key that lives in a KMS',
    );
  const bytes = Buffer.from(v.clear, 'base64');
  if (bytes.length !== 32 && bytes.length !== 64)
    throw err('INVALID_INPUT', `key '${r.name}': an aes256 secret is 32 bytes (or 64 with its HMAC key), got ${bytes.length}`);
  const alg = r.meta?.['kes_algorithm'];
  if (alg !== undefined && alg !== 'AES256' && alg !== 'ChaCha20') throw no(`does not know the algorithm '${alg.slice(0, 40)}'`);
  return {
    secret: bytes.subarray(0, 32),
    ...(bytes.length === 64 ? { hmacKey: bytes.subarray(32, 64) } : {}),
    algorithm: alg === 'ChaCha20' ? 'ChaCha20' : 'AES256',
    createdAt: v.createdAt || r.createdAt,
    createdBy: r.createdBy ?? '',
  };
}

/** read a key file, refusing anything larger than a KES key can be (sized by fstat, not a 1 MiB buffer per read) */
function readLimited(path: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size > MAX_FILE) throw err('INVALID_INPUT', `${path} is larger than a KES key can be (1 MiB)`);
    const buf = Buffer.allocUnsafe(size + 1);
    let n = 0;
    for (;;) {
      const r = readSync(fd, buf, n, buf.length - n, null);
      if (r === 0) break;
      n += r;
      if (n > size) throw err('INVALID_INPUT', `${path} changed while it was read`);
    }
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

class KesFsStore implements RecordStore {
  readonly capabilities = { transactions: false, kind: 'kes-fs', kesOnly: true };
  constructor(
    private dir: string,
    readonly uri: string,
  ) {}

  private file(name: string) {
    return join(this.dir, fileName(name));
  }

  /** the stored form of an existing key file, or undefined if none */
  private formOf(path: string): KesKeyForm | undefined {
    try {
      return kesKeyForm(readLimited(path));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      return 'protobuf';
    }
  }

  /** the bytes to store: KES v0.24 protobuf, except a legacy JSON key (the record's or the file's) stays JSON while it can */
  private encode(k: KesKey, existing: KesKeyForm | undefined, rec?: KeyRecord): Buffer {
    const json = rec?.meta?.['kes_form'] === 'json' || existing === 'json';
    return encodeKesKey(k, json && !k.hmacKey ? 'json' : 'protobuf');
  }

  private cleaned?: Promise<void>;

  /** once, before the first write: remove temp files a writer that died left (clear KES keys), under the store's lock */
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

  async create(rec: KeyRecord, o?: StoreCallOptions): Promise<void> {
    await this.ready(o);
    this.listing.invalidate();
    const path = this.file(rec.name);
    const data = this.encode(recordToKesKey(rec), undefined, rec);
    try {
      createFileAtomic(path, data, 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw err('EXISTS', `key '${rec.name}' already exists`);
      ioError(e, `cannot write key '${rec.name}'`);
    }
  }

  /** bulk create-only (migration): parallel fsyncs, one directory fsync; returns the names that existed */
  async createMany(recs: KeyRecord[], o?: StoreCallOptions): Promise<string[]> {
    await this.ready(o);
    this.listing.invalidate();
    const files = recs.map((r) => ({ path: this.file(r.name), data: this.encode(recordToKesKey(r), undefined, r), name: r.name }));
    try {
      const existed = new Set(await createFilesAtomic(this.dir, files));
      return files.filter((f) => existed.has(f.path)).map((f) => f.name);
    } catch (e) {
      ioError(e, `cannot write keys into ${this.dir}`);
    }
  }

  async get(name: string, o?: StoreCallOptions): Promise<KeyRecord> {
    checkCancelled(`store ${this.dir}`, o?.signal);
    let bytes: Buffer;
    try {
      bytes = readLimited(this.file(name));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EISDIR') throw err('NOT_FOUND', `key '${name}' does not exist`);
      ioError(e, `cannot read key '${name}'`);
    }
    let k: KesKey;
    try {
      k = decodeKesKey(bytes);
    } catch (e) {
      throw err('INVALID_INPUT', `key '${name}' in ${this.dir}: ${(e as Error).message}`);
    }
    return kesKeyToRecord(name, k);
  }

  private listing = new DirListing(() => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = readdirSync(this.dir, { withFileTypes: true });
    } catch (e) {
      ioError(e, `cannot list ${this.dir}`);
    }
    return entries.filter((d) => (d.isFile() || d.isSymbolicLink()) && !/[/\\.]/.test(d.name)).map((d) => d.name);
  });

  async list(opts: ListOptions & StoreCallOptions = {}): Promise<ListPage> {
    checkCancelled(`store ${this.dir}`, opts.signal);
    return this.listing.page(opts);
  }

  async delete(name: string, o?: StoreCallOptions): Promise<void> {
    await this.ready(o);
    this.listing.invalidate();
    removeKeyFile(this.file(name), this.dir, name);
  }

  async replace(rec: KeyRecord, o?: StoreCallOptions): Promise<void> {
    await this.ready(o);
    this.listing.invalidate();
    const path = this.file(rec.name);
    const k = recordToKesKey(rec);
    const form = this.formOf(path);
    if (!form) throw err('NOT_FOUND', `key '${rec.name}' does not exist`);
    try {
      writeFileAtomic(path, this.encode(k, form, rec), 0o600);
    } catch (e) {
      ioError(e, `cannot write key '${rec.name}'`);
    }
  }

  async putMany(recs: KeyRecord[], meta?: Record<string, string | undefined>, o?: StoreCallOptions): Promise<void> {
    await this.ready(o);
    this.listing.invalidate();
    // refuse before writing anything if one record cannot be held; then each file atomically
    const keys = recs.map((r) => ({ path: this.file(r.name), k: recordToKesKey(r), name: r.name, r }));
    for (const { path, k, name, r } of keys) {
      try {
        writeFileAtomic(path, this.encode(k, this.formOf(path), r), 0o600);
      } catch (e) {
        ioError(e, `cannot write key '${name}'`);
      }
    }
    for (const [key, v] of Object.entries(meta ?? {})) await this.setMeta(key, v);
  }

  private readMeta(): Record<string, string> {
    try {
      const m = JSON.parse(readFileSync(join(this.dir, META), 'utf8')) as unknown;
      if (!m || typeof m !== 'object' || Array.isArray(m)) throw new Error('not a JSON object');
      return m as Record<string, string>;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw err('INVALID_INPUT', `${join(this.dir, META)} is damaged (${(e as Error).message.split('\n')[0]}): fix or remove it`);
    }
  }

  async getMeta(key: string, o?: StoreCallOptions): Promise<string | undefined> {
    checkCancelled(`store ${this.dir}`, o?.signal);
    return this.readMeta()[key];
  }

  async setMeta(key: string, value: string | undefined, o?: StoreCallOptions): Promise<void> {
    await this.ready(o);
    const m = this.readMeta();
    if (value === undefined) {
      if (!(key in m)) return;
      delete m[key];
    } else m[key] = value;
    try {
      // KES lists every file of its directory as a key name: leave no meta file behind when empty
      if (Object.keys(m).length === 0) {
        unlinkSync(join(this.dir, META));
        fsyncDir(this.dir);
        return;
      }
      writeFileAtomic(join(this.dir, META), JSON.stringify(m), 0o600);
    } catch (e) {
      ioError(e, `cannot write ${join(this.dir, META)}`);
    }
  }

  async close(): Promise<void> {}
}
