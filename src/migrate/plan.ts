/**
 * Planning: list both sides completely (page by page, merged in name order, so memory stays flat),
 * decide every key before anything is written, and stream the decisions to the plan file.
 */
import { byteCompare } from '../store/dir-listing.js';
import { err } from '../errors.js';
import type { KeyRecord } from '../store/types.js';
import type { StoreKeyring } from '../keys/keyring.js';
import type { Protection } from '../store/protection.js';
import { compilePattern, type Pattern } from '../keys/names.js';
import type { PlanEntry, PlanWriter, Strategy } from './journal.js';
import { importRefusal, type Driver, type KeyMaterialForImport } from '../kms/driver.js';
import { sameKmsRef } from '../kms/address.js';

export type Mode = 'default' | 'merge' | 'force';

export interface Side {
  kr: StoreKeyring;
  /** the store as it prints (redacted by its type) */
  uri: string;
  protection: Protection;
  kind: string;
  /** the target holds only what a KES keystore can */
  kesOnly: boolean;
  /** the KMS of an external-mode store (its capabilities decide import or re-key at plan time) */
  kms?: Driver | undefined;
}

export interface PlanSummary {
  total: number;
  migrate: number;
  skipped: number;
  conflicts: string[];
  refused: { name: string; reason: string }[];
  strategies: Record<Strategy, number>;
}

async function* names(kr: StoreKeyring, pat: Pattern, signal?: AbortSignal): AsyncGenerator<string> {
  let after: string | undefined;
  for (;;) {
    const page = await kr.store.list({ prefix: pat.prefix, after, limit: 1000, signal });
    for (const n of page.names) if (pat.test(n)) yield n;
    if (!page.next) return;
    after = page.next;
  }
}

/** the fingerprints of every version: equal lists mean the same key material */
export const material = (r: KeyRecord) => r.versions.map((v) => v.fingerprint).join(',');

const kindOf = (r: KeyRecord): KeyMaterialForImport['kind'] =>
  r.type === 'aes256' ? 'symmetric' : r.purpose === 'signing' ? 'signing' : 'encryption';

/** why a target KMS cannot make a new key of this record's type (re-keying), or undefined */
function cannotHold(d: Driver, r: KeyRecord): string | undefined {
  const kind = kindOf(r);
  if (kind === 'symmetric') return undefined;
  const held: readonly string[] = kind === 'signing' ? d.supportedSigningKeySpecs() : d.supportedEncryptionKeySpecs();
  return held.includes(r.type) ? undefined : `${d.name} cannot create ${r.type} ${kind} keys either`;
}

export function strategyFor(_src: Side, dst: Side, r: KeyRecord, rekey: boolean): { s: Strategy } | { reason: string } {
  const external = r.versions.filter((v) => v.external);
  const dstExternal = dst.protection.mode === 'external';
  if (dst.kesOnly) {
    if (r.type !== 'aes256') return { reason: `a KES keystore holds only aes256 keys, this is ${r.type}` };
    if (r.versions.length > 1) return { reason: `a KES keystore holds one version, this key has ${r.versions.length}` };
  }
  if (external.length === 0) {
    if (!dstExternal) return { s: 'copy' };
    // decided here, from what the target KMS documents it imports: never attempted and failed
    const why = dst.kms ? importRefusal(dst.kms, kindOf(r), r.type as KeyMaterialForImport['spec']) : 'not a KMS';
    if (!why) return { s: 'import' };
    if (!rekey) return { reason: `${why}: pass --rekey to create a new key in ${dst.uri} instead` };
    const cannot = dst.kms && cannotHold(dst.kms, r);
    return cannot ? { reason: `${why}, and ${cannot}` } : { s: 'rekey' };
  }
  // the source cannot export: keep the reference when the target is a catalog of the same KMS
  if (
    dstExternal &&
    external.every((v) => sameKmsRef(v.external!.kms, (dst.protection as { kms: string }).kms)) &&
    external.length === r.versions.length
  )
    return { s: 'copy' };
  if (dst.kesOnly) return { reason: 'the key lives in a KMS and cannot be exported into a KES keystore' };
  if (rekey) {
    const cannot = dst.kms && cannotHold(dst.kms, r);
    return cannot ? { reason: `the key lives in a KMS and cannot be exported, and ${cannot}` } : { s: 'rekey' };
  }
  return {
    reason: `the key lives in KMS ${external[0]!.external!.kms} and cannot be exported: pass --rekey for a new key with a delegation`,
  };
}

export async function planMigration(
  src: Side,
  dst: Side,
  opts: { pattern?: string; mode: Mode; rekey: boolean; signal?: AbortSignal | undefined },
  sink: PlanWriter | ((e: PlanEntry) => void),
  progress?: (n: number) => void,
  /** the plan of an earlier, finished run of the same migration (name order): its keys are ours */
  previous?: AsyncGenerator<PlanEntry>,
): Promise<PlanSummary> {
  const pat = compilePattern(opts.pattern);
  const add = typeof sink === 'function' ? sink : (e: PlanEntry) => sink.add(e);
  const sum: PlanSummary = { total: 0, migrate: 0, skipped: 0, conflicts: [], refused: [], strategies: { copy: 0, import: 0, rekey: 0 } };
  // Canton node keys moving into a KMS must be ones Canton's kms provider can use for their role there
  const nodeRefusals = await (await import('../canton/node/compat.js')).nodeKeyMigrationRefusals(src.kr, dst.kr);
  const signal = opts.signal;
  const targets = names(dst.kr, pat, signal);
  let t = await targets.next();
  let prev = previous ? await previous.next() : undefined;
  for await (const name of names(src.kr, pat, signal)) {
    while (!t.done && byteCompare(t.value, name) < 0) t = await targets.next();
    const exists = !t.done && t.value === name;
    while (prev && !prev.done && byteCompare(prev.value.n, name) < 0) prev = await previous!.next();
    const ours = !!prev && !prev.done && prev.value.n === name && (prev.value.a === 'migrate' || prev.value.a === 'skip');
    sum.total++;
    progress?.(sum.total);
    const rec = await src.kr.store.get(name, { signal });
    const nodeRefusal = nodeRefusals.get(name);
    const st = nodeRefusal ? { reason: nodeRefusal } : strategyFor(src, dst, rec, opts.rekey);
    if (exists) {
      if (opts.mode === 'default' && !ours) {
        add({ n: name, a: 'conflict', r: 'the target already has a key of this name' });
        sum.conflicts.push(name);
        continue;
      }
      const theirs = await dst.kr.store.get(name, { signal });
      if (material(theirs) === material(rec)) {
        add({ n: name, a: 'skip', r: 'same key material at the target' });
        sum.skipped++;
        continue;
      }
      if (opts.mode === 'merge') {
        add({ n: name, a: 'conflict', r: 'different key material at the target' });
        sum.conflicts.push(name);
        continue;
      }
    }
    if ('reason' in st) {
      add({ n: name, a: 'refuse', r: st.reason });
      sum.refused.push({ name, reason: st.reason });
      continue;
    }
    add({ n: name, a: 'migrate', s: st.s, ...(exists ? { f: 1 as const } : {}) });
    sum.migrate++;
    sum.strategies[st.s]++;
  }
  if (opts.pattern && pat.exact && sum.total === 0) throw err('NOT_FOUND', `key '${opts.pattern}' does not exist in ${src.uri}`);
  return sum;
}
