/**
 * Canton 3.x protocol-v30 messages that establish a node's identity, hand-encoded (Canton's `.proto` field
 * numbers: crypto/v30/crypto.proto, protocol/v30/topology.proto, version/v1/untyped_versioned_message.proto;
 * see docs/canton.md). Mappings keyport does not build (party hosting, synchronizer state, …) are carried as
 * their exact bytes so a decoded transaction re-encodes byte for byte.
 */
import { err } from '../../errors.js';
import { Fields, Writer } from './wire.js';

// ---- enums (numbers as on the wire) ------------------------------------------------------------

export const SignatureFormat = { UNSPECIFIED: 0, RAW: 1, DER: 2, CONCAT: 3, SYMBOLIC: 10000 } as const;
export const CryptoKeyFormat = { UNSPECIFIED: 0, DER: 2, RAW: 3, DER_X509_SPKI: 4, DER_PKCS8: 5, SYMBOLIC: 10000 } as const;
export const SigningKeySpec = { UNSPECIFIED: 0, EC_CURVE25519: 1, EC_P256: 2, EC_P384: 3, EC_SECP256K1: 4 } as const;
export const EncryptionKeySpec = { UNSPECIFIED: 0, EC_P256: 1, RSA_2048: 2 } as const;
export const SigningAlgorithmSpec = { UNSPECIFIED: 0, ED25519: 1, EC_DSA_SHA_256: 2, EC_DSA_SHA_384: 3 } as const;
export const SigningKeyUsage = {
  UNSPECIFIED: 0,
  NAMESPACE: 1,
  IDENTITY_DELEGATION: 2,
  SEQUENCER_AUTHENTICATION: 3,
  PROTOCOL: 4,
  PROOF_OF_OWNERSHIP: 5,
} as const;
export const TopologyChangeOp = { UNSPECIFIED: 0, ADD_REPLACE: 1, REMOVE: 2 } as const;
/** Enums.TopologyMappingCode (what a restricted delegation may sign; not the TopologyMapping oneof numbers) */
export const TopologyMappingCode = {
  NAMESPACE_DELEGATION: 1,
  DECENTRALIZED_NAMESPACE_DEFINITION: 3,
  OWNER_TO_KEY_MAPPING: 4,
  SYNCHRONIZER_TRUST_CERTIFICATE: 5,
  PARTICIPANT_PERMISSION: 6,
  PARTY_HOSTING_LIMITS: 7,
  VETTED_PACKAGES: 8,
  PARTY_TO_PARTICIPANT: 9,
  SYNCHRONIZER_PARAMETERS_STATE: 11,
  MEDIATOR_SYNCHRONIZER_STATE: 12,
  SEQUENCER_SYNCHRONIZER_STATE: 13,
  SEQUENCING_DYNAMIC_PARAMETERS_STATE: 17,
  PARTY_TO_KEY_MAPPING: 18,
  SYNCHRONIZER_MIGRATION_ANNOUNCEMENT: 19,
  SEQUENCER_CONNECTION_SUCCESSOR: 20,
} as const;
export type TopologyMappingCodeName = keyof typeof TopologyMappingCode;

/** TopologyMapping oneof field number → mapping code (they differ from 15 on) */
const MAPPING_FIELD_TO_CODE: Record<number, number> = {
  1: 1,
  3: 3,
  4: 4,
  5: 5,
  6: 6,
  7: 7,
  8: 8,
  9: 9,
  11: 11,
  12: 12,
  13: 13,
  15: 17,
  16: 18,
  17: 19,
  18: 20,
};

export const CANTON_PROTO_VERSION = 30;

// ---- types -------------------------------------------------------------------------------------

export interface SigningPublicKey {
  format: number;
  /** DER SubjectPublicKeyInfo for format DER_X509_SPKI */
  publicKey: Buffer;
  /** deprecated SigningKeyScheme; Canton writes 0 */
  scheme: number;
  usage: number[];
  keySpec: number;
  unknown?: Buffer;
}

export interface EncryptionPublicKey {
  format: number;
  publicKey: Buffer;
  scheme: number;
  keySpec: number;
  unknown?: Buffer;
}

export type PublicKey = { signing: SigningPublicKey; encryption?: undefined } | { encryption: EncryptionPublicKey; signing?: undefined };

export interface SignatureDelegation {
  sessionKey: Buffer;
  sessionKeySpec: number;
  /** microseconds since the Unix epoch */
  validityPeriodFromInclusive: bigint;
  validityPeriodDurationSeconds: number;
  format: number;
  signature: Buffer;
  signingAlgorithmSpec: number;
  unknown?: Buffer;
}

export interface Signature {
  format: number;
  signature: Buffer;
  /** fingerprint of the long-term key */
  signedBy: string;
  signingAlgorithmSpec: number;
  signatureDelegation?: SignatureDelegation;
  unknown?: Buffer;
}

export type DelegationRestriction =
  | { kind: 'all' }
  | { kind: 'all-but-namespace-delegations' }
  | { kind: 'specific'; mappings: number[] }
  /** no restriction set: the legacy is_root_delegation flag decides */
  | { kind: 'unset' };

export interface NamespaceDelegation {
  namespace: string;
  targetKey: SigningPublicKey;
  /** deprecated; Canton never sets it */
  isRootDelegation: boolean;
  restriction: DelegationRestriction;
  unknown?: Buffer;
}

export interface OwnerToKeyMapping {
  /** `PAR::id::namespace`, `MED::…`, `SEQ::…` */
  member: string;
  publicKeys: PublicKey[];
  unknown?: Buffer;
}

export type TopologyMapping =
  | { kind: 'namespace-delegation'; value: NamespaceDelegation }
  | { kind: 'owner-to-key-mapping'; value: OwnerToKeyMapping }
  /** any other mapping, kept as its exact bytes */
  | { kind: 'other'; field: number; code: number; bytes: Buffer };

export interface TopologyTransaction {
  operation: number;
  serial: number;
  mapping: TopologyMapping;
  unknown?: Buffer;
}

export interface MultiTransactionSignatures {
  transactionHashes: Buffer[];
  signatures: Signature[];
}

export interface SignedTopologyTransaction {
  /** the versioned TopologyTransaction bytes exactly as signed (what Canton hashes) */
  transaction: Buffer;
  signatures: Signature[];
  proposal: boolean;
  multiTransactionSignatures: MultiTransactionSignatures[];
  unknown?: Buffer;
}

// ---- UntypedVersionedMessage -------------------------------------------------------------------

export function wrapVersioned(data: Buffer, version = CANTON_PROTO_VERSION): Buffer {
  return new Writer().bytes(1, data, true).varint(2, version).finish();
}

export function unwrapVersioned(b: Buffer, what = 'versioned message'): { data: Buffer; version: number } {
  const f = new Fields(b, what);
  if (!f.has(1)) throw err('INVALID_INPUT', `not a Canton ${what}: no data field`);
  const data = f.bytes(1);
  const version = f.int32(2);
  if (f.unknown()) throw err('INVALID_INPUT', `not a Canton ${what}: unexpected fields`);
  if (version !== CANTON_PROTO_VERSION) throw err('UNSUPPORTED', `${what} has protocol version ${version}; keyport reads version 30`);
  return { data, version };
}

// ---- crypto ------------------------------------------------------------------------------------

export function encodeSigningPublicKey(k: SigningPublicKey): Buffer {
  return new Writer()
    .varint(2, k.format)
    .bytes(3, k.publicKey)
    .varint(4, k.scheme)
    .packed(5, k.usage)
    .varint(6, k.keySpec)
    .append(k.unknown)
    .finish();
}

export function decodeSigningPublicKey(b: Buffer): SigningPublicKey {
  const f = new Fields(b, 'SigningPublicKey');
  const k: SigningPublicKey = {
    format: f.int32(2),
    publicKey: f.bytes(3),
    scheme: f.int32(4),
    usage: f.repeatedInt(5),
    keySpec: f.int32(6),
  };
  const u = f.unknown();
  if (u) k.unknown = u;
  return k;
}

export function encodeEncryptionPublicKey(k: EncryptionPublicKey): Buffer {
  return new Writer().varint(2, k.format).bytes(3, k.publicKey).varint(4, k.scheme).varint(5, k.keySpec).append(k.unknown).finish();
}

export function decodeEncryptionPublicKey(b: Buffer): EncryptionPublicKey {
  const f = new Fields(b, 'EncryptionPublicKey');
  const k: EncryptionPublicKey = { format: f.int32(2), publicKey: f.bytes(3), scheme: f.int32(4), keySpec: f.int32(5) };
  const u = f.unknown();
  if (u) k.unknown = u;
  return k;
}

export function encodePublicKey(k: PublicKey): Buffer {
  const w = new Writer();
  if (k.signing) w.message(1, encodeSigningPublicKey(k.signing));
  else w.message(2, encodeEncryptionPublicKey(k.encryption!));
  return w.finish();
}

export function decodePublicKey(b: Buffer): PublicKey {
  const f = new Fields(b, 'PublicKey');
  const s = f.optBytes(1);
  const e = f.optBytes(2);
  if (f.unknown()) throw err('INVALID_INPUT', 'PublicKey has unexpected fields');
  // a oneof: the last member on the wire wins
  const last = [...f.list].reverse().find((x) => x.field === 1 || x.field === 2);
  if (!last) throw err('INVALID_INPUT', 'PublicKey carries no key');
  return last.field === 1 ? { signing: decodeSigningPublicKey(s!) } : { encryption: decodeEncryptionPublicKey(e!) };
}

export function encodeSignatureDelegation(d: SignatureDelegation): Buffer {
  return new Writer()
    .bytes(1, d.sessionKey)
    .varint(2, d.sessionKeySpec)
    .varint(3, d.validityPeriodFromInclusive)
    .varint(4, d.validityPeriodDurationSeconds)
    .varint(5, d.format)
    .bytes(6, d.signature)
    .varint(7, d.signingAlgorithmSpec)
    .append(d.unknown)
    .finish();
}

export function decodeSignatureDelegation(b: Buffer): SignatureDelegation {
  const f = new Fields(b, 'SignatureDelegation');
  const d: SignatureDelegation = {
    sessionKey: f.bytes(1),
    sessionKeySpec: f.int32(2),
    validityPeriodFromInclusive: f.int64(3),
    validityPeriodDurationSeconds: f.uint32(4),
    format: f.int32(5),
    signature: f.bytes(6),
    signingAlgorithmSpec: f.int32(7),
  };
  const u = f.unknown();
  if (u) d.unknown = u;
  return d;
}

export function encodeSignature(s: Signature): Buffer {
  return new Writer()
    .varint(1, s.format)
    .bytes(2, s.signature)
    .string(3, s.signedBy)
    .varint(4, s.signingAlgorithmSpec)
    .message(5, s.signatureDelegation ? encodeSignatureDelegation(s.signatureDelegation) : undefined)
    .append(s.unknown)
    .finish();
}

export function decodeSignature(b: Buffer): Signature {
  const f = new Fields(b, 'Signature');
  const d = f.optBytes(5);
  const s: Signature = {
    format: f.int32(1),
    signature: f.bytes(2),
    signedBy: f.string(3),
    signingAlgorithmSpec: f.int32(4),
    ...(d ? { signatureDelegation: decodeSignatureDelegation(d) } : {}),
  };
  const u = f.unknown();
  if (u) s.unknown = u;
  return s;
}

// ---- topology ----------------------------------------------------------------------------------

export function encodeNamespaceDelegation(n: NamespaceDelegation): Buffer {
  const w = new Writer().string(1, n.namespace).message(2, encodeSigningPublicKey(n.targetKey)).varint(3, n.isRootDelegation);
  const r = n.restriction;
  if (r.kind === 'all') w.message(4, Buffer.alloc(0));
  else if (r.kind === 'all-but-namespace-delegations') w.message(5, Buffer.alloc(0));
  else if (r.kind === 'specific') w.message(6, new Writer().packed(1, r.mappings).finish());
  return w.append(n.unknown).finish();
}

export function decodeNamespaceDelegation(b: Buffer): NamespaceDelegation {
  const f = new Fields(b, 'NamespaceDelegation');
  const target = f.optBytes(2);
  if (!target) throw err('INVALID_INPUT', 'NamespaceDelegation has no target key');
  const n: NamespaceDelegation = {
    namespace: f.string(1),
    targetKey: decodeSigningPublicKey(target),
    isRootDelegation: f.bool(3),
    restriction: { kind: 'unset' },
  };
  const all = f.optBytes(4);
  const allBut = f.optBytes(5);
  const specific = f.optBytes(6);
  const last = [...f.list].reverse().find((x) => x.field >= 4 && x.field <= 6);
  if (last?.field === 4 && all) n.restriction = { kind: 'all' };
  else if (last?.field === 5 && allBut) n.restriction = { kind: 'all-but-namespace-delegations' };
  else if (last?.field === 6 && specific)
    n.restriction = { kind: 'specific', mappings: new Fields(specific, 'CanSignSpecificMappings').repeatedInt(1) };
  const u = f.unknown();
  if (u) n.unknown = u;
  return n;
}

export function encodeOwnerToKeyMapping(m: OwnerToKeyMapping): Buffer {
  const w = new Writer().string(1, m.member);
  for (const k of m.publicKeys) w.message(2, encodePublicKey(k));
  return w.append(m.unknown).finish();
}

export function decodeOwnerToKeyMapping(b: Buffer): OwnerToKeyMapping {
  const f = new Fields(b, 'OwnerToKeyMapping');
  const m: OwnerToKeyMapping = { member: f.string(1), publicKeys: f.repeatedBytes(2).map(decodePublicKey) };
  const u = f.unknown();
  if (u) m.unknown = u;
  return m;
}

export function mappingCode(m: TopologyMapping): number {
  if (m.kind === 'namespace-delegation') return TopologyMappingCode.NAMESPACE_DELEGATION;
  if (m.kind === 'owner-to-key-mapping') return TopologyMappingCode.OWNER_TO_KEY_MAPPING;
  return m.code;
}

export function encodeTopologyMapping(m: TopologyMapping): Buffer {
  const w = new Writer();
  if (m.kind === 'namespace-delegation') w.message(1, encodeNamespaceDelegation(m.value));
  else if (m.kind === 'owner-to-key-mapping') w.message(4, encodeOwnerToKeyMapping(m.value));
  else w.message(m.field, m.bytes);
  return w.finish();
}

export function decodeTopologyMapping(b: Buffer): TopologyMapping {
  const f = new Fields(b, 'TopologyMapping');
  if (f.list.length !== 1) throw err('INVALID_INPUT', `TopologyMapping must carry exactly one mapping (has ${f.list.length} fields)`);
  const only = f.list[0]!;
  if (only.wt !== 2) throw err('INVALID_INPUT', 'TopologyMapping field is not a message');
  const code = MAPPING_FIELD_TO_CODE[only.field];
  if (code === undefined) throw err('INVALID_INPUT', `TopologyMapping has unknown mapping field ${only.field}`);
  if (only.field === 1) return { kind: 'namespace-delegation', value: decodeNamespaceDelegation(Buffer.from(only.data!)) };
  if (only.field === 4) return { kind: 'owner-to-key-mapping', value: decodeOwnerToKeyMapping(Buffer.from(only.data!)) };
  return { kind: 'other', field: only.field, code, bytes: Buffer.from(only.data!) };
}

export function encodeTopologyTransaction(t: TopologyTransaction): Buffer {
  return new Writer().varint(1, t.operation).varint(2, t.serial).message(3, encodeTopologyMapping(t.mapping)).append(t.unknown).finish();
}

export function decodeTopologyTransaction(b: Buffer): TopologyTransaction {
  const f = new Fields(b, 'TopologyTransaction');
  const mapping = f.optBytes(3);
  if (!mapping) throw err('INVALID_INPUT', 'TopologyTransaction has no mapping');
  const t: TopologyTransaction = { operation: f.int32(1), serial: f.uint32(2), mapping: decodeTopologyMapping(mapping) };
  // Canton's parse-time rules (TopologyTransaction.scala: parsePositiveInt("serial"), parseEnum(operation))
  if (t.serial < 1 || t.serial > 0x7fffffff) throw err('INVALID_INPUT', `TopologyTransaction serial ${t.serial} is not a positive int`);
  if (t.operation !== TopologyChangeOp.ADD_REPLACE && t.operation !== TopologyChangeOp.REMOVE)
    throw err('INVALID_INPUT', `TopologyTransaction operation ${t.operation} is not ADD_REPLACE or REMOVE`);
  const u = f.unknown();
  if (u) t.unknown = u;
  return t;
}

export function encodeSignedTopologyTransaction(s: SignedTopologyTransaction): Buffer {
  const w = new Writer().bytes(1, s.transaction);
  for (const sig of s.signatures) w.message(2, encodeSignature(sig));
  w.varint(3, s.proposal);
  for (const m of s.multiTransactionSignatures) {
    const mw = new Writer();
    for (const h of m.transactionHashes) mw.bytes(1, h, true);
    for (const sig of m.signatures) mw.message(2, encodeSignature(sig));
    w.message(4, mw.finish());
  }
  return w.append(s.unknown).finish();
}

export function decodeSignedTopologyTransaction(b: Buffer): SignedTopologyTransaction {
  const f = new Fields(b, 'SignedTopologyTransaction');
  const s: SignedTopologyTransaction = {
    transaction: f.bytes(1),
    signatures: f.repeatedBytes(2).map(decodeSignature),
    proposal: f.bool(3),
    multiTransactionSignatures: f.repeatedBytes(4).map((m) => {
      const mf = new Fields(m, 'MultiTransactionSignatures');
      const out = { transactionHashes: mf.repeatedBytes(1), signatures: mf.repeatedBytes(2).map(decodeSignature) };
      if (mf.unknown()) throw err('INVALID_INPUT', 'MultiTransactionSignatures has unexpected fields');
      return out;
    }),
  };
  const u = f.unknown();
  if (u) s.unknown = u;
  return s;
}

/** the versioned bytes of a whole signed transaction (a `.cert` file, a collection element) */
export function encodeVersionedSigned(s: SignedTopologyTransaction): Buffer {
  return wrapVersioned(encodeSignedTopologyTransaction(s));
}

export function decodeVersionedSigned(b: Buffer): SignedTopologyTransaction {
  return decodeSignedTopologyTransaction(unwrapVersioned(b, 'SignedTopologyTransaction').data);
}

/** the inner TopologyTransaction of a signed one (its field 1 is itself versioned) */
export function innerTransaction(s: SignedTopologyTransaction): TopologyTransaction {
  return decodeTopologyTransaction(unwrapVersioned(s.transaction, 'TopologyTransaction').data);
}

// ---- collections and snapshots -----------------------------------------------------------------

/** `SignedTopologyTransactions` (load_multiple_from_file): versioned, each element a versioned STT */
export function encodeSignedCollection(txs: SignedTopologyTransaction[]): Buffer {
  const w = new Writer();
  for (const t of txs) w.bytes(1, encodeVersionedSigned(t), true);
  return wrapVersioned(w.finish());
}

export function decodeSignedCollection(b: Buffer): SignedTopologyTransaction[] {
  const f = new Fields(unwrapVersioned(b, 'SignedTopologyTransactions').data, 'SignedTopologyTransactions');
  const out = f.repeatedBytes(1).map(decodeVersionedSigned);
  if (f.unknown()) throw err('INVALID_INPUT', 'SignedTopologyTransactions has unexpected fields');
  return out;
}

export interface SnapshotItem {
  /** Timestamp messages kept as bytes */
  validFrom?: Buffer;
  validUntil?: Buffer;
  sequenced?: Buffer;
  rejectionReason?: string;
  /** versioned STT bytes */
  transaction: Buffer;
  unknown?: Buffer;
}

function decodeItem(b: Buffer): SnapshotItem {
  const f = new Fields(b, 'TopologyTransactions.Item');
  const vf = f.optBytes(1);
  const vu = f.optBytes(2);
  const sq = f.optBytes(4);
  const rr = f.has(5) ? f.string(5) : undefined;
  const it: SnapshotItem = {
    transaction: f.bytes(3),
    ...(vf ? { validFrom: vf } : {}),
    ...(vu ? { validUntil: vu } : {}),
    ...(sq ? { sequenced: sq } : {}),
    ...(rr !== undefined ? { rejectionReason: rr } : {}),
  };
  const u = f.unknown();
  if (u) it.unknown = u;
  return it;
}

export function encodeItem(it: SnapshotItem): Buffer {
  const w = new Writer().message(1, it.validFrom).message(2, it.validUntil).bytes(3, it.transaction).message(4, it.sequenced);
  if (it.rejectionReason !== undefined) w.string(5, it.rejectionReason, true);
  return w.append(it.unknown).finish();
}

/**
 * A topology snapshot in either form Canton exports: a versioned admin `TopologyTransactions`
 * (export_topology_snapshot, 3.4) or a stream of length-delimited versioned Items (export V2, 3.5+).
 */
export function decodeSnapshot(b: Buffer): { form: 'collection' | 'stream'; items: SnapshotItem[] } {
  try {
    const { data } = unwrapVersioned(b, 'TopologyTransactions');
    const f = new Fields(data, 'TopologyTransactions');
    const items = f.repeatedBytes(1).map(decodeItem);
    if (!f.unknown() && items.length) return { form: 'collection', items };
  } catch {
    // not the collection form: try the delimited stream
  }
  const items: SnapshotItem[] = [];
  let o = 0;
  while (o < b.length) {
    let len = 0;
    let shift = 0;
    for (;;) {
      if (o >= b.length || shift > 28) throw err('INVALID_INPUT', 'not a Canton topology snapshot: bad length prefix');
      const byte = b[o++]!;
      len |= (byte & 0x7f) << shift;
      if (!(byte & 0x80)) break;
      shift += 7;
    }
    if (o + len > b.length) throw err('INVALID_INPUT', 'not a Canton topology snapshot: truncated item');
    items.push(decodeItem(unwrapVersioned(b.subarray(o, o + len), 'TopologyTransactions.Item').data));
    o += len;
  }
  return { form: 'stream', items };
}

export function encodeSnapshot(form: 'collection' | 'stream', items: SnapshotItem[]): Buffer {
  if (form === 'collection') {
    const w = new Writer();
    for (const it of items) w.message(1, encodeItem(it));
    return wrapVersioned(w.finish());
  }
  const parts: Buffer[] = [];
  for (const it of items) {
    const v = wrapVersioned(encodeItem(it));
    const len: number[] = [];
    let n = v.length;
    while (n >= 0x80) {
      len.push((n & 0x7f) | 0x80);
      n >>>= 7;
    }
    len.push(n);
    parts.push(Buffer.from(len), v);
  }
  return Buffer.concat(parts);
}
