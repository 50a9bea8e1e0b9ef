/**
 * Executing a plan batch by batch: build each target record (copy, import, re-key), write the batch
 * (create-only, or atomic replace under --force), verify every key, then mark the batch done in the
 * journal. A batch interrupted by a crash is simply done again: a key already at the target with the
 * intended material counts as migrated.
 */
import { randomBytes } from 'node:crypto';
import { err, isKeyportError, oneLine } from '../errors.js';
import { checkCancelled } from '../cancel.js';
import type { KeyRecord, VersionRecord } from '../store/types.js';
import type { StoreKeyring } from '../keys/keyring.js';
import { writeFileSync } from 'node:fs';
import { material, type Side } from './plan.js';
import type { PlanEntry } from './journal.js';
import { appendText } from './journal.js';
import type { AdaptivePool } from './pool.js';
import { sameKeyRef, sameKmsRef } from '../kms/address.js';

export interface BatchResult {
  migrated: number;
  verified: number;
  failed: string[];
  conflicts: string[];
  errors: { name: string; error: string }[];
  /** planned imports the target refused, re-keyed instead (--rekey) */
  rekeyedInstead?: number;
  /** keys that failed once the run's signal had fired (interrupted): not failures, the re-run does them again */
  cancelled: string[];
}

export interface ExecContext {
  src: Side;
  dst: Side;
  pool: AdaptivePool;
  verify: boolean;
  rekeyMap: string;
  /** --rekey: a key the target KMS refuses to import (UNSUPPORTED, nothing created) is re-keyed instead */
  rekey?: boolean;
  /** cancels the run's store calls (src/cancel.ts) */
  signal?: AbortSignal | undefined;
  /** key types the target refused to import in this run: their later keys go straight to re-keying */
  importRefused?: Set<string>;
}

/** the target's form of a source version: reuse it where both sides hold it the same way */
async function targetVersion(ctx: ExecContext, rec: KeyRecord, v: VersionRecord): Promise<VersionRecord> {
  const sp = ctx.dst.protection;
  if (v.clear !== undefined && sp.mode === 'clear') return v;
  if (v.sealed && sp.mode === 'envelope' && sameKeyRef(v.sealed.wrapper, sp.wrapper)) return v;
  if (v.external && sp.mode === 'external' && sameKmsRef(v.external.kms, sp.kms)) return v;
  const secret = await ctx.src.kr.secretBytes(rec, v);
  try {
    const { clear: _c, sealed: _s, external: _e, ...meta } = v;
    return { ...meta, ...(await ctx.dst.kr.holdIncoming(rec.name, rec.type, rec.purpose, secret, v.version)) };
  } finally {
    secret.fill(0);
  }
}

/** the KMS keys imported for a record that will not be stored: deleted, never cancelled (a version reused as the source holds it is the same object) */
async function dropImported(ctx: ExecContext, src: KeyRecord, versions: VersionRecord[]): Promise<void> {
  for (const [j, v] of versions.entries()) if (v.external && v !== src.versions[j]) await ctx.dst.kr.dropExternal(v);
}

async function buildRecord(ctx: ExecContext, e: PlanEntry): Promise<{ src: KeyRecord; out: KeyRecord }> {
  const rec = await ctx.src.kr.store.get(e.n, { signal: ctx.signal });
  const versions: VersionRecord[] = [];
  try {
    for (const v of rec.versions) versions.push(await targetVersion(ctx, rec, v));
  } catch (x) {
    await dropImported(ctx, rec, versions);
    throw x;
  }
  return { src: rec, out: { ...rec, meta: { ...(rec.meta ?? {}) }, versions } };
}

/**
 * re-key: a new key at the target; for signing keys the old key signs, in Canton's own format, a root
 * certificate of its namespace and a NamespaceDelegation to the new key (src/canton/topology), written as a
 * collection beside the map (`keyport node verify FILE` checks it; Canton's console loads it with
 * load_multiple_from_file). Key types Canton cannot sign with (RSA) get the map entry only.
 */
async function rekey(ctx: ExecContext, e: PlanEntry): Promise<void> {
  const old = await ctx.src.kr.store.get(e.n, { signal: ctx.signal });
  if (e.f) throw err('UNSUPPORTED', `re-keying cannot replace the existing target key '${e.n}'`);
  const created = await ctx.dst.kr.create(e.n, { type: old.type, purpose: old.purpose, usage: old.usage, createdBy: old.createdBy });
  const oldV = old.versions[old.versions.length - 1]!;
  const entry: Record<string, unknown> = {
    name: e.n,
    type: old.type,
    old: { fingerprint: oldV.fingerprint, kms: oldV.external?.kms, keyId: oldV.external?.keyId },
    new: { fingerprint: created.fingerprint },
    at: new Date().toISOString(),
  };
  if (old.purpose === 'signing' && created.publicKey) {
    const T = await import('../canton/topology/index.js');
    if (T.ALGO_OF[old.type] !== undefined) {
      const usage = old.usage.includes('any') ? undefined : old.usage.includes('namespace') ? 'namespace' : old.usage[0];
      const signer = await T.keyringSigner(ctx.src.kr, e.n, usage ? { usage } : {});
      const root = await T.signTransaction(T.rootNamespaceDelegation(signer.publicKey), [signer]);
      const delegation = await T.signTransaction(
        T.namespaceDelegation({
          namespace: signer.fingerprint,
          targetKey: Buffer.from(created.publicKey, 'base64'),
          restriction: { kind: 'all' },
        }),
        [signer],
      );
      const file = `${ctx.rekeyMap.replace(/\.jsonl$/, '')}-${e.n}.certs`;
      writeFileSync(file, T.encodeSignedCollection([root, delegation]));
      entry['delegation'] = {
        format: 'canton-v30-signed-topology-transactions',
        file,
        namespace: signer.fingerprint,
        target: created.fingerprint,
        hash: T.transactionHash(delegation.transaction).toString('hex'),
      };
    }
  }
  appendText(ctx.rekeyMap, JSON.stringify(entry) + '\n');
}

/**
 * Cryptographic proof that the target key is the source key (or, re-keyed, that it works). The
 * source record comes from the batch; the target record is read back from the target, once.
 */
async function verifyKey(ctx: ExecContext, srcRec: KeyRecord, rekeyed: boolean): Promise<void> {
  const [s, d] = [ctx.src.kr, ctx.dst.kr] as StoreKeyring[];
  const name = srcRec.name;
  const dstRec = await d!.store.get(name, { signal: ctx.signal });
  if (!rekeyed && material(srcRec) !== material(dstRec))
    throw err('VERIFY_FAILED', `'${name}': fingerprints differ between source and target`);
  const probe = randomBytes(32);
  if (srcRec.purpose === 'signing') {
    const usage = dstRec.usage.includes('any') ? undefined : dstRec.usage[0];
    const sig = await d!.signRecord(dstRec, probe, { usage });
    const ok = rekeyed ? await d!.verifyRecord(dstRec, probe, sig) : await s!.verifyRecord(srcRec, probe, sig);
    if (!ok) throw err('VERIFY_FAILED', `'${name}': a signature made at the target does not verify with the source key`);
  } else {
    // an aes256 key inside a KMS encrypts in the KMS's own format, not KES's: check it round-trips there
    const kmsSymmetric =
      dstRec.type === 'aes256' &&
      dstRec.versions[dstRec.versions.length - 1]!.external &&
      !srcRec.versions[srcRec.versions.length - 1]!.external;
    const ct = rekeyed || kmsSymmetric ? await d!.encryptRecord(dstRec, probe) : await s!.encryptRecord(srcRec, probe);
    const back = await d!.decryptRecord(dstRec, ct);
    if (!back.equals(probe)) throw err('VERIFY_FAILED', `'${name}': data encrypted at the source does not decrypt at the target`);
  }
}

/**
 * A re-key that found its name taken: resumed after a crash, the target store already holds the key
 * this migration made (verification then proves it works). Anything else taken — e.g. an AWS KMS alias
 * of that name left from elsewhere, while the target store has no such key — is the failure it is.
 */
async function resumedRekey(ctx: ExecContext, e: PlanEntry, x: unknown): Promise<void> {
  if (!isKeyportError(x, 'EXISTS')) throw x;
  const held = await ctx.dst.kr.store.get(e.n, { signal: ctx.signal }).then(
    () => true,
    () => false,
  );
  if (!held) throw x;
}

/** the source record when the target already holds the key with its material (written by the interrupted run), else undefined */
async function alreadyThere(ctx: ExecContext, e: PlanEntry): Promise<KeyRecord | undefined> {
  const theirs = await ctx.dst.kr.store.get(e.n, { signal: ctx.signal }).catch((x: unknown) => {
    if (isKeyportError(x, 'NOT_FOUND')) return undefined;
    throw x;
  });
  if (!theirs) return undefined;
  const rec = await ctx.src.kr.store.get(e.n, { signal: ctx.signal });
  return material(theirs) === material(rec) ? rec : undefined;
}

/**
 * `redo`: the batch may have been partly written by an interrupted run (the first batch not done of a
 * resumed run): a key the target already holds with the source's material is not imported again (a KMS
 * target would refuse the name, or hold a second copy) but counted and verified as it is
 */
export async function executeBatch(ctx: ExecContext, batch: PlanEntry[], redo = false): Promise<BatchResult> {
  const res: BatchResult = { migrated: 0, verified: 0, failed: [], conflicts: [], errors: [], cancelled: [] };
  const fail = (name: string, e: unknown) => {
    // after an interrupt every failure counts as cancelled: the batch is not marked done, so the re-run
    // does it again and reports whatever real failure there was
    if (ctx.signal?.aborted) res.cancelled.push(name);
    else {
      res.failed.push(name);
      res.errors.push({ name, error: oneLine(e) });
    }
  };
  // each key's step starts on a turn of the event loop of its own, and only if the run was not interrupted:
  // between two local stores a batch is otherwise one chain of microtasks (SQLite and most crypto answer
  // at once) that no signal handler could break into until the run ended
  const step = <T>(fn: () => Promise<T>): Promise<T> =>
    ctx.pool.run(async () => {
      await new Promise<void>((r) => setImmediate(r));
      checkCancelled('migrating a key', ctx.signal);
      return fn();
    });
  const failed = (name: string) => res.failed.includes(name) || res.cancelled.includes(name);
  const sources = new Map<string, KeyRecord>();
  const verifyOne = async (name: string, rekeyed: boolean) => {
    const src = sources.get(name) ?? (await ctx.src.kr.store.get(name, { signal: ctx.signal }));
    await step(() => verifyKey(ctx, src, rekeyed));
  };
  const done: { name: string; rekeyed: boolean; early?: Promise<{ error: unknown } | undefined> }[] = [];
  // a re-key and its verification are one step: the key is checked as soon as it is made, in the same pool
  // slot. As a step of its own the verifying call queued behind every re-key still waiting for the pool,
  // so a batch ran as two phases (all re-keys, then all verifications) at half the KMS's rate.
  const rekeyStep = async (e: PlanEntry) => {
    const checked = await step(async () => {
      await rekey(ctx, e).catch((x) => resumedRekey(ctx, e, x));
      if (!ctx.verify) return undefined;
      // a verification that fails leaves the re-key done (the key is in the target): step 3 reports it
      try {
        await verifyKey(ctx, await ctx.src.kr.store.get(e.n, { signal: ctx.signal }), true);
        return undefined;
      } catch (error) {
        return { error };
      }
    });
    done.push({ name: e.n, rekeyed: true, ...(ctx.verify ? { early: Promise.resolve(checked) } : {}) });
  };
  // 1. build target records (KMS calls run concurrently under the adaptive pool)
  const built: (KeyRecord | undefined)[] = await Promise.all(
    batch.map(async (e) => {
      try {
        if (redo && e.s !== 'rekey') {
          const rec = await step(() => alreadyThere(ctx, e));
          if (rec) {
            sources.set(e.n, rec);
            done.push({ name: e.n, rekeyed: false });
            return undefined;
          }
        }
        if (e.s === 'rekey') {
          await rekeyStep(e);
          return undefined;
        }
        if (e.s === 'import' && ctx.rekey) {
          // the plan chose import because the target can import in general; a target KMS may still
          // refuse this key type (local-kms imports only symmetric keys): with --rekey that key is re-keyed
          const type = (await ctx.src.kr.store.get(e.n, { signal: ctx.signal })).type;
          if (!ctx.importRefused?.has(type)) {
            try {
              const b = await step(() => buildRecord(ctx, e));
              sources.set(e.n, b.src);
              return b.out;
            } catch (x) {
              if (!isKeyportError(x, 'UNSUPPORTED')) throw x;
              (ctx.importRefused ??= new Set()).add(type);
            }
          }
          await rekeyStep(e);
          res.rekeyedInstead = (res.rekeyedInstead ?? 0) + 1;
          return undefined;
        }
        const b = await step(() => buildRecord(ctx, e));
        sources.set(e.n, b.src);
        return b.out;
      } catch (x) {
        fail(e.n, x);
        return undefined;
      }
    }),
  );
  // 2. write: create-only for new names, atomic replace for --force
  const creates: KeyRecord[] = [];
  const replaces: KeyRecord[] = [];
  batch.forEach((e, i) => {
    const r = built[i];
    if (r) (e.f ? replaces : creates).push(r);
  });
  const store = ctx.dst.kr.store;
  /** records this batch stored at the target (the KMS keys they reference are in use) */
  const written = new Set<string>();
  if (replaces.length) {
    try {
      await store.putMany(replaces, undefined, { signal: ctx.signal });
      for (const r of replaces) {
        done.push({ name: r.name, rekeyed: false });
        written.add(r.name);
      }
    } catch (x) {
      for (const r of replaces) fail(r.name, x);
    }
  }
  if (creates.length) {
    let existed: string[] = [];
    if (store.createMany) {
      try {
        existed = await store.createMany(creates, { signal: ctx.signal });
        const there = new Set(existed);
        for (const r of creates) if (!there.has(r.name)) written.add(r.name);
      } catch (x) {
        for (const r of creates) fail(r.name, x);
        creates.length = 0;
      }
    } else {
      await Promise.all(
        creates.map(async (r) => {
          try {
            await step(() => store.create(r, { signal: ctx.signal }));
            written.add(r.name);
          } catch (x) {
            if (isKeyportError(x, 'EXISTS')) existed.push(r.name);
            else fail(r.name, x);
          }
        }),
      );
    }
    const existedSet = new Set(existed);
    for (const r of creates) {
      if (failed(r.name)) continue;
      if (existedSet.has(r.name)) {
        // written by an interrupted run of this migration, or by someone else meanwhile
        let theirs: KeyRecord | undefined;
        try {
          theirs = await store.get(r.name, { signal: ctx.signal });
        } catch (x) {
          if (!isKeyportError(x, 'NOT_FOUND')) {
            fail(r.name, x);
            continue;
          }
        }
        if (!theirs || material(theirs) !== material(r)) {
          res.conflicts.push(r.name);
          continue;
        }
      }
      done.push({ name: r.name, rekeyed: false });
    }
  }
  // KMS keys imported for records this batch did not store (a failed or cancelled write, a key found
  // there already): deleted again, with calls of their own that the run's signal does not cancel
  await Promise.all(
    batch.map(async (e, i) => {
      const r = built[i];
      const src = sources.get(e.n);
      if (r && src && !written.has(r.name)) await dropImported(ctx, src, r.versions);
    }),
  );
  res.migrated = done.length;
  // 3. verify
  if (ctx.verify) {
    await Promise.all(
      done.map(async ({ name, rekeyed, early }) => {
        try {
          if (early) {
            const r = await early;
            if (r) throw r.error;
          } else await verifyOne(name, rekeyed);
          res.verified++;
        } catch (x) {
          res.migrated--;
          fail(name, x);
        }
      }),
    );
  }
  return res;
}
