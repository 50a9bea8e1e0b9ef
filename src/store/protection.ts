/**
 * How a store protects secret key material, recorded in the store itself (meta key
 * `keyport.protection`) so every process and replica agrees:
 *   clear    — secrets stored as they are (0600 files / the SQLite file)
 *   envelope — every secret sealed under a symmetric wrapper key in a KMS (Canton's encrypted
 *              private key storage)
 *   external — keys generated and used inside a KMS; the store keeps references and public keys
 */
import { err } from '../errors.js';
import type { RecordStore } from './types.js';

export type Protection = { mode: 'clear' } | { mode: 'envelope'; wrapper: string } | { mode: 'external'; kms: string };

export const PROTECTION_META = 'keyport.protection';

export async function readProtection(store: RecordStore): Promise<Protection> {
  const raw = await store.getMeta(PROTECTION_META);
  if (!raw) return { mode: 'clear' };
  try {
    const p = JSON.parse(raw) as Protection;
    if (p.mode === 'envelope' && typeof p.wrapper === 'string') return p;
    if (p.mode === 'external' && typeof p.kms === 'string') return p;
    if (p.mode === 'clear') return p;
  } catch {
    /* fall through */
  }
  throw err('INVALID_INPUT', `store ${store.uri} has a damaged protection setting`);
}

export async function writeProtection(store: RecordStore, p: Protection): Promise<void> {
  await store.setMeta(PROTECTION_META, p.mode === 'clear' ? undefined : JSON.stringify(p));
}
