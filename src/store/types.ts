/**
 * The KeyStore interface: persistence of key records, nothing else (the KES model: a handful of
 * methods). Crypto and envelope protection live above it; every backend (sqlite, fs, kes-fs,
 * postgres, secrets manager) implements just this.
 */
import type { KeyType, Purpose } from '../crypto/keytypes.js';
import type { CallOptions } from '../cancel.js';

/**
 * Every store call takes `opts?: { signal }` (src/cancel.ts, as KMS drivers do): when the signal fires
 * the store stops waiting (a lock, a busy database, a pool slot) and cancels what it can (a PostgreSQL
 * statement, an AWS request), failing with TIMEOUT (or the signal's own KeyportError). A write whose
 * signal fired before it started is not made; one already committed stays committed.
 */
export type StoreCallOptions = CallOptions;

export type KeyState = 'active' | 'disabled';

/** Signing-key usage restrictions (Canton's SigningKeyUsage), enforced on use. */
export const KEY_USAGES = ['namespace', 'identity-delegation', 'sequencer-auth', 'protocol', 'any'] as const;
export type KeyUsage = (typeof KEY_USAGES)[number];

/** How a version's secret material is held. Exactly one of clear / sealed / external is set. */
export interface VersionRecord {
  version: number; // 1, 2, … (rotation appends)
  createdAt: string; // RFC 3339
  /** base64 SPKI DER (asymmetric keys) */
  publicKey?: string;
  /** Canton fingerprint (asymmetric) or key check value (aes256) */
  fingerprint: string;
  /** base64 of the private key (PKCS#8 DER) or the 32 secret bytes: a clear store only */
  clear?: string;
  /** envelope-protected: the secret material encrypted under a KMS wrapper key */
  sealed?: SealedBlob;
  /** the key lives in a KMS; this is its reference */
  external?: {
    kms: string;
    keyId: string;
    /** who made the KMS key: 'registered' (adopted, never deleted by keyport) or 'generated'; absent: see the record's meta */
    origin?: 'registered' | 'generated';
  };
}

export interface SealedBlob {
  /** the wrapper key URI (KMS key URI) that sealed it */
  wrapper: string;
  /** base64 ciphertext as returned by the wrapper (KMS-specific framing) */
  blob: string;
}

export interface KeyRecord {
  name: string;
  type: KeyType;
  purpose: Purpose;
  usage: KeyUsage[];
  state: KeyState;
  createdAt: string;
  createdBy: string;
  /** free-form metadata kept across migrations (e.g. KES created_by) */
  meta?: Record<string, string>;
  /** oldest first; the newest is used for new operations */
  versions: VersionRecord[];
}

export interface ListOptions {
  /** names starting with this prefix */
  prefix?: string;
  /** continue after this name (exclusive); names come in byte order */
  after?: string;
  /** page size; a store never truncates silently: `next` is set when more remain */
  limit?: number;
}

export interface ListPage {
  names: string[];
  /** pass as `after` to get the next page; undefined at the end */
  next?: string;
}

export interface StoreCapabilities {
  /** can hold several records updated in one atomic transaction */
  transactions: boolean;
  /** a human label (sqlite, fs, kes-fs, …) */
  kind: string;
  /** holds only what a KES keystore can: one aes256 version per key, in the clear (kes-fs, awssm layout=kes) */
  kesOnly?: boolean;
}

export interface RecordStore {
  readonly uri: string;
  readonly capabilities: StoreCapabilities;
  /** fails with EXISTS if the name is taken */
  create(rec: KeyRecord, opts?: StoreCallOptions): Promise<void>;
  /** fails with NOT_FOUND */
  get(name: string, opts?: StoreCallOptions): Promise<KeyRecord>;
  list(opts?: ListOptions & StoreCallOptions): Promise<ListPage>;
  /** fails with NOT_FOUND */
  delete(name: string, opts?: StoreCallOptions): Promise<void>;
  /** atomic replace of an existing record: readers see the old or the new one, never a mix */
  replace(rec: KeyRecord, opts?: StoreCallOptions): Promise<void>;
  /**
   * atomic create-or-replace of many records: all or none where `transactions`, else each atomically.
   * `meta` (optional) is applied in the same transaction where `transactions`, else after the records.
   */
  putMany(recs: KeyRecord[], meta?: Record<string, string | undefined>, opts?: StoreCallOptions): Promise<void>;
  /** store-level settings (e.g. envelope protection); undefined when unset */
  getMeta(key: string, opts?: StoreCallOptions): Promise<string | undefined>;
  setMeta(key: string, value: string | undefined, opts?: StoreCallOptions): Promise<void>;
  /**
   * optional: create many records in one transaction, skipping names that already exist; returns the
   * skipped names. Stores without it get one `create` per record.
   */
  createMany?(recs: KeyRecord[], opts?: StoreCallOptions): Promise<string[]>;
  /**
   * optional: atomic read-modify-write of one record. `fn` gets the current record and returns the
   * next one; concurrent writers, in other processes and replicas too, are serialized, so none is lost
   * (rotations through two replicas both land). Fails with NOT_FOUND. Stores without it get
   * get + fn + replace, serialized within the process only.
   */
  update?(name: string, fn: (cur: KeyRecord) => KeyRecord, opts?: StoreCallOptions): Promise<KeyRecord>;
  /**
   * optional: read-modify-write of many records and `meta` in ONE transaction (all or none). `fn` gets
   * each named record as it is inside the transaction and returns its replacement, or undefined to leave
   * it; names that no longer exist are skipped. Protect enable / disable / rotate use it so a key rotated
   * or deleted meanwhile by another process is neither lost nor brought back.
   */
  updateMany?(
    names: string[],
    fn: (cur: KeyRecord) => KeyRecord | undefined,
    meta?: Record<string, string | undefined>,
    opts?: StoreCallOptions,
  ): Promise<void>;
  /**
   * optional: leftovers of interrupted writes that may hold key material (a directory store's stale
   * temp files), for doctor. The store removes them itself, under its lock, before its first write.
   */
  staleFiles?(): string[];
  /** optional: drop superseded copies of records (e.g. SQLite WAL frames) after a bulk rewrite */
  compact?(opts?: StoreCallOptions): Promise<void>;
  close(): Promise<void>;
}

/** Iterate every name of a store, page by page (never truncated). */
export async function* allNames(store: RecordStore, prefix?: string, pageSize = 1000, opts?: StoreCallOptions): AsyncGenerator<string> {
  let after: string | undefined;
  for (;;) {
    const page = await store.list({ prefix, after, limit: pageSize, signal: opts?.signal });
    for (const n of page.names) yield n;
    if (!page.next) return;
    after = page.next;
  }
}

/** per store and name: fallback read-modify-writes in this process, one after another */
const serialChains = new Map<string, Promise<unknown>>();

/**
 * Read-modify-write of one record through `store.update` where the store has it (atomic across
 * processes), else get + fn + replace serialized within this process. Fails with NOT_FOUND.
 */
export async function updateRecord(
  store: RecordStore,
  name: string,
  fn: (cur: KeyRecord) => KeyRecord,
  opts?: StoreCallOptions,
): Promise<KeyRecord> {
  if (store.update) return store.update(name, fn, opts);
  const key = `${store.uri}\0${name}`;
  const run = (serialChains.get(key) ?? Promise.resolve())
    .catch(() => undefined)
    .then(async () => {
      const next = fn(await store.get(name, opts));
      await store.replace(next, opts);
      return next;
    });
  serialChains.set(key, run);
  try {
    return await run;
  } finally {
    if (serialChains.get(key) === run) serialChains.delete(key);
  }
}
