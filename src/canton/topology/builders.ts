/**
 * Building and signing the topology transactions of a node's identity, the way Canton's own scripts and
 * console build them: root NamespaceDelegation (self-signed, can sign all mappings), delegations to other keys
 * (restricted or not) and their revocation, OwnerToKeyMapping of the node's signing and encryption keys
 * (signed by the namespace and by every new signing key: proof of ownership).
 */
import { err } from '../../errors.js';
import type { KeyType } from '../../crypto/keytypes.js';
import { keyTypeOfSpki, cantonUsages, encryptionPublicKey, signingPublicKey } from './keys.js';
import { keyFingerprint, transactionHash } from './hash.js';
import {
  type DelegationRestriction,
  encodeTopologyTransaction,
  type PublicKey,
  type SignedTopologyTransaction,
  SigningKeyUsage,
  TopologyChangeOp,
  TopologyMappingCode,
  type TopologyMappingCodeName,
  type TopologyTransaction,
  wrapVersioned,
} from './messages.js';
import { signHash, type TopologySigner } from './signer.js';

/** Canton member codes of an OwnerToKeyMapping */
export const MEMBER_CODE = { participant: 'PAR', mediator: 'MED', sequencer: 'SEQ' } as const;

const IDENTIFIER = /^[A-Za-z0-9_.-]{1,185}$/;

export function checkIdentifier(id: string): void {
  if (!IDENTIFIER.test(id) || id.includes('::'))
    throw err('USAGE', `'${id}' is not a Canton identifier: letters, digits, '_', '-', '.' (no '::')`);
}

/** `NAME::NAMESPACE` */
export function uniqueIdentifier(name: string, namespace: string): string {
  checkIdentifier(name);
  return `${name}::${namespace}`;
}

/** `PAR::NAME::NAMESPACE` etc. */
export function memberId(kind: keyof typeof MEMBER_CODE, name: string, namespace: string): string {
  return `${MEMBER_CODE[kind]}::${uniqueIdentifier(name, namespace)}`;
}

/** parse `all`, `all-but-namespace-delegations`, `mappings=A,B` (mapping code names, any case, with or without dashes) */
export function parseRestriction(s: string): DelegationRestriction {
  if (s === 'all') return { kind: 'all' };
  if (s === 'all-but-namespace-delegations') return { kind: 'all-but-namespace-delegations' };
  const m = /^mappings=(.+)$/.exec(s);
  if (m) {
    const mappings = m[1]!.split(',').map((x) => {
      const name = x.trim().toUpperCase().replace(/-/g, '_') as TopologyMappingCodeName;
      const code = TopologyMappingCode[name];
      if (code === undefined)
        throw err(
          'USAGE',
          `unknown topology mapping '${x}': use ${Object.keys(TopologyMappingCode).join(', ').toLowerCase().replace(/_/g, '-')}`,
        );
      return code;
    });
    return { kind: 'specific', mappings: [...new Set(mappings)] };
  }
  throw err('USAGE', `unknown restriction '${s}': use all, all-but-namespace-delegations or mappings=NAME,…`);
}

export function describeRestriction(r: DelegationRestriction): string {
  if (r.kind === 'specific') {
    const names = Object.fromEntries(Object.entries(TopologyMappingCode).map(([k, v]) => [v, k.toLowerCase().replace(/_/g, '-')]));
    return `mappings=${r.mappings.map((c) => names[c] ?? String(c)).join(',')}`;
  }
  return r.kind;
}

export interface DelegationInput {
  /** namespace fingerprint (the root key's fingerprint) */
  namespace: string;
  /** SPKI DER of the key receiving authority */
  targetKey: Buffer;
  restriction?: DelegationRestriction;
  serial?: number;
  revoke?: boolean;
}

/** a NamespaceDelegation transaction (root when target = namespace) */
export function namespaceDelegation(d: DelegationInput): TopologyTransaction {
  const type = keyTypeOfSpki(d.targetKey);
  const isRoot = keyFingerprint(d.targetKey) === d.namespace;
  const restriction = d.restriction ?? (isRoot ? { kind: 'all' } : { kind: 'all-but-namespace-delegations' });
  if (
    isRoot &&
    restriction.kind !== 'all' &&
    !(restriction.kind === 'specific' && restriction.mappings.includes(TopologyMappingCode.NAMESPACE_DELEGATION))
  )
    throw err('USAGE', 'a root delegation must be able to sign namespace delegations: use --restriction all');
  return {
    operation: d.revoke ? TopologyChangeOp.REMOVE : TopologyChangeOp.ADD_REPLACE,
    serial: d.serial ?? 1,
    mapping: {
      kind: 'namespace-delegation',
      value: {
        namespace: d.namespace,
        targetKey: signingPublicKey(d.targetKey, type, [SigningKeyUsage.NAMESPACE]),
        isRootDelegation: false,
        restriction,
      },
    },
  };
}

export function rootNamespaceDelegation(rootKey: Buffer): TopologyTransaction {
  return namespaceDelegation({ namespace: keyFingerprint(rootKey), targetKey: rootKey, restriction: { kind: 'all' } });
}

export interface OwnedKey {
  /** SPKI DER */
  spki: Buffer;
  /** signing keys: their Canton usages; encryption keys: 'encryption' */
  role: 'encryption' | ('sequencer-auth' | 'protocol')[];
  type?: KeyType;
}

export function ownerToKeyMapping(member: string, keys: OwnedKey[], serial = 1): TopologyTransaction {
  if (!/^(PAR|MED|SEQ)::[^:]+::1220[0-9a-f]{64}$/.test(member))
    throw err('USAGE', `'${member}' is not a Canton member id (PAR|MED|SEQ::name::namespace)`);
  if (keys.length === 0 || keys.length > 20) throw err('USAGE', 'an OwnerToKeyMapping carries 1 to 20 keys');
  const publicKeys: PublicKey[] = keys.map((k) => {
    const type = k.type ?? keyTypeOfSpki(k.spki);
    return k.role === 'encryption'
      ? { encryption: encryptionPublicKey(k.spki, type) }
      : { signing: signingPublicKey(k.spki, type, cantonUsages(k.role)) };
  });
  const ids = keys.map((k) => keyFingerprint(k.spki));
  if (new Set(ids).size !== ids.length) throw err('USAGE', 'an OwnerToKeyMapping must not list one key twice');
  return { operation: TopologyChangeOp.ADD_REPLACE, serial, mapping: { kind: 'owner-to-key-mapping', value: { member, publicKeys } } };
}

/** the versioned bytes Canton hashes and carries in SignedTopologyTransaction.transaction (a `.prep` file) */
export function versionedTransaction(tx: TopologyTransaction): Buffer {
  return wrapVersioned(encodeTopologyTransaction(tx));
}

/** sign a transaction (or add signatures to a signed one) */
export async function signTransaction(
  tx: TopologyTransaction | SignedTopologyTransaction,
  signers: TopologySigner[],
): Promise<SignedTopologyTransaction> {
  const signed: SignedTopologyTransaction =
    'transaction' in tx && Buffer.isBuffer(tx.transaction)
      ? { ...tx, signatures: [...tx.signatures] }
      : { transaction: versionedTransaction(tx as TopologyTransaction), signatures: [], proposal: false, multiTransactionSignatures: [] };
  const hash = transactionHash(signed.transaction);
  for (const s of signers) {
    if (signed.signatures.some((x) => x.signedBy === s.fingerprint)) continue;
    signed.signatures.push(await signHash(s, hash));
  }
  return signed;
}
