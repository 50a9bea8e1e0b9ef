/**
 * Session signing keys (issue 12 item 7): an external P-256 key in AWS KMS (moto) authorises short-lived
 * in-memory Ed25519 keys, Canton's way (Signature.signature_delegation). Checked outside keyport: the
 * delegation hash is recomputed by an independent Python implementation of Canton's HashBuilder rules, both
 * levels are verified with the openssl CLI, and the Signature survives Canton's wire format.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { skipUnless, serviceEnv } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';
import { openKeyring } from '../../src/keys/open.js';
import type { StoreKeyring } from '../../src/keys/keyring.js';
import { keyringSigner, softwareSigner, type TopologySigner } from '../../src/canton/topology/signer.js';
import { decodeSignature, encodeSignature } from '../../src/canton/topology/messages.js';
import { cantonHash } from '../../src/canton/topology/hash.js';
import { SessionSigner, delegationHash, verifySessionSignature } from '../../src/canton/session.js';
import { driverSigner } from '../../src/canton/topology/signer.js';
import { isHighS } from '../../src/crypto/ecdsa-encoding.js';
import { KmsAddress } from '../../src/kms/address.js';
import { openInstrumentedDriver } from '../../src/kms/instrument.js';

const SYNC = 'synchronizer1::1220b3f0c1f8bd1b59bbe3d1c3e5bd4e73f41e97ac0f8b24e2a9cbf2b9a1c6aa7e31';
const pem = (spki: Buffer) => createPublicKey({ key: spki, format: 'der', type: 'spki' }).export({ format: 'pem', type: 'spki' }) as string;
const msgHash = (i: number) => cantonHash(11, Buffer.from(`message ${i}`));

/** Canton's SignatureDelegation.generateHash written again in Python, from Canton's HashBuilder rules */
const PY = String.raw`
import hashlib, struct, sys
fp, spec, frm, dur, sync = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
def lp(b): return struct.pack('>i', len(b)) + b
usages = sorted([4, 5])  # PROTOCOL, PROOF_OF_OWNERSHIP
u = struct.pack('>i', len(usages)) + b''.join(struct.pack('>i', x) for x in usages)
body = struct.pack('>i', 56) + lp(fp.encode()) + struct.pack('>i', spec) + struct.pack('>i', 4) + lp(u) + lp(struct.pack('>qq', frm, dur)) + lp(sync.encode())
sys.stdout.write('1220' + hashlib.sha256(body).hexdigest())
`;

function openssl(args: string[], cwd: string) {
  return spawnSync('openssl', args, { cwd, encoding: 'utf8' });
}

describe('session signing keys over an AWS KMS key (moto)', { skip: skipUnless('moto') }, () => {
  const env = serviceEnv('moto');
  const dir = tempDir();
  const kms = `awskms:region=${env['MOTO_REGION']};endpoint=${env['MOTO_ENDPOINT']};access-key-id=${env['MOTO_ACCESS_KEY_ID']};secret-access-key=${env['MOTO_SECRET_ACCESS_KEY']}`;
  let kr: StoreKeyring;
  let longTerm: TopologySigner;
  let kmsSigns = 0;
  const name = `session-lt-${randomBytes(3).toString('hex')}`;

  before(async () => {
    process.env.KEYPORT_HOME = join(dir, 'home');
    kr = (await openKeyring(kms)) as StoreKeyring;
    await kr.create(name, { type: 'ec-p256', usage: ['protocol'] });
    const s = await keyringSigner(kr, name, { usage: 'protocol' });
    longTerm = { ...s, sign: (d) => (kmsSigns++, s.sign(d)) };
  });
  after(async () => {
    await kr?.delete(name).catch(() => undefined);
    await kr?.close();
  });

  test('1000 signatures, 32 in flight: one KMS signature; every one verifies by the chain; both levels with openssl', async () => {
    const signer = new SessionSigner({ longTerm, synchronizerId: SYNC });
    kmsSigns = 0;
    const sigs = new Array(1000);
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        for (let i = next++; i < 1000; i = next++) sigs[i] = await signer.sign(msgHash(i));
      }),
    );
    assert.equal(kmsSigns, 1, 'one KMS call authorises the session key');
    assert.ok(kmsSigns <= 10, '<= 10 KMS calls per 1000 signatures');
    assert.equal(signer.stats.sessionKeys, 1);
    const now = Date.now();
    for (let i = 0; i < 1000; i++) {
      // through Canton's wire format and back
      const s = decodeSignature(encodeSignature(sigs[i]));
      assert.equal(verifySessionSignature(longTerm.publicKey, msgHash(i), s, { synchronizerId: SYNC, atMs: now }), null, `signature ${i}`);
      // low-S like every keyport ECDSA signature (about half of 1000 raw OpenSSL signatures are high-S)
      assert.ok(!isHighS('ec-p256', sigs[i].signature, 'der'), `session signature ${i} is high-S`);
    }
    const s = sigs[7];
    const d = s.signatureDelegation!;
    assert.equal(s.signedBy, longTerm.fingerprint);
    assert.equal(d.sessionKeySpec, 2); // EC_P256, keyport's default (Canton's is Ed25519, checked below)
    assert.equal(d.validityPeriodDurationSeconds, 300);
    // a signature by another message does not verify, nor under another synchronizer
    assert.match(verifySessionSignature(longTerm.publicKey, msgHash(8), s, { synchronizerId: SYNC, atMs: now })!, /did not make/);
    assert.match(
      verifySessionSignature(longTerm.publicKey, msgHash(7), s, { synchronizerId: `${SYNC}x`, atMs: now })!,
      /not signed by long-term key/,
    );

    // the delegation hash, recomputed independently in Python
    const py = spawnSync(
      'python3',
      [
        '-c',
        PY,
        (await import('../../src/canton/topology/hash.js')).keyFingerprint(d.sessionKey),
        String(d.sessionKeySpec),
        String(d.validityPeriodFromInclusive),
        String(d.validityPeriodDurationSeconds),
        SYNC,
      ],
      { encoding: 'utf8' },
    );
    assert.equal(py.status, 0, py.stderr);
    const dh = delegationHash(SYNC, d.sessionKey, d.sessionKeySpec, d.validityPeriodFromInclusive, d.validityPeriodDurationSeconds);
    assert.equal(dh.toString('hex'), py.stdout.trim());

    // level 1: the KMS key signed the delegation hash (ECDSA-SHA256 over the 34 bytes, as Canton)
    writeFileSync(join(dir, 'lt.pem'), pem(longTerm.publicKey));
    writeFileSync(join(dir, 'dh.bin'), dh);
    writeFileSync(join(dir, 'dsig.der'), d.signature);
    let o = openssl(['dgst', '-sha256', '-verify', 'lt.pem', '-signature', 'dsig.der', 'dh.bin'], dir);
    assert.match(o.stdout, /Verified OK/, o.stderr);
    // level 2: the session key (P-256) signed the message hash
    writeFileSync(join(dir, 'sk.pem'), pem(d.sessionKey));
    writeFileSync(join(dir, 'h.bin'), msgHash(7));
    writeFileSync(join(dir, 's.sig'), s.signature);
    o = openssl(['dgst', '-sha256', '-verify', 'sk.pem', '-signature', 's.sig', 'h.bin'], dir);
    assert.match(o.stdout, /Verified OK/, o.stderr);
    // Canton's default session key, Ed25519: the same chain, level 2 checked with openssl's Ed25519
    const ed = new SessionSigner({ longTerm, synchronizerId: SYNC, sessionKeySpec: 'ed25519' });
    const es = await ed.sign(msgHash(9));
    assert.equal(es.signatureDelegation!.sessionKeySpec, 1); // EC_CURVE25519
    assert.equal(verifySessionSignature(longTerm.publicKey, msgHash(9), es, { synchronizerId: SYNC, atMs: Date.now() }), null);
    writeFileSync(join(dir, 'ek.pem'), pem(es.signatureDelegation!.sessionKey));
    writeFileSync(join(dir, 'h9.bin'), msgHash(9));
    writeFileSync(join(dir, 'e.sig'), es.signature);
    o = openssl(['pkeyutl', '-verify', '-pubin', '-inkey', 'ek.pem', '-rawin', '-in', 'h9.bin', '-sigfile', 'e.sig'], dir);
    assert.match(o.stdout, /Signature Verified Successfully/, o.stderr);
    ed.close();
    // and the session key is not the KMS key: openssl refuses the message signature under the long-term key
    o = openssl(['dgst', '-sha256', '-verify', 'lt.pem', '-signature', 's.sig', 'h.bin'], dir);
    assert.doesNotMatch(o.stdout, /Verified OK/);
    signer.close();
    await assert.rejects(signer.sign(msgHash(1)), /closed/);
  });

  test('a KMS key addressed directly (the offline root) signs low-S, and each signature verifies with openssl', async () => {
    // the KMS returns either twin of an ECDSA signature; over 24 signatures per curve a missing
    // normalisation shows with probability 1 - 2^-24
    const driver = await openInstrumentedDriver(KmsAddress.parse(kms, { what: 'test KMS' }).withoutKey());
    try {
      for (const [spec, type, digest] of [
        ['ec-p256', 'ec-p256', 'sha256'],
        ['ec-p384', 'ec-p384', 'sha384'],
      ] as const) {
        const keyId = await driver.generateSigningKeyPair(spec);
        const signer = await driverSigner(driver, keyId);
        assert.equal(signer.keySpec, type);
        writeFileSync(join(dir, 'root.pem'), pem(signer.publicKey));
        for (let i = 0; i < 24; i++) {
          const sig = await signer.sign(msgHash(i));
          assert.ok(!isHighS(type, sig, 'der'), `${type} signature ${i} is high-S`);
          if (i < 2) {
            writeFileSync(join(dir, 'r.bin'), msgHash(i));
            writeFileSync(join(dir, 'r.sig'), sig);
            const o = openssl(['dgst', `-${digest}`, '-verify', 'root.pem', '-signature', 'r.sig', 'r.bin'], dir);
            assert.match(o.stdout, /Verified OK/, o.stderr);
          }
        }
        await driver.deleteKey(keyId);
      }
    } finally {
      await driver.close?.();
    }
  });
});

describe('session key expiry', () => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const longTerm = softwareSigner(privateKey);

  test('an expired session is refused by the verifier; the signer never signs with an expired key', async () => {
    let clock = Date.parse('2026-12-03T10:00:00Z');
    const signer = new SessionSigner({ longTerm, synchronizerId: SYNC, validitySeconds: 60, cutOffSeconds: 10, now: () => clock });
    const h = msgHash(1);
    const s1 = await signer.sign(h);
    assert.equal(verifySessionSignature(longTerm.publicKey, h, s1, { synchronizerId: SYNC, atMs: clock }), null);
    // 61 s later the delegation no longer covers the time: refused as expired
    assert.match(verifySessionSignature(longTerm.publicKey, h, s1, { synchronizerId: SYNC, atMs: clock + 61_000 })!, /expired/);
    // and before its window it is not valid either
    assert.match(verifySessionSignature(longTerm.publicKey, h, s1, { synchronizerId: SYNC, atMs: clock - 3_600_000 })!, /not yet valid/);
    // inside the cut-off the signer already makes a new key; the old one is not used again
    clock += 50_000;
    const s2 = await signer.sign(h);
    assert.notDeepEqual(s2.signatureDelegation!.sessionKey, s1.signatureDelegation!.sessionKey);
    assert.equal(signer.stats.sessionKeys, 2);
    assert.equal(signer.stats.longTermSignatures, 2);
    assert.equal(verifySessionSignature(longTerm.publicKey, h, s2, { synchronizerId: SYNC, atMs: clock }), null);
    // a delegation stretched after signing (longer validity) no longer verifies
    const forged = { ...s1, signatureDelegation: { ...s1.signatureDelegation!, validityPeriodDurationSeconds: 3600 } };
    assert.match(
      verifySessionSignature(longTerm.publicKey, h, forged, { synchronizerId: SYNC, atMs: clock })!,
      /not signed by long-term key/,
    );
    // a signature with no delegation is not a session signature
    assert.match(
      verifySessionSignature(longTerm.publicKey, h, { ...s1, signatureDelegation: undefined }, { synchronizerId: SYNC, atMs: clock })!,
      /no session-key delegation/,
    );
    // the digest check: the message hash is Canton's 34-byte multihash
    assert.equal(h.subarray(0, 2).toString('hex'), '1220');
    assert.equal(h.length, 34);
  });

  test('bad options are refused with one clear error', () => {
    assert.throws(() => new SessionSigner({ longTerm, synchronizerId: SYNC, validitySeconds: 10, cutOffSeconds: 30 }), /cut-off/);
    assert.throws(() => new SessionSigner({ longTerm, synchronizerId: '' }), /synchronizer id/);
  });
});
