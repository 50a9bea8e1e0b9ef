/**
 * Canton topology transactions: Canton-made known-answer data (snapshots from Canton's repository, Canton key
 * files) decoded, re-encoded byte for byte, every hash, fingerprint and signature recomputed; and keyport-made
 * transactions (root delegation, owner-to-key mapping, delegation to another key, revocation) decoded by a second
 * implementation (Google's protobuf runtime with an independently typed schema) and their signatures verified by
 * openssl over the hash as Canton defines it.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createHash, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import * as T from '../../src/canton/topology/index.js';
import { openKeyring } from '../../src/keys/open.js';
import { isHighS } from '../../src/crypto/ecdsa-encoding.js';
import { tempDir } from '../support/tmp.js';
import { skipUnless } from '../support/testbed.js';
import { opensslVerify, peerDecode } from '../support/canton.js';

const katDir = join(import.meta.dirname, '..', 'vectors', 'canton');
const dir = tempDir();

function kat(name: string): Buffer {
  return readFileSync(join(katDir, name));
}

function katItems(name: string) {
  const b = kat(name);
  const snap = T.decodeSnapshot(b);
  return { b, snap, input: snap.items.map((it, i) => ({ source: `${name}#${i}`, signed: T.decodeVersionedSigned(it.transaction) })) };
}

describe('Canton known-answer data', () => {
  for (const [name, form, count] of [
    ['topology-snapshot-duplicate-signatures.3.4', 'collection', 12],
    ['topology-snapshot-duplicate-signatures.main', 'stream', 8],
  ] as const) {
    test(`${name}: decodes, re-encodes byte for byte, every signature and the delegation chain verify`, () => {
      const { b, snap, input } = katItems(name);
      assert.equal(snap.form, form);
      assert.equal(snap.items.length, count);
      assert.ok(T.encodeSnapshot(snap.form, snap.items).equals(b), 'snapshot re-encodes to the same bytes');
      let sigs = 0;
      for (const [i, it] of snap.items.entries()) {
        const s = input[i]!.signed;
        assert.ok(T.encodeVersionedSigned(s).equals(it.transaction), `signed tx ${i} re-encodes`);
        const tx = T.innerTransaction(s);
        assert.ok(T.versionedTransaction(tx).equals(s.transaction), `tx ${i} re-encodes`);
        const hash = T.transactionHash(s.transaction);
        for (const sig of s.signatures) {
          sigs++;
          assert.equal(sig.format, T.SignatureFormat.DER);
          assert.equal(sig.signingAlgorithmSpec, T.SigningAlgorithmSpec.EC_DSA_SHA_256);
          assert.equal(sig.signedBy.length, 68);
          void hash;
        }
      }
      const report = T.verifyTransactions(input);
      assert.deepEqual(
        report.transactions.filter((t) => !t.ok),
        [],
      );
      assert.ok(report.ok);
      // every node has a root certificate; every OTK is authorized by its member's namespace and signed by its keys
      const roots = report.transactions.filter((t) => t.kind === 'namespace-delegation');
      assert.deepEqual(report.namespaces.sort(), roots.map((r) => r.namespace!).sort());
      for (const t of report.transactions.filter((x) => x.kind === 'owner-to-key-mapping'))
        assert.ok(report.namespaces.includes(t.namespace!));
      assert.ok(sigs > count);
    });
  }

  test('worked example: root certificate hash, namespace = fingerprint of the SPKI, openssl verifies over the 34-byte hash', () => {
    const { input } = katItems('topology-snapshot-duplicate-signatures.3.4');
    const s = input[0]!.signed;
    assert.equal(s.transaction.length, 189);
    assert.equal(T.transactionHash(s.transaction).toString('hex'), '1220826ce40aec2b9f42d9f369c86508f71ff64dc70b3c81dca884ded07553fc67d5');
    const tx = T.innerTransaction(s);
    assert.equal(tx.mapping.kind, 'namespace-delegation');
    if (tx.mapping.kind !== 'namespace-delegation') return;
    const ns = '1220433e1060cf8d81656a96ae65682d33ec92163446a91bf310fa06c7bcf112d28e';
    assert.equal(tx.mapping.value.namespace, ns);
    assert.equal(T.keyFingerprint(tx.mapping.value.targetKey.publicKey), ns);
    assert.equal(s.signatures[0]!.signedBy, ns);
    assert.deepEqual(tx.mapping.value.restriction, { kind: 'all' });
    // keyport's builder reproduces Canton's bytes from the key alone
    assert.ok(T.versionedTransaction(T.rootNamespaceDelegation(tx.mapping.value.targetKey.publicKey)).equals(s.transaction));
    assert.equal(
      opensslVerify(tx.mapping.value.targetKey.publicKey, T.transactionHash(s.transaction), s.signatures[0]!.signature, 'sha256'),
      true,
    );
    // …and not over the bare digest
    assert.equal(
      opensslVerify(
        tx.mapping.value.targetKey.publicKey,
        T.transactionHash(s.transaction).subarray(2),
        s.signatures[0]!.signature,
        'sha256',
      ),
      false,
    );
  });

  test("keyport's OwnerToKeyMapping builder reproduces Canton's bytes", () => {
    for (const name of ['topology-snapshot-duplicate-signatures.3.4', 'topology-snapshot-duplicate-signatures.main']) {
      const { input } = katItems(name);
      let n = 0;
      for (const { signed } of input) {
        const tx = T.innerTransaction(signed);
        if (tx.mapping.kind !== 'owner-to-key-mapping') continue;
        const keys: T.OwnedKey[] = tx.mapping.value.publicKeys.map((k) =>
          k.signing
            ? {
                spki: k.signing.publicKey,
                role: k.signing.usage.includes(T.SigningKeyUsage.SEQUENCER_AUTHENTICATION) ? ['sequencer-auth'] : ['protocol'],
              }
            : { spki: k.encryption!.publicKey, role: 'encryption', type: 'ec-p256' },
        );
        const mine = T.ownerToKeyMapping(tx.mapping.value.member, keys, tx.serial);
        assert.ok(T.versionedTransaction(mine).equals(signed.transaction), `${name}: ${tx.mapping.value.member}`);
        n++;
      }
      assert.ok(n >= 2);
    }
  });

  test('decentralized namespace of the KAT synchronizer is the hash of its owners', () => {
    const { input } = katItems('topology-snapshot-duplicate-signatures.3.4');
    const dnd = input.map((i) => T.innerTransaction(i.signed)).find((t) => t.mapping.kind === 'other' && t.mapping.code === 3)!;
    assert.ok(dnd && dnd.mapping.kind === 'other');
    const f = new T.Fields(dnd.mapping.bytes, 'DecentralizedNamespaceDefinition');
    const ns = f.string(1);
    const owners = f.repeatedBytes(3).map((b) => b.toString('utf8'));
    assert.ok(owners.length >= 2);
    assert.equal(T.decentralizedNamespace(owners), ns);
  });

  test('Canton key files: the stored key id is the fingerprint of the raw Ed25519 key; keys sign and verify', () => {
    const files = readdirSync(join(katDir, 'docs-keys'));
    assert.equal(files.length, 18);
    for (const f of files) {
      const { data } = T.unwrapVersioned(readFileSync(join(katDir, 'docs-keys', f)), 'CryptoKeyPair');
      const pair = new T.Fields(new T.Fields(data, 'CryptoKeyPair').bytes(1), 'SigningKeyPair');
      const pub = T.decodeSigningPublicKey(pair.bytes(1));
      const priv = new T.Fields(pair.bytes(2), 'SigningPrivateKey');
      const id = priv.string(1);
      assert.equal(pub.keySpec, T.SigningKeySpec.EC_CURVE25519);
      assert.equal(T.keyFingerprint(pub.publicKey), id, f);
      assert.equal(T.publicKeyId(pub), id);
      const purpose = Buffer.alloc(4);
      purpose.writeInt32BE(12);
      const spkiHash = '1220' + createHash('sha256').update(purpose).update(pub.publicKey).digest('hex');
      assert.notEqual(spkiHash, id, 'not the hash of the SPKI');
      // the private key signs a root certificate that verifies
      const signer = T.softwareSigner(createPrivateKey({ key: priv.bytes(3), format: 'der', type: 'pkcs8' }));
      assert.equal(signer.fingerprint, id);
    }
  });
});

describe('keyport-made transactions, read by an independent decoder and openssl', { skip: skipUnless('canton-peer') }, () => {
  test('root delegation, owner-to-key mapping, delegation to another key, restricted delegation, revocation', async () => {
    const out = join(dir, 'made');
    mkdirSync(out);
    const kr = await openKeyring(`sqlite:${join(dir, 'made.db')}`);
    try {
      // the node's keys in a keyport store, with Canton usages; P-256, P-384 and Ed25519 namespaces
      await kr.create('root', { type: 'ec-p256', purpose: 'signing', usage: ['namespace'] });
      await kr.create('seqauth', { type: 'ec-p384', purpose: 'signing', usage: ['sequencer-auth'] });
      await kr.create('proto', { type: 'ed25519', purpose: 'signing', usage: ['protocol'] });
      await kr.create('enc', { type: 'rsa-2048', purpose: 'encryption' });
      await kr.create('newroot', { type: 'ec-p384', purpose: 'signing', usage: ['namespace'] });
      await kr.create('restricted', { type: 'ed25519', purpose: 'signing', usage: ['namespace'] });
      const root = await T.keyringSigner(kr, 'root', { usage: 'namespace' });
      const ns = root.fingerprint;
      const seq = await T.keyringSigner(kr, 'seqauth', { usage: 'sequencer-auth' });
      const proto = await T.keyringSigner(kr, 'proto', { usage: 'protocol' });
      const newroot = await T.keyringSigner(kr, 'newroot', { usage: 'namespace' });
      const restricted = await T.keyringSigner(kr, 'restricted', { usage: 'namespace' });

      const files: Record<string, T.SignedTopologyTransaction> = {
        '1-root.cert': await T.signTransaction(T.rootNamespaceDelegation(root.publicKey), [root]),
        '2-otk.cert': await T.signTransaction(
          T.ownerToKeyMapping(T.memberId('participant', 'p1', ns), [
            { spki: seq.publicKey, role: ['sequencer-auth'] },
            { spki: proto.publicKey, role: ['protocol'] },
            { spki: await kr.publicKey('enc'), role: 'encryption' },
          ]),
          [root, seq, proto],
        ),
        '3-delegation.cert': await T.signTransaction(
          T.namespaceDelegation({ namespace: ns, targetKey: newroot.publicKey, restriction: { kind: 'all' } }),
          [root],
        ),
        '4-restricted.cert': await T.signTransaction(
          T.namespaceDelegation({
            namespace: ns,
            targetKey: restricted.publicKey,
            restriction: T.parseRestriction('mappings=party-to-participant,party-to-key-mapping'),
          }),
          [newroot],
        ),
        '5-revoke.cert': await T.signTransaction(
          T.namespaceDelegation({
            namespace: ns,
            targetKey: restricted.publicKey,
            restriction: T.parseRestriction('mappings=party-to-participant,party-to-key-mapping'),
            serial: 2,
            revoke: true,
          }),
          [newroot],
        ),
      };
      for (const [f, s] of Object.entries(files)) writeFileSync(join(out, f), T.encodeVersionedSigned(s));
      writeFileSync(join(out, 'all.certs'), T.encodeSignedCollection(Object.values(files)));

      // keyport's own verifier: chain and signatures
      const report = T.verifyTransactions(Object.entries(files).map(([source, signed]) => ({ source, signed })));
      assert.ok(report.ok, JSON.stringify(report.transactions.filter((t) => !t.ok)));
      assert.deepEqual(report.namespaces, [ns]);
      assert.ok(!report.delegations.some((d) => d.target === restricted.fingerprint), 'revoked delegation not in force');

      // the independent decoder; openssl verifies every signature
      const names = Object.keys(files).sort();
      const peer = peerDecode([...names.map((n) => join(out, n)), join(out, 'all.certs')]);
      assert.equal(peer.length, names.length * 2);
      for (const [i, p] of peer.entries()) {
        const mine = files[names[i % names.length]!]!;
        assert.equal(p.hash, T.transactionHash(mine.transaction).toString('hex'));
        assert.equal(p.signatures.length, mine.signatures.length);
      }
      const allKeys = Object.assign({}, ...peer.map((p) => p.keys)) as (typeof peer)[number]['keys'];
      const [rootP, otkP, delP, resP, revP] = peer;
      assert.equal(rootP!.kind, 'namespace_delegation');
      assert.equal(rootP!.namespace, ns);
      assert.equal(rootP!.target, ns);
      assert.equal(rootP!.restriction, 'can_sign_all_mappings');
      assert.deepEqual(
        rootP!.signatures.map((s) => s.signed_by),
        [ns],
      );
      assert.equal(otkP!.member, `PAR::p1::${ns}`);
      assert.deepEqual(
        otkP!.mapped!.map((m) => [m.kind, m.usage ?? null]),
        [
          ['signing_public_key', [3, 5]],
          ['signing_public_key', [4, 5]],
          ['encryption_public_key', null],
        ],
      );
      assert.deepEqual(new Set(otkP!.signatures.map((s) => s.signed_by)), new Set([ns, seq.fingerprint, proto.fingerprint]));
      assert.equal(delP!.target, newroot.fingerprint);
      assert.deepEqual(allKeys[newroot.fingerprint]!.usage, [1]);
      assert.equal(resP!.restriction, 'can_sign_specific_mapings');
      assert.deepEqual(resP!.mappings, [9, 18]);
      assert.equal(revP!.operation, 2);
      assert.equal(revP!.serial, 2);
    } finally {
      await kr.close();
    }
  });
});

test('topology signatures are low-S, as every keyport ECDSA signature (an in-memory key; KMS keys in session.test.ts)', async () => {
  for (const [curve, type] of [
    ['P-256', 'ec-p256'],
    ['P-384', 'ec-p384'],
  ] as const) {
    const signer = T.softwareSigner(generateKeyPairSync('ec', { namedCurve: curve }).privateKey);
    // OpenSSL returns a high-S signature about half the time: 48 low ones by chance is 2^-48
    for (let i = 0; i < 48; i++) {
      const sig = await T.signHash(signer, createHash('sha256').update(String(i)).digest());
      assert.ok(!isHighS(type, sig.signature, 'der'), `${type} signature ${i} is high-S`);
    }
  }
});

describe('refusals', () => {
  test('tampered bytes, wrong signer, missing proof of ownership, unauthorized delegation', async () => {
    const k = (c: 'P-256' | 'P-384') => T.softwareSigner(generateKeyPairSync('ec', { namedCurve: c }).privateKey);
    const root = k('P-256');
    const other = k('P-256');
    const signing = k('P-384');
    const rootCert = await T.signTransaction(T.rootNamespaceDelegation(root.publicKey), [root]);
    // flipped byte in the transaction: hash changes, signature fails
    const tampered = { ...rootCert, transaction: Buffer.from(rootCert.transaction) };
    tampered.transaction[tampered.transaction.length - 5]! ^= 1;
    let r = T.verifyTransactions([{ source: 't', signed: tampered }]);
    assert.ok(!r.ok);
    // a delegation signed by a key with no authority in the namespace
    const bad = await T.signTransaction(T.namespaceDelegation({ namespace: root.fingerprint, targetKey: other.publicKey }), [other]);
    r = T.verifyTransactions([
      { source: 'root', signed: rootCert },
      { source: 'bad', signed: bad },
    ]);
    assert.deepEqual(
      r.transactions.map((t) => t.ok),
      [true, false],
    );
    assert.match(r.transactions[1]!.problems.join(), /not authorized by namespace/);
    // an OTK without the signing key's own signature
    const otk = await T.signTransaction(
      T.ownerToKeyMapping(T.memberId('mediator', 'm1', root.fingerprint), [{ spki: signing.publicKey, role: ['protocol'] }]),
      [root],
    );
    r = T.verifyTransactions([
      { source: 'root', signed: rootCert },
      { source: 'otk', signed: otk },
    ]);
    assert.match(r.transactions[1]!.problems.join(), /proof of ownership/);
    // garbage is one clear error, not a crash
    assert.throws(() => T.decodeVersionedSigned(Buffer.from('0a05ffff', 'hex')), /not a valid Canton protobuf message|INVALID_INPUT/);
    assert.throws(() => T.decodeVersionedSigned(Buffer.from('hello world')));
  });
});
