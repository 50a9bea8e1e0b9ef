/**
 * A node's identity in Canton's own files: export (the `.cert` files Canton's console loads, in the order they
 * apply, and one collection), independent verification of such files, namespace delegation and revocation
 * (signed by a node's namespace key, or by a root key held in a KMS/HSM the node never reaches: the offline
 * root ceremony), and the import of certificates made elsewhere.
 */
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { err } from '../../errors.js';
import { parsePublicKey } from '../../crypto/keys.js';
import type { StoreKeyring } from '../../keys/keyring.js';
import {
  describeRestriction,
  namespaceDelegation,
  rootNamespaceDelegation,
  signTransaction,
  uniqueIdentifier,
} from '../topology/builders.js';
import { keyFingerprint } from '../topology/hash.js';
import { publicKeyId } from '../topology/keys.js';
import {
  type DelegationRestriction,
  decodeSignedCollection,
  decodeVersionedSigned,
  encodeSignedCollection,
  encodeVersionedSigned,
  innerTransaction,
  type SignedTopologyTransaction,
  TopologyChangeOp,
  unwrapVersioned,
  decodeSigningPublicKey,
} from '../topology/messages.js';
import type { TopologySigner } from '../topology/signer.js';
import { verifyTransactions, type VerifyReport } from '../topology/verify.js';
import { buildOwnerToKeyMapping, namespaceSigner } from './init.js';
import { loadNode, saveNode } from './registry.js';
import type { NodeRecord, NodeTopologyEntry } from './types.js';

export function nodeId(n: NodeRecord): string {
  return uniqueIdentifier(n.identifier, n.namespace);
}

export function decodeEntry(e: NodeTopologyEntry): SignedTopologyTransaction {
  return decodeVersionedSigned(Buffer.from(e.cert, 'base64'));
}

/** the node's transactions in apply order: its namespace owner's first, then its own */
export async function identityTransactions(kr: StoreKeyring, node: NodeRecord): Promise<NodeTopologyEntry[]> {
  const own = node.topology;
  if (!node.namespaceOf) return own;
  const owner = await loadNode(kr, node.namespaceOf);
  return [...owner.topology.filter((e) => e.name !== 'owner-to-key-mapping' && !e.name.startsWith('owner-to-key-mapping')), ...own];
}

export interface ExportResult {
  id: string;
  namespace: string;
  files: string[];
  collection: string;
}

/** `node export NAME --out DIR`: NN-NAME.cert per transaction (Canton's single-certificate files) + identity.certs */
export async function exportIdentity(kr: StoreKeyring, name: string, dir: string): Promise<ExportResult> {
  const node = await loadNode(kr, name);
  const entries = await identityTransactions(kr, node);
  if (!entries.length) throw err('NOT_FOUND', `node '${name}' has no topology transactions yet`);
  mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  entries.forEach((e, i) => {
    const f = join(dir, `${String(i + 1).padStart(2, '0')}-${e.name}.cert`);
    writeFileSync(f, Buffer.from(e.cert, 'base64'));
    files.push(f);
  });
  const collection = join(dir, 'identity.certs');
  writeFileSync(collection, encodeSignedCollection(entries.map(decodeEntry)));
  writeFileSync(
    join(dir, 'node.json'),
    `${JSON.stringify(
      { node: node.name, profile: node.profile, id: nodeId(node), namespace: node.namespace, files: files.map((f) => basename(f)) },
      null,
      2,
    )}\n`,
  );
  return { id: nodeId(node), namespace: node.namespace, files, collection };
}

/** read `.cert` files (single signed transactions) and `.certs` collections from files and directories */
export function readTopologyFiles(paths: string[]): { source: string; signed: SignedTopologyTransaction }[] {
  const out: { source: string; signed: SignedTopologyTransaction }[] = [];
  const readOne = (f: string) => {
    let b: Buffer;
    try {
      b = readFileSync(f);
    } catch (e) {
      throw err('USAGE', `cannot read ${f}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    if (f.endsWith('.certs')) decodeSignedCollection(b).forEach((signed, i) => out.push({ source: `${f}#${i + 1}`, signed }));
    else out.push({ source: f, signed: decodeVersionedSigned(b) });
  };
  for (const p of paths) {
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(p);
    } catch {
      throw err('USAGE', `${p}: no such file or directory`);
    }
    if (st.isDirectory()) {
      const names = readdirSync(p).sort();
      const certs = names.filter((n) => n.endsWith('.cert'));
      // a directory written by `node export` has both: the single files are the same transactions
      const use = certs.length ? certs : names.filter((n) => n.endsWith('.certs'));
      if (!use.length) throw err('NOT_FOUND', `${p} holds no .cert or .certs files`);
      for (const n of use) readOne(join(p, n));
    } else readOne(p);
  }
  return out;
}

export function verifyFiles(paths: string[]): VerifyReport {
  return verifyTransactions(readTopologyFiles(paths));
}

/** a public key from a file: SPKI DER/PEM, or a Canton public key file (versioned SigningPublicKey) */
export function readPublicKeyFile(path: string): Buffer {
  let b: Buffer;
  try {
    b = readFileSync(path);
  } catch (e) {
    throw err('USAGE', `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  try {
    return parsePublicKey(b).export({ type: 'spki', format: 'der' }) as Buffer;
  } catch {
    try {
      return decodeSigningPublicKey(unwrapVersioned(b, 'SigningPublicKey').data).publicKey;
    } catch {
      throw err('INVALID_INPUT', `${path}: not a public key (SPKI DER/PEM or a Canton public key file)`);
    }
  }
}

export interface DelegateOptions {
  /** SPKI DER of the key receiving authority */
  targetKey: Buffer;
  restriction?: DelegationRestriction;
  revoke?: boolean;
  /** the namespace (default: the signer's fingerprint: a root key) */
  namespace?: string;
  /** transactions already issued in the namespace (to pick the next serial) */
  history?: SignedTopologyTransaction[];
}

/** sign a NamespaceDelegation (or its revocation) with `signer`; serial follows the history of that delegation */
export async function makeDelegation(signer: TopologySigner, d: DelegateOptions): Promise<SignedTopologyTransaction> {
  const namespace = d.namespace ?? signer.fingerprint;
  const target = keyFingerprint(d.targetKey);
  let last: { serial: number; restriction: DelegationRestriction; removed: boolean } | undefined;
  for (const s of d.history ?? []) {
    const tx = innerTransaction(s);
    if (tx.mapping.kind !== 'namespace-delegation') continue;
    const m = tx.mapping.value;
    if (m.namespace !== namespace || publicKeyId(m.targetKey) !== target) continue;
    if (!last || tx.serial > last.serial)
      last = { serial: tx.serial, restriction: m.restriction, removed: tx.operation === TopologyChangeOp.REMOVE };
  }
  if (d.revoke && (!last || last.removed)) throw err('NOT_FOUND', `no delegation of namespace ${namespace} to key ${target} is in force`);
  const restriction = d.restriction ?? (d.revoke ? last!.restriction : undefined);
  const tx = namespaceDelegation({
    namespace,
    targetKey: d.targetKey,
    ...(restriction ? { restriction } : {}),
    serial: last ? last.serial + 1 : 1,
    ...(d.revoke ? { revoke: true } : {}),
  });
  return signTransaction(tx, [signer]);
}

/** a root key's self-signed root certificate (the offline side of the ceremony) */
export async function makeRootCertificate(signer: TopologySigner): Promise<SignedTopologyTransaction> {
  return signTransaction(rootNamespaceDelegation(signer.publicKey), [signer]);
}

/** `node delegate --namespace-of NODE`: the node's namespace key signs; the certificate joins the node's topology */
export async function delegateFromNode(
  kr: StoreKeyring,
  name: string,
  targetKey: Buffer,
  opts: { restriction?: DelegationRestriction; revoke?: boolean },
): Promise<{ node: NodeRecord; cert: SignedTopologyTransaction; entry: NodeTopologyEntry }> {
  let node = await loadNode(kr, name);
  if (node.namespaceOf) node = await loadNode(kr, node.namespaceOf);
  const signer = await namespaceSigner(kr, node);
  const cert = await makeDelegation(signer, {
    targetKey,
    namespace: node.namespace,
    history: node.topology.map(decodeEntry),
    ...(opts.restriction ? { restriction: opts.restriction } : {}),
    ...(opts.revoke ? { revoke: true } : {}),
  });
  const fp = keyFingerprint(targetKey);
  const entry = { name: `${opts.revoke ? 'revoke' : 'delegate'}-${fp.slice(4, 16)}`, cert: encodeVersionedSigned(cert).toString('base64') };
  node.topology.push(entry);
  await saveNode(kr, node);
  return { node, cert, entry };
}

/**
 * `node import-certs NAME FILE…`: certificates made elsewhere (the offline root's root certificate and its
 * delegation to this node's namespace key) become the node's namespace; its OwnerToKeyMapping is re-issued
 * under that namespace and signed by the delegated key. Everything is verified before anything is recorded.
 */
export async function importCertificates(kr: StoreKeyring, name: string, paths: string[]): Promise<NodeRecord> {
  const node = await loadNode(kr, name);
  if (node.namespaceOf) throw err('USAGE', `node '${name}' lives in node '${node.namespaceOf}''s namespace: import the certificates there`);
  const ns = node.keys.find((k) => k.role === 'namespace');
  if (!ns) throw err('NOT_FOUND', `node '${name}' has no namespace key`);
  const incoming = readTopologyFiles(paths);
  const report = verifyTransactions(incoming);
  if (!report.ok) {
    const bad = report.transactions.find((t) => !t.ok)!;
    throw err('VERIFY_FAILED', `${bad.source}: ${bad.problems.join('; ')}`);
  }
  const d = report.delegations.find((x) => x.target === ns.fingerprint && !x.root);
  if (!d) throw err('VERIFY_FAILED', `the certificates do not delegate a namespace to node '${name}''s namespace key ${ns.fingerprint}`);
  const { awaitingRoot: _, ...rest } = node;
  const next: NodeRecord = {
    ...rest,
    namespace: d.namespace,
    topology: incoming.map((i, n) => {
      const tx = innerTransaction(i.signed);
      let entryName = `imported-${n + 1}`;
      if (tx.mapping.kind === 'namespace-delegation') {
        const t = publicKeyId(tx.mapping.value.targetKey);
        entryName = t === tx.mapping.value.namespace ? 'root-namespace' : `delegate-${t.slice(4, 16)}`;
      }
      return { name: entryName, cert: encodeVersionedSigned(i.signed).toString('base64') };
    }),
  };
  const otk = await buildOwnerToKeyMapping(kr, next, 1);
  if (otk) next.topology.push({ name: 'owner-to-key-mapping', cert: otk.toString('base64') });
  const check = verifyTransactions(next.topology.map((e) => ({ source: e.name, signed: decodeEntry(e) })));
  if (!check.ok)
    throw err('VERIFY_FAILED', `node '${name}' would not verify: ${check.transactions.find((t) => !t.ok)!.problems.join('; ')}`);
  await saveNode(kr, next);
  return next;
}

export function describeReport(r: VerifyReport): string[] {
  const lines: string[] = [];
  for (const t of r.transactions) {
    const what =
      t.kind === 'namespace-delegation'
        ? `${t.operation === 'remove' ? 'revoke' : t.target === t.namespace ? 'root' : 'delegate'} ${t.target} (${t.restriction})`
        : t.kind === 'owner-to-key-mapping'
          ? `keys of ${t.member}`
          : t.kind;
    lines.push(`${t.ok ? 'ok  ' : 'FAIL'} ${t.source}: ${what} serial ${t.serial}${t.ok ? '' : ` — ${t.problems.join('; ')}`}`);
  }
  return lines;
}

export { describeRestriction };
