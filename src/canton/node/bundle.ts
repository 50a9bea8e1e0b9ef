/**
 * A whole node identity as one file, for Canton's "replicate the old node into a new one" migration: the
 * node record, each of its keys (the private key where the source store allows export, else the KMS key
 * reference — a key id, never an address or credential) and the topology transactions. Importing into another
 * store recreates the keys (import, or register in the target store's KMS) and checks every fingerprint.
 */
import { err, isKeyportError } from '../../errors.js';
import { isKeyType, type KeyType, type Purpose } from '../../crypto/keytypes.js';
import type { StoreKeyring } from '../../keys/keyring.js';
import { KEY_USAGES, type KeyUsage } from '../../store/types.js';
import { decodeEntry } from './identity.js';
import { findNode, loadNode, saveNode } from './registry.js';
import type { NodeRecord } from './types.js';
import { verifyTransactions } from '../topology/verify.js';

export const BUNDLE_FORMAT = 'keyport-canton-node-bundle-v1';

export interface BundleKey {
  name: string;
  type: KeyType;
  purpose: Purpose;
  usage: KeyUsage[];
  version: number;
  fingerprint: string;
  /** base64 SPKI */
  publicKey: string;
  /** base64 PKCS#8, where the source store allows export */
  privateKey?: string;
  /** the KMS key id, where the key lives in a KMS */
  kmsKeyId?: string;
}

export interface NodeBundle {
  format: typeof BUNDLE_FORMAT;
  node: NodeRecord;
  keys: BundleKey[];
}

export async function exportBundle(kr: StoreKeyring, name: string): Promise<{ bundle: NodeBundle; secrets: boolean }> {
  const node = await loadNode(kr, name);
  const keys: BundleKey[] = [];
  let secrets = false;
  for (const ref of node.keys) {
    const rec = await kr.store.get(ref.key);
    const v = rec.versions.find((x) => x.version === ref.version);
    if (!v?.publicKey) throw err('NOT_FOUND', `key '${ref.key}' has no version ${ref.version}`);
    const k: BundleKey = {
      name: ref.key,
      type: rec.type,
      purpose: rec.purpose,
      usage: rec.usage,
      version: ref.version,
      fingerprint: v.fingerprint,
      publicKey: v.publicKey,
    };
    if (v.external) k.kmsKeyId = v.external.keyId;
    else {
      const all = await kr.export(ref.key);
      const e = all.find((x) => x.version === ref.version)!;
      k.privateKey = e.secret.toString('base64');
      secrets = true;
    }
    keys.push(k);
  }
  return { bundle: { format: BUNDLE_FORMAT, node, keys }, secrets };
}

function parseBundle(raw: string): NodeBundle {
  let b: NodeBundle;
  try {
    b = JSON.parse(raw) as NodeBundle;
  } catch {
    throw err('INVALID_INPUT', 'not a keyport node bundle (not JSON)');
  }
  if (b?.format !== BUNDLE_FORMAT || !b.node || !Array.isArray(b.keys))
    throw err('INVALID_INPUT', `not a keyport node bundle (format ${BUNDLE_FORMAT})`);
  for (const k of b.keys)
    if (
      typeof k.name !== 'string' ||
      !isKeyType(k.type) ||
      !Array.isArray(k.usage) ||
      k.usage.some((u) => !(KEY_USAGES as readonly string[]).includes(u))
    )
      throw err('INVALID_INPUT', 'node bundle: damaged key entry');
  return b;
}

/**
 * Recreate the node in `kr`: exported keys are imported (held the way the target store holds keys: clear,
 * sealed or imported into its KMS); KMS-held keys are registered by id in the target store's KMS (the same
 * KMS, reached with the target's own configuration). Every fingerprint must match the bundle.
 */
export async function importBundle(kr: StoreKeyring, raw: string, opts: { as?: string } = {}): Promise<NodeRecord> {
  const b = parseBundle(raw);
  const name = opts.as ?? b.node.name;
  if (await findNode(kr, name)) throw err('EXISTS', `node '${name}' already exists`);
  const report = verifyTransactions(b.node.topology.map((e) => ({ source: e.name, signed: decodeEntry(e) })));
  if (!report.ok)
    throw err('VERIFY_FAILED', `the bundle's topology does not verify: ${report.transactions.find((t) => !t.ok)!.problems.join('; ')}`);
  const p = await kr.protection();
  for (const k of b.keys)
    if (!k.privateKey && p.mode !== 'external')
      throw err(
        'UNSUPPORTED',
        `key '${k.name}' lives in a KMS (key id ${k.kmsKeyId}): import the bundle into a store on that KMS (--store awskms:… / pkcs11:…)`,
      );
  const made: string[] = [];
  const refs = [];
  try {
    for (const k of b.keys) {
      const ref = b.node.keys.find((r) => r.key === k.name)!;
      const info = k.privateKey
        ? await kr.import(k.name, Buffer.from(k.privateKey, 'base64'), { type: k.type, purpose: k.purpose, usage: k.usage })
        : await kr.register(k.name, k.kmsKeyId!, { purpose: k.purpose, usage: k.usage });
      made.push(k.name);
      if (info.fingerprint !== k.fingerprint)
        throw err('VERIFY_FAILED', `key '${k.name}' arrived with fingerprint ${info.fingerprint}, the bundle says ${k.fingerprint}`);
      refs.push({ ...ref, version: info.version, origin: 'imported' as const });
    }
    const node: NodeRecord = { ...b.node, name, keys: refs };
    await saveNode(kr, node, { create: true });
    return node;
  } catch (e) {
    for (const n of made.reverse()) await kr.delete(n).catch(() => undefined);
    if (isKeyportError(e)) throw e;
    throw e;
  }
}
