/**
 * Canton's transitions of a store's protection, in place:
 *   enable  — clear → envelope: every clear secret sealed under the wrapper key
 *   disable — envelope → clear
 *   rotate  — envelope(old) → envelope(new): every sealed secret re-wrapped
 * On stores with transactions (SQLite, PostgreSQL) all records and the protection setting change in one
 * transaction; elsewhere each record is replaced atomically and the setting changes last, so a crash
 * leaves every key readable and re-running the command finishes the job. An interrupt (the caller's
 * signal) stops the same way: no record starts after it; where records are written one by one those done
 * are written, where one transaction was to write them all nothing is. Old wrapper keys are never
 * deleted by keyport.
 */
import { err, isKeyportError } from '../errors.js';
import { type KeyRef, type KmsAddress, canonicalKeyRef, canonicalKmsRef, sameKeyRef } from '../kms/address.js';
import type { KeyRecord, VersionRecord } from '../store/types.js';
import { allNames, updateRecord } from '../store/types.js';
import type { Protection } from '../store/protection.js';
import { PROTECTION_META, readProtection } from '../store/protection.js';
import type { StoreKeyring } from './keyring.js';

export interface ProtectResult {
  /** records rewritten */
  changed: number;
  /** records already in the target state */
  unchanged: number;
  protection: Protection;
  /** the signal stopped the run: the same command finishes the job (see transform) */
  interrupted?: boolean;
}

export type Progress = (done: number, total?: number) => void;

/** records sealed / unsealed at once by protect enable | disable | rotate */
const WIDTH = 32;

/** the two holdings of one version are the same (nothing rewrote it since we read it) */
function sameHolding(a: VersionRecord, b: VersionRecord): boolean {
  return (
    a.fingerprint === b.fingerprint &&
    a.clear === b.clear &&
    a.sealed?.wrapper === b.sealed?.wrapper &&
    a.sealed?.blob === b.sealed?.blob &&
    a.external?.keyId === b.external?.keyId
  );
}

/**
 * Apply the rewritten versions of a record to the record as it is now: a version added meanwhile (a
 * rotation by another process) is kept as it is, a version rewritten meanwhile is left alone, and a key
 * deleted and created again is not touched. Returns undefined when nothing applies.
 */
function reconcile(original: KeyRecord, planned: KeyRecord, cur: KeyRecord): KeyRecord | undefined {
  if (cur.createdAt !== original.createdAt || cur.type !== original.type) return undefined;
  let touched = false;
  const versions = cur.versions.map((v) => {
    const o = original.versions.find((x) => x.version === v.version);
    const p = planned.versions.find((x) => x.version === v.version);
    if (!o || !p || p === o || !sameHolding(o, v)) return v;
    touched = true;
    return p;
  });
  return touched ? { ...cur, versions } : undefined;
}

async function transform(
  kr: StoreKeyring,
  target: Protection,
  fn: (r: KeyRecord, v: VersionRecord) => Promise<VersionRecord | undefined>,
  progress?: Progress,
  signal?: AbortSignal,
): Promise<ProtectResult> {
  const store = kr.store;
  let pending = new Map<string, { original: KeyRecord; planned: KeyRecord }>();
  let changed = 0;
  let unchanged = 0;
  let done = 0;
  const batch = store.capabilities.transactions ? Infinity : 200;
  const metaValue = target.mode === 'clear' ? undefined : JSON.stringify(target);
  // one flush at a time; records finished meanwhile wait in the next `pending`
  let flushing: Promise<void> = Promise.resolve();
  const flush = (final: boolean) => {
    const run = async () => {
      const todo = pending;
      pending = new Map();
      const apply = (cur: KeyRecord) => {
        const p = todo.get(cur.name);
        return p ? reconcile(p.original, p.planned, cur) : undefined;
      };
      const meta = final ? { [PROTECTION_META]: metaValue } : undefined;
      if (store.updateMany) {
        if (todo.size || meta) await store.updateMany([...todo.keys()], apply, meta);
      } else {
        // stores without transactions: each record atomically, the protection mark last
        for (const name of todo.keys()) {
          await updateRecord(store, name, (cur) => apply(cur) ?? cur).catch((e) => {
            if (!isKeyportError(e, 'NOT_FOUND')) throw e; // deleted meanwhile: stays deleted
          });
        }
        if (meta) await store.putMany([], meta);
      }
    };
    flushing = flushing.then(run);
    return flushing;
  };
  // records are independent: up to WIDTH of them are sealed / unsealed at once, a new one starting as
  // soon as one finishes (no batch waits for its slowest record: the KMS's adaptive limiter,
  // src/kms/limiter.ts, keeps the calls within its quota and the window stays full)
  const names = allNames(store);
  const one = async (name: string) => {
    const r = await store.get(name).catch((e) => {
      if (isKeyportError(e, 'NOT_FOUND')) return undefined; // deleted since it was listed
      throw e;
    });
    if (!r) return;
    let touched = false;
    const versions: VersionRecord[] = [];
    for (const v of r.versions) {
      const nv = await fn(r, v);
      if (nv) touched = true;
      versions.push(nv ?? v);
    }
    if (touched) {
      pending.set(r.name, { original: r, planned: { ...r, versions } });
      changed++;
    } else unchanged++;
    progress?.(++done);
    if (pending.size >= batch) await flush(false);
  };
  let failed: unknown;
  await Promise.all(
    Array.from({ length: WIDTH }, async () => {
      // async generators queue concurrent next() calls: each name goes to exactly one worker
      for (let n = await names.next(); !n.done && failed === undefined && !signal?.aborted; n = await names.next()) {
        try {
          // each record starts on a turn of the event loop of its own when the run can be interrupted: local
          // stores answer at once, and one unbroken chain of microtasks would let no signal handler run
          if (signal) await new Promise<void>((r) => setImmediate(r));
          if (signal?.aborted) break;
          await one(n.value);
        } catch (e) {
          failed ??= e;
        }
      }
    }),
  );
  if (failed !== undefined) throw failed;
  if (signal?.aborted) {
    // interrupted: no record started after the signal. Where each record is written on its own, those
    // done are written (the protection mark stays as it was: the same command finishes the job); where one
    // transaction was to write them all, none is (the store is as it was)
    let written = 0;
    if (!store.capabilities.transactions) {
      await flush(false);
      written = changed;
    }
    kr.invalidate();
    return { changed: written, unchanged, protection: await readProtection(store), interrupted: true };
  }
  await flush(true);
  await store.compact?.();
  kr.invalidate();
  return { changed, unchanged, protection: target };
}

function strip(v: VersionRecord): VersionRecord {
  const { clear: _c, sealed: _s, ...rest } = v;
  return rest;
}

/** a wrapper given by the operator (a string is parsed and validated here, at the edge) becomes a configured connection */
function configured(kr: StoreKeyring, wrapper: KmsAddress | string): KeyRef {
  const a = kr.connections.add(wrapper, { what: 'wrapper' });
  return a.key;
}

/** the canonical reference of a stored wrapper / KMS string, or the string itself when it is damaged */
function canon(f: (x: string) => string, x: string): string {
  try {
    return f(x);
  } catch {
    return x;
  }
}

/** a version whose stored references are all canonical (0.1.0 URIs with endpoints and credentials become references) */
function canonicalVersion(v: VersionRecord): VersionRecord | undefined {
  const w = v.sealed ? canon(canonicalKeyRef, v.sealed.wrapper) : undefined;
  const k = v.external ? canon(canonicalKmsRef, v.external.kms) : undefined;
  if ((w === undefined || w === v.sealed!.wrapper) && (k === undefined || k === v.external!.kms)) return undefined;
  return {
    ...v,
    ...(v.sealed ? { sealed: { ...v.sealed, wrapper: w! } } : {}),
    ...(v.external ? { external: { ...v.external, kms: k! } } : {}),
  };
}

/**
 * Rewrite a store written by 0.1.0: every stored wrapper / KMS URI becomes the key reference it names
 * (endpoints, credentials and module paths dropped), the protection setting last (or in the same
 * transaction). Nothing is opened or connected to.
 */
export async function upgradeRefs(kr: StoreKeyring): Promise<ProtectResult> {
  const cur = await readProtection(kr.store);
  return transform(kr, cur, async (_r, v) => canonicalVersion(v));
}

export async function protectEnable(
  kr: StoreKeyring,
  wrapper: KmsAddress | string,
  progress?: Progress,
  signal?: AbortSignal,
): Promise<ProtectResult> {
  const ref = configured(kr, wrapper);
  const cur = await readProtection(kr.store);
  if (cur.mode === 'external')
    throw err('UNSUPPORTED', 'this store keeps its keys in a KMS (external mode): envelope protection does not apply');
  if (cur.mode === 'envelope' && !sameKeyRef(cur.wrapper, ref.toString()))
    throw err('CONFLICT', `store is already protected by ${cur.wrapper}: use 'keyport protect rotate' to change the wrapper key`, {
      retryable: false,
    });
  // a clear store never sealed anything under this wrapper: a local wrapper file may be made now
  await kr.wrappers.check(ref, { mayCreate: cur.mode === 'clear' });
  return transform(
    kr,
    { mode: 'envelope', wrapper: ref.toString() },
    async (_r, v) =>
      v.clear !== undefined ? { ...strip(v), sealed: await kr.wrappers.seal(ref, Buffer.from(v.clear, 'base64')) } : canonicalVersion(v),
    progress,
    signal,
  );
}

export async function protectDisable(kr: StoreKeyring, progress?: Progress, signal?: AbortSignal): Promise<ProtectResult> {
  const cur = await readProtection(kr.store);
  if (cur.mode === 'external') throw err('UNSUPPORTED', 'this store keeps its keys in a KMS (external mode): there is nothing to decrypt');
  return transform(
    kr,
    { mode: 'clear' },
    async (_r, v) => (v.sealed ? { ...strip(v), clear: (await kr.wrappers.unseal(v.sealed)).toString('base64') } : undefined),
    progress,
    signal,
  );
}

export async function protectRotate(
  kr: StoreKeyring,
  wrapper: KmsAddress | string,
  progress?: Progress,
  signal?: AbortSignal,
): Promise<ProtectResult> {
  const ref = configured(kr, wrapper);
  const cur = await readProtection(kr.store);
  if (cur.mode !== 'envelope') throw err('USAGE', `store is not envelope-protected: use 'keyport protect enable --wrapper …' first`);
  // the current wrapper sealed keys: it is never made again; a new one may be
  await kr.wrappers.check(ref, { mayCreate: !sameKeyRef(cur.wrapper, ref.toString()) });
  return transform(
    kr,
    { mode: 'envelope', wrapper: ref.toString() },
    async (_r, v) => {
      if (v.sealed && !sameKeyRef(v.sealed.wrapper, ref.toString()))
        return { ...strip(v), sealed: await kr.wrappers.seal(ref, await kr.wrappers.unseal(v.sealed)) };
      if (v.clear !== undefined) return { ...strip(v), sealed: await kr.wrappers.seal(ref, Buffer.from(v.clear, 'base64')) };
      return canonicalVersion(v);
    },
    progress,
    signal,
  );
}
