/**
 * Independent checks of Canton topology files for the tests: the peer decoder (Google's protobuf runtime with
 * an independently typed schema, test/canton/peer) and openssl verifying every signature over the 34-byte hash.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serviceEnv } from './testbed.js';

export interface PeerTx {
  source: string;
  kind: string;
  operation: number;
  serial: number;
  hash: string;
  reencodes: boolean;
  proposal: boolean;
  namespace?: string;
  target?: string;
  restriction?: string;
  mappings?: number[];
  is_root_delegation?: boolean;
  member?: string;
  mapped?: { fingerprint: string; kind: string; spec: number; usage?: number[] }[];
  keys: Record<string, { spki: string; spec: number; usage: number[] }>;
  signatures: { signed_by: string; format: number; algorithm: number; has_delegation: boolean; sig_file: string; hash_file: string }[];
}

/** openssl pkeyutl -verify -rawin over `data` (ECDSA: with the digest; Ed25519: none) */
export function opensslVerify(spki: Buffer, data: Buffer, sig: Buffer, digest: 'sha256' | 'sha384' | null): boolean {
  const d = mkdtempSync(join(tmpdir(), 'keyport-ossl-'));
  try {
    writeFileSync(join(d, 'k.der'), spki);
    writeFileSync(join(d, 'in'), data);
    writeFileSync(join(d, 'sig'), sig);
    const args = [
      'pkeyutl',
      '-verify',
      '-rawin',
      ...(digest ? ['-digest', digest] : []),
      '-pubin',
      '-inkey',
      join(d, 'k.der'),
      '-keyform',
      'DER',
    ];
    const r = spawnSync('openssl', [...args, '-sigfile', join(d, 'sig'), '-in', join(d, 'in')], { encoding: 'utf8' });
    if (r.status !== 0 && !/Signature Verification Failure/i.test(r.stdout + r.stderr)) throw new Error(`openssl: ${r.stderr}`);
    return r.status === 0;
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
}

const DIGEST: Record<number, 'sha256' | 'sha384' | null> = { 1: null, 2: 'sha256', 3: 'sha384' };

/** decode files with the peer (service `canton-peer` must be available) */
export function peerDecode(files: string[], extraKeys: Record<string, string> = {}): PeerTx[] {
  const env = serviceEnv('canton-peer');
  const out = mkdtempSync(join(tmpdir(), 'keyport-peer-'));
  const r = spawnSync(env['CANTON_PEER_PYTHON']!, [env['CANTON_PEER_SCRIPT']!, out, ...files], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const txs = JSON.parse(r.stdout) as PeerTx[];
  // every signature, checked by openssl against the key its signed_by names (keys from the set, or given)
  const keys: Record<string, string> = { ...extraKeys };
  for (const t of txs) for (const [fp, k] of Object.entries(t.keys)) keys[fp] = k.spki;
  for (const t of txs) {
    assert.ok(t.reencodes, `${t.source}: Google's encoder writes the same bytes`);
    assert.ok(t.signatures.length > 0, `${t.source}: signed`);
    for (const s of t.signatures) {
      assert.ok(!s.has_delegation);
      const spki = keys[s.signed_by];
      assert.ok(spki, `${t.source}: signer ${s.signed_by} is a key of the set`);
      assert.equal(s.format, s.algorithm === 1 ? 3 : 2, `${t.source}: DER for ECDSA, CONCAT for Ed25519`);
      assert.ok(
        opensslVerify(Buffer.from(spki, 'hex'), readFileSync(s.hash_file), readFileSync(s.sig_file), DIGEST[s.algorithm]!),
        `${t.source}: openssl verifies the signature by ${s.signed_by}`,
      );
    }
  }
  rmSync(out, { recursive: true, force: true });
  return txs;
}
