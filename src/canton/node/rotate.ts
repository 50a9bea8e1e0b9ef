/**
 * `keyport node rotate NAME [--role signing|sequencer-auth|protocol|encryption|all] [--to-key-id ID]`:
 * new keys for a node's roles, made where its keys live (same store or KMS), or a pre-generated KMS key
 * adopted (checked against the role like a registration), and a new OwnerToKeyMapping (serial + 1) signed
 * as Canton requires (the namespace key plus every signing key it maps, as proof of ownership).
 *
 * Keys rotate by version in the keyring: the old versions stay, so what they signed keeps verifying and
 * what was encrypted to them keeps decrypting. The namespace key is not rotated here: Canton moves a
 * namespace with a delegation (`node delegate`), not a rotation.
 */
import { err, isKeyportError, type ErrorCode } from '../../errors.js';
import type { StoreKeyring } from '../../keys/keyring.js';
import type { CantonKeyRole } from '../roles.js';
import { decodeVersionedSigned, innerTransaction } from '../topology/messages.js';
import { buildOwnerToKeyMapping } from './init.js';
import { loadNode, saveNode } from './registry.js';
import type { NodeKeyRef, NodeRecord } from './types.js';

export const ROTATE_ROLES = ['signing', 'sequencer-auth', 'protocol', 'encryption', 'all'] as const;
export type RotateRole = (typeof ROTATE_ROLES)[number];

export interface RotateResult {
  node: NodeRecord;
  rotated: { role: CantonKeyRole; key: string; fromVersion: number; toVersion: number; fingerprint: string }[];
  /** the serial of the new OwnerToKeyMapping, when the node has one */
  serial?: number;
}

function selected(node: NodeRecord, role: RotateRole): NodeKeyRef[] {
  const want: CantonKeyRole[] =
    role === 'all'
      ? ['sequencer-auth', 'protocol', 'signing', 'encryption']
      : role === 'signing'
        ? ['sequencer-auth', 'protocol', 'signing']
        : [role];
  return node.keys.filter((k) => want.includes(k.role));
}

/** the serial of the node's newest OwnerToKeyMapping (0 when it has none) */
function lastOtkSerial(node: NodeRecord): number {
  let serial = 0;
  for (const t of node.topology) {
    const tx = innerTransaction(decodeVersionedSigned(Buffer.from(t.cert, 'base64')));
    if (tx.mapping.kind === 'owner-to-key-mapping') serial = Math.max(serial, tx.serial);
  }
  return serial;
}

export async function rotateNode(
  kr: StoreKeyring,
  name: string,
  opts: { role?: RotateRole; toKeyId?: string } = {},
): Promise<RotateResult> {
  const role = opts.role ?? 'all';
  const node = await loadNode(kr, name);
  if (node.awaitingRoot)
    throw err(
      'USAGE',
      `node '${name}' waits for its offline root's certificates (node import-certs): rotate after its identity is complete`,
    );
  const targets = selected(node, role);
  if (!targets.length) throw err('NOT_FOUND', `node '${name}' has no ${role === 'all' ? 'signing or encryption' : role} key to rotate`);
  if (opts.toKeyId !== undefined && targets.length !== 1)
    throw err(
      'USAGE',
      `--to-key-id names one KMS key, but --role ${role} covers ${targets.length} keys of node '${name}' ` +
        `(${targets.map((t) => t.role).join(', ')}): pick one with --role`,
    );
  const rotated: RotateResult['rotated'] = [];
  const keys = node.keys.map((k) => ({ ...k }));
  let failed: { role: CantonKeyRole; key: string; cause: unknown } | undefined;
  for (const t of targets) {
    let info: Awaited<ReturnType<StoreKeyring['rotate']>>;
    try {
      info = await kr.rotate(t.key, opts.toKeyId !== undefined ? { toKeyId: opts.toKeyId } : {});
    } catch (e) {
      // nothing rotated yet: the node is as it was
      if (!rotated.length) throw e;
      // some keys already have a new version in the keyring: record them (with their mapping) below and
      // say what happened, rather than leave the node half-rotated without a word
      failed = { role: t.role, key: t.key, cause: e };
      break;
    }
    const ref = keys.find((k) => k.key === t.key && k.role === t.role)!;
    rotated.push({ role: t.role, key: t.key, fromVersion: ref.version, toVersion: info.version, fingerprint: info.fingerprint });
    ref.version = info.version;
    ref.fingerprint = info.fingerprint;
    if (opts.toKeyId !== undefined) ref.origin = 'registered';
  }
  const next: NodeRecord = { ...node, keys, topology: [...node.topology] };
  const serial = lastOtkSerial(node) + 1;
  const done = rotated.map((r) => `${r.role} key '${r.key}' v${r.fromVersion} -> v${r.toVersion}`).join(', ');
  const left = failed ? targets.slice(targets.findIndex((t) => t.key === failed!.key && t.role === failed!.role)) : [];
  const finish = left.map((l) => `keyport node rotate ${name} --role ${l.role}`).join('; ');
  let otk: Buffer | undefined;
  try {
    otk = await buildOwnerToKeyMapping(kr, next, serial);
    if (otk) next.topology.push({ name: `owner-to-key-mapping-${serial}`, cert: otk.toString('base64') });
    await saveNode(kr, next);
  } catch (e) {
    if (!failed) throw e;
    // the keyring has the new versions, the node record still names the old ones (which keep signing for it)
    throw err(
      codeOf(failed.cause),
      `node '${name}' is partly rotated: rotating its ${failed.role} key '${failed.key}' failed (${messageOf(failed.cause)}), after ${done}; ` +
        `recording that also failed (${messageOf(e)}), so node '${name}' still uses its previous versions: run keyport node rotate ` +
        `${name} --role ${role} again`,
      { cause: failed.cause },
    );
  }
  if (failed)
    throw err(
      codeOf(failed.cause),
      `node '${name}' is partly rotated: rotating its ${failed.role} key '${failed.key}' failed (${messageOf(failed.cause)}); ` +
        `${done} ${rotated.length === 1 ? 'was' : 'were'} rotated and recorded${otk ? ` with a new OwnerToKeyMapping (serial ${serial})` : ''}; ` +
        `finish with: ${finish}`,
      { cause: failed.cause },
    );
  return { node: next, rotated, ...(otk ? { serial } : {}) };
}

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e));
const codeOf = (e: unknown): ErrorCode => (isKeyportError(e) ? e.code : 'INTERNAL');
