/**
 * How a store protects secret key material, recorded in the store itself (meta key
 * `keyport.protection`) so every process and replica agrees:
 *   clear    — secrets stored as they are (0600 files / the SQLite file)
 *   envelope — every secret sealed under a symmetric wrapper key in a KMS (Canton's encrypted
 *              private key storage)
 *   external — keys generated and used inside a KMS; the store keeps references and public keys
 * `wrapper` is a KeyRef and `kms` a KmsRef (kms/address.ts): references, never addresses. A setting
 * written by 0.1.0 (a whole URI, credentials included) reads as the reference it names; `legacy` says the
 * stored text still needs rewriting (keys/protect.ts upgradeRefs does that on open).
 */
import { err } from '../errors.js';
import { parseStoredKeyRef, parseStoredKmsRef } from '../kms/address.js';
import type { RecordStore, StoreCallOptions } from './types.js';

export type Protection = { mode: 'clear' } | { mode: 'envelope'; wrapper: string } | { mode: 'external'; kms: string };

export const PROTECTION_META = 'keyport.protection';

export async function readProtection(store: RecordStore, opts?: StoreCallOptions): Promise<Protection> {
  return (await readProtectionStored(store, opts)).protection;
}

/** the setting, and whether its stored text is not yet the canonical reference (a 0.1.0 URI) */
export async function readProtectionStored(
  store: RecordStore,
  opts?: StoreCallOptions,
): Promise<{ protection: Protection; legacy: boolean }> {
  const raw = await store.getMeta(PROTECTION_META, opts);
  if (!raw) return { protection: { mode: 'clear' }, legacy: false };
  let p: Protection | undefined;
  try {
    const j = JSON.parse(raw) as Protection;
    if (j.mode === 'envelope' && typeof j.wrapper === 'string') p = { mode: 'envelope', wrapper: parseStoredKeyRef(j.wrapper).toString() };
    else if (j.mode === 'external' && typeof j.kms === 'string') p = { mode: 'external', kms: parseStoredKmsRef(j.kms).toString() };
    else if (j.mode === 'clear') p = { mode: 'clear' };
  } catch {
    /* fall through */
  }
  if (!p) throw err('INVALID_INPUT', `store ${store.uri} has a damaged protection setting`);
  return { protection: p, legacy: JSON.stringify(p) !== raw };
}

export async function writeProtection(store: RecordStore, p: Protection): Promise<void> {
  await store.setMeta(PROTECTION_META, p.mode === 'clear' ? undefined : JSON.stringify(p));
}
