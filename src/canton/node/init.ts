/**
 * `node init`: a Canton node's key set, made in the node's store or KMS (auto-init) or adopted from keys
 * pre-generated in a KMS (manual init), and the topology transactions that establish its identity.
 *
 * Key sets follow Canton 3.x (the nodes in Canton's own topology snapshots): every node has a namespace key
 * (unless it lives in another node's namespace), a sequencer-authentication key and a protocol signing key;
 * participants and synchronizer managers also an encryption key.
 */
import { randomBytes } from 'node:crypto';
import { err } from '../../errors.js';
import { KEY_TYPE_INFO, type KeyType } from '../../crypto/keytypes.js';
import { checkName } from '../../keys/names.js';
import type { StoreKeyring } from '../../keys/keyring.js';
import type { KeyUsage } from '../../store/types.js';
import { ROLE_RULES, ROLE_USAGES, roleMismatch, type CantonKeyRole } from '../roles.js';
import { checkIdentifier, memberId, ownerToKeyMapping, rootNamespaceDelegation, signTransaction } from '../topology/builders.js';
import { encodeVersionedSigned } from '../topology/messages.js';
import { keyringSigner, type TopologySigner } from '../topology/signer.js';
import { findNode, loadNode, saveNode } from './registry.js';
import { type NodeKeyRef, type NodeProfile, type NodeRecord, NODE_PROFILES, PROFILE_MEMBER } from './types.js';

export interface ManualKeys {
  namespaceKeyId?: string;
  /** one key for sequencer authentication and protocol signing, or the protocol key when sequencerAuthKeyId is given */
  signingKeyId: string;
  sequencerAuthKeyId?: string;
  encryptionKeyId?: string;
}

export interface InitOptions {
  profile: NodeProfile;
  /** Canton identifier (default: the node name) */
  identifier?: string;
  /** live in this node's namespace (no namespace key of its own) */
  namespaceOf?: string;
  signingSpec?: KeyType;
  encryptionSpec?: KeyType;
  /** one signing key for sequencer authentication and protocol (default: two keys, as Canton makes them) */
  singleSigningKey?: boolean;
  /** adopt pre-generated KMS keys instead of generating any */
  manual?: ManualKeys;
  /**
   * the namespace's root key is held offline (an HSM/KMS the node never reaches): the node's namespace key
   * is an intermediate, and the node's namespace comes from `node import-certs` with the root's certificates
   */
  offlineRoot?: boolean;
}

export const PROFILE_HAS_ENCRYPTION: Record<NodeProfile, boolean> = {
  participant: true,
  'synchronizer-manager': true,
  sequencer: false,
  mediator: false,
};

export function parseProfile(s: string): NodeProfile {
  if (!(NODE_PROFILES as readonly string[]).includes(s)) throw err('USAGE', `unknown profile '${s}': use ${NODE_PROFILES.join(', ')}`);
  return s as NodeProfile;
}

/** the key's name in the keyring: NODE-ROLE, plus a random tag in a KMS so nodes of two catalogs sharing one account never collide */
function keyName(node: string, role: CantonKeyRole, tag: string | undefined): string {
  const n = tag ? `${node}-${role}-${tag}` : `${node}-${role}`;
  if (n.length > 80) throw err('USAGE', `node name '${node}' is too long for its key names (80 characters at most)`);
  return n;
}

async function pickSpec(kr: StoreKeyring, role: CantonKeyRole, asked: KeyType | undefined): Promise<KeyType> {
  const p = await kr.protection();
  const rule = ROLE_RULES[role];
  const inKms = p.mode === 'external';
  const allowed = inKms ? rule.kmsSpecs : rule.specs;
  let offered: readonly string[] = Object.keys(KEY_TYPE_INFO);
  if (inKms) {
    const d = await kr.kmsDriver(p.kms);
    offered = rule.operation === 'sign' ? d.supportedSigningKeySpecs() : d.supportedEncryptionKeySpecs();
  }
  if (asked) {
    const why = roleMismatch(role, { type: asked, usage: rule.operation === 'sign' ? 'sign' : 'encrypt', inKms });
    if (why) throw err('USAGE', `--${rule.operation === 'sign' ? 'signing' : 'encryption'}-spec ${asked}: ${why}`);
    if (!offered.includes(asked))
      throw err(
        'UNSUPPORTED',
        `this store's KMS cannot make ${asked} keys: use one of ${allowed.filter((t) => offered.includes(t)).join(', ')}`,
      );
    return asked;
  }
  const t = allowed.find((x) => offered.includes(x));
  if (!t) throw err('UNSUPPORTED', `this store cannot hold a Canton ${role} key: it needs ${rule.needs}`);
  return t;
}

/** the roles a node gets */
function rolesOf(opts: InitOptions): CantonKeyRole[] {
  const roles: CantonKeyRole[] = [];
  const manual = opts.manual;
  if (!opts.namespaceOf) roles.push('namespace');
  if (manual) roles.push(...(manual.sequencerAuthKeyId ? (['sequencer-auth', 'protocol'] as const) : (['signing'] as const)));
  else roles.push(...(opts.singleSigningKey ? (['signing'] as const) : (['sequencer-auth', 'protocol'] as const)));
  if (PROFILE_HAS_ENCRYPTION[opts.profile]) roles.push('encryption');
  return roles;
}

function manualKeyId(m: ManualKeys, role: CantonKeyRole): string | undefined {
  switch (role) {
    case 'namespace':
      return m.namespaceKeyId;
    case 'sequencer-auth':
      return m.sequencerAuthKeyId;
    case 'protocol':
    case 'signing':
      return m.signingKeyId;
    case 'encryption':
      return m.encryptionKeyId;
  }
}

/** Canton signing usages of a node key as OTK roles */
function otkRole(role: CantonKeyRole): ('sequencer-auth' | 'protocol')[] | 'encryption' | undefined {
  if (role === 'encryption') return 'encryption';
  if (role === 'namespace') return undefined;
  return ROLE_USAGES[role] as ('sequencer-auth' | 'protocol')[];
}

/** a signer for one of the node's keys, with the usage its role allows */
export async function nodeSigner(kr: StoreKeyring, ref: NodeKeyRef): Promise<TopologySigner> {
  const usage: KeyUsage | undefined = ref.usage.includes('any') ? undefined : ref.usage[0];
  return keyringSigner(kr, ref.key, { version: ref.version, ...(usage ? { usage } : {}) });
}

/** the key a node signs its namespace's transactions with: its own namespace key, or the owner node's */
export async function namespaceSigner(kr: StoreKeyring, node: NodeRecord): Promise<TopologySigner> {
  if (node.namespaceOf) return namespaceSigner(kr, await loadNode(kr, node.namespaceOf));
  const ns = node.keys.find((k) => k.role === 'namespace');
  if (!ns) throw err('NOT_FOUND', `node '${node.name}' has no namespace key`);
  return nodeSigner(kr, ns);
}

/** the node's current OwnerToKeyMapping, signed by its namespace and every signing key (proof of ownership) */
export async function buildOwnerToKeyMapping(kr: StoreKeyring, node: NodeRecord, serial: number): Promise<Buffer | undefined> {
  const kind = PROFILE_MEMBER[node.profile];
  if (!kind) return undefined;
  const mapped = node.keys.filter((k) => otkRole(k.role) !== undefined);
  const keys = await Promise.all(
    mapped.map(async (k) => ({ spki: await kr.publicKey(k.key, k.version), role: otkRole(k.role)!, type: k.type })),
  );
  const tx = ownerToKeyMapping(memberId(kind, node.identifier, node.namespace), keys, serial);
  const signers = [await namespaceSigner(kr, node)];
  for (const k of mapped) if (k.role !== 'encryption') signers.push(await nodeSigner(kr, k));
  return encodeVersionedSigned(await signTransaction(tx, signers));
}

export async function initNode(kr: StoreKeyring, name: string, opts: InitOptions): Promise<NodeRecord> {
  checkName(name);
  const identifier = opts.identifier ?? name;
  checkIdentifier(identifier);
  if (await findNode(kr, name)) throw err('EXISTS', `node '${name}' already exists`);
  if (kr.store.capabilities.kesOnly)
    throw err('UNSUPPORTED', `${kr.store.capabilities.kind} stores hold only KES keys: use another store for Canton nodes`);
  let owner: NodeRecord | undefined;
  if (opts.namespaceOf) {
    owner = await loadNode(kr, opts.namespaceOf);
    if (owner.namespaceOf)
      throw err(
        'USAGE',
        `node '${owner.name}' itself lives in node '${owner.namespaceOf}''s namespace: use --namespace-of ${owner.namespaceOf}`,
      );
  }
  const p = await kr.protection();
  if (opts.manual && p.mode !== 'external')
    throw err(
      'USAGE',
      'manual init registers keys that live in a KMS: pass --store with the KMS (awskms:…, pkcs11:…) the keys were made in',
    );
  if (opts.manual && !opts.namespaceOf && !opts.manual.namespaceKeyId)
    throw err('USAGE', 'manual init needs --namespace-key-id (or --namespace-of NODE)');
  if (opts.manual && PROFILE_HAS_ENCRYPTION[opts.profile] && !opts.manual.encryptionKeyId)
    throw err('USAGE', `a ${opts.profile} needs an encryption key: pass --encryption-key-id`);
  if (opts.manual && !PROFILE_HAS_ENCRYPTION[opts.profile] && opts.manual.encryptionKeyId)
    throw err('USAGE', `a ${opts.profile} has no encryption key: drop --encryption-key-id`);
  if (opts.manual && opts.namespaceOf && opts.manual.namespaceKeyId)
    throw err('USAGE', '--namespace-key-id and --namespace-of exclude each other');
  const tag = p.mode === 'external' ? randomBytes(4).toString('hex') : undefined;

  const made: string[] = [];
  const refs: NodeKeyRef[] = [];
  try {
    for (const role of rolesOf(opts)) {
      const rule = ROLE_RULES[role];
      const usage = ROLE_USAGES[role];
      const purpose = rule.operation === 'sign' ? 'signing' : 'encryption';
      const kname = keyName(name, role, tag);
      let origin: NodeKeyRef['origin'] = 'generated';
      if (opts.manual) {
        const id = manualKeyId(opts.manual, role)!;
        const info = await registerForRole(kr, kname, id, role);
        made.push(kname);
        origin = 'registered';
        refs.push({ role, key: kname, version: info.version, fingerprint: info.fingerprint, type: info.type, usage: info.usage, origin });
        continue;
      }
      const type = await pickSpec(kr, role, rule.operation === 'sign' ? opts.signingSpec : opts.encryptionSpec);
      const info = await kr.create(kname, { type, purpose, ...(usage.length ? { usage } : {}), createdBy: `keyport node init ${name}` });
      made.push(kname);
      refs.push({ role, key: kname, version: info.version, fingerprint: info.fingerprint, type, usage: info.usage, origin });
    }
    const nsRef = refs.find((r) => r.role === 'namespace');
    if (opts.offlineRoot && !nsRef) throw err('USAGE', '--offline-root needs a namespace key of the node (not --namespace-of)');
    const node: NodeRecord = {
      v: 1,
      name,
      profile: opts.profile,
      identifier,
      createdAt: new Date().toISOString(),
      namespace: owner ? owner.namespace : nsRef!.fingerprint,
      ...(owner ? { namespaceOf: owner.name } : {}),
      manualInit: !!opts.manual,
      ...(opts.offlineRoot ? { awaitingRoot: true } : {}),
      keys: refs,
      topology: [],
    };
    if (opts.offlineRoot) {
      await saveNode(kr, node, { create: true });
      return node;
    }
    if (nsRef) {
      const root = await nodeSigner(kr, nsRef);
      const cert = await signTransaction(rootNamespaceDelegation(root.publicKey), [root]);
      node.topology.push({ name: 'root-namespace', cert: encodeVersionedSigned(cert).toString('base64') });
    }
    const otk = await buildOwnerToKeyMapping(kr, node, 1);
    if (otk) node.topology.push({ name: 'owner-to-key-mapping', cert: otk.toString('base64') });
    await saveNode(kr, node, { create: true });
    return node;
  } catch (e) {
    // no half-made node: drop the keys made for it (registered KMS keys stay in the KMS)
    for (const k of made.reverse()) await kr.delete(k).catch(() => undefined);
    throw e;
  }
}

/**
 * Register a pre-generated KMS key for a role: the keyring checks what the KMS says the key is (spec and
 * usage: AWS DescribeKey, PKCS#11 attributes) against the role's rule (src/canton/roles.ts) before recording it.
 */
export async function registerForRole(kr: StoreKeyring, name: string, keyId: string, role: CantonKeyRole) {
  const usage = ROLE_USAGES[role];
  // a refusal names the KMS key, what it is and what the role needs (src/keys/adopt.ts, src/canton/roles.ts)
  const info = await kr.register(name, keyId, { role, ...(usage.length ? { usage } : {}), createdBy: 'keyport node init' });
  // belt and braces: what was recorded must fit the role too
  const why = roleMismatch(role, { type: info.type, usage: 'unknown', inKms: true });
  if (why) {
    await kr.delete(name).catch(() => undefined);
    throw err('KEY_USAGE', `KMS key '${keyId}' cannot be the node's ${role} key: ${why.replace(/^the key is/, 'it is')}`);
  }
  return info;
}
