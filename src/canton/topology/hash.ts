/**
 * Canton's hashes: a multihash `0x12 0x20 ‖ SHA-256(int32BE(purpose) ‖ data)`.
 * - transaction hash: purpose 11 (TopologyTransactionSignature) over the versioned TopologyTransaction bytes;
 *   signatures are made over these 34 bytes (ECDSA hashes them again with SHA-256/384, Ed25519 signs them);
 * - key fingerprint: purpose 12 over the SPKI DER (EC keys) or the raw 32 bytes (Ed25519); rendered as hex;
 * - multi-transaction hash: purpose 55 over the sorted, length-prefixed transaction hashes;
 * - decentralized namespace: purpose 37 over the sorted, length-prefixed owner namespaces.
 */
import { createHash } from 'node:crypto';
import { cantonFingerprint } from '../../crypto/fingerprint.js';

export const HashPurpose = {
  TopologyTransactionSignature: 11,
  PublicKeyFingerprint: 12,
  DecentralizedNamespaceNamespace: 37,
  MultiTopologyTransaction: 55,
} as const;

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

/** 34-byte multihash (SHA-256) */
export function cantonHash(purpose: number, ...parts: Buffer[]): Buffer {
  const h = createHash('sha256').update(int32(purpose));
  for (const p of parts) h.update(p);
  return Buffer.concat([Buffer.from([0x12, 0x20]), h.digest()]);
}

/** the hash a topology transaction's signatures sign: over the versioned TopologyTransaction bytes */
export function transactionHash(versionedTx: Buffer): Buffer {
  return cantonHash(HashPurpose.TopologyTransactionSignature, versionedTx);
}

/** Canton's fingerprint of a public key (SPKI DER; Ed25519 by its raw 32 bytes) */
export function keyFingerprint(spki: Buffer): string {
  return cantonFingerprint(spki);
}

/** HashBuilder.add: length-prefixed bytes */
function lengthPrefixed(b: Buffer): Buffer {
  return Buffer.concat([int32(b.length), b]);
}

/** combined hash a multi-transaction signature signs (hashes de-duplicated, sorted by hex) */
export function multiTransactionHash(hashes: Buffer[]): Buffer {
  const uniq = [...new Map(hashes.map((h) => [h.toString('hex'), h])).entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return cantonHash(HashPurpose.MultiTopologyTransaction, int32(uniq.length), ...uniq.map(([, h]) => lengthPrefixed(h)));
}

/** the namespace of a decentralized namespace definition */
export function decentralizedNamespace(owners: string[]): string {
  const sorted = [...new Set(owners)].sort();
  return cantonHash(HashPurpose.DecentralizedNamespaceNamespace, ...sorted.map((o) => lengthPrefixed(Buffer.from(o, 'utf8')))).toString(
    'hex',
  );
}
