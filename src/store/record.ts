/** Validation of records read from any store: a damaged record is a clear error, never a crash. */
import { z } from 'zod';
import { err } from '../errors.js';
import { KEY_TYPES } from '../crypto/keytypes.js';
import { KEY_USAGES, type KeyRecord } from './types.js';

const Version = z.object({
  version: z.number().int().positive(),
  createdAt: z.string(),
  publicKey: z.string().optional(),
  fingerprint: z.string(),
  clear: z.string().optional(),
  sealed: z.object({ wrapper: z.string(), blob: z.string() }).optional(),
  external: z.object({ kms: z.string(), keyId: z.string() }).optional(),
});

export const KeyRecordSchema = z.object({
  name: z.string(),
  type: z.enum(KEY_TYPES),
  purpose: z.enum(['symmetric', 'signing', 'encryption']),
  usage: z.array(z.enum(KEY_USAGES)),
  state: z.enum(['active', 'disabled']),
  createdAt: z.string(),
  createdBy: z.string(),
  meta: z.record(z.string(), z.string()).optional(),
  versions: z.array(Version).min(1),
});

/** what to do about a record keyport cannot read: it never guesses, repairs or drops one itself */
const DAMAGED = 'restore it from a backup, or move it out of the store if the key is lost';

export function parseRecord(json: string, where: string): KeyRecord {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    throw err('INVALID_INPUT', `${where}: stored key record is not valid JSON: ${DAMAGED}`);
  }
  const r = KeyRecordSchema.safeParse(v);
  if (!r.success)
    throw err(
      'INVALID_INPUT',
      `${where}: stored key record is malformed (${r.error.issues[0]?.path.join('.') || 'root'}: ${r.error.issues[0]?.message}): ${DAMAGED}`,
    );
  return r.data as KeyRecord;
}

/** what an update function returned must be the record it was given (same name) */
export function checkUpdated(name: string, next: KeyRecord): KeyRecord {
  if (next.name !== name) throw err('INTERNAL', `update of '${name}' returned the record of '${next.name}'`);
  return next;
}

/** upper bound for a prefix range scan over ASCII names */
export const prefixEnd = (prefix: string) => prefix + '\uffff';
