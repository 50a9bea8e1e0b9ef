/**
 * Migration into and out of a KMS (external mode), with the local development KMS as the KMS:
 * import where the target can import (same fingerprints), re-key where the source cannot export
 * (new key, old→new map, Canton NamespaceDelegation signed by the old key), refusal otherwise.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync, mkdirSync } from 'node:fs';
import { createPublicKey, verify } from 'node:crypto';
import { openKeyring } from '../../src/keys/open.js';
import { migrate } from '../../src/migrate/index.js';
import { tempDir } from '../support/tmp.js';

const dir = tempDir();
process.env.KEYPORT_HOME = join(dir, 'home');

test('clear store → KMS by import: same fingerprints, verified, keys used inside the KMS', async () => {
  const src = `sqlite:${join(dir, 'src.db')}`;
  const kr = await openKeyring(src);
  await kr.create('node-ns', { type: 'ec-p256', usage: ['namespace'] });
  await kr.create('node-enc', { type: 'rsa-2048' });
  await kr.create('node-data');
  const before = new Map<string, string>();
  for (const n of ['node-ns', 'node-enc', 'node-data']) before.set(n, (await kr.describe(n)).fingerprint);
  await kr.close();
  mkdirSync(join(dir, 'kms1'));
  const kms = `local:${join(dir, 'kms1')}/`;
  const r = await migrate({ from: src, to: kms });
  assert.deepEqual([r.failed, r.conflicts, r.refused], [[], [], []], JSON.stringify(r.errors));
  assert.equal(r.strategies.import, 3);
  assert.equal(r.verified, 3);
  const ext = await openKeyring(kms);
  for (const [n, fp] of before) {
    const info = await ext.describe(n);
    assert.equal(info.protection, 'external');
    assert.equal(info.fingerprint, fp, `${n}: same fingerprint, so no namespace change`);
  }
  await assert.rejects(ext.export('node-ns'), /cannot be exported/);
  const sig = await ext.sign('node-ns', Buffer.from('m'), { usage: 'namespace' });
  assert.ok(await ext.verify('node-ns', Buffer.from('m'), sig));
  await ext.close();
});

test('KMS → clear store needs --rekey: new keys, an old→new map, and a delegation signed by the old key', async () => {
  mkdirSync(join(dir, 'kms2'));
  const kms = `local:${join(dir, 'kms2')}/`;
  const ext = await openKeyring(kms);
  await ext.create('ext-sig', { type: 'ed25519', usage: ['namespace'] });
  await ext.create('ext-enc', { type: 'rsa-2048' });
  const oldFp = (await ext.describe('ext-sig')).fingerprint;
  const oldPub = await ext.publicKey('ext-sig');
  await ext.close();
  const dst = `sqlite:${join(dir, 'dst.db')}`;
  const refused = await migrate({ from: kms, to: dst, allowClear: true });
  assert.equal(refused.migrated, 0);
  assert.deepEqual(refused.refused.map((x) => x.name).sort(), ['ext-enc', 'ext-sig']);
  assert.match(refused.refused[0]!.reason, /--rekey/);
  const r = await migrate({ from: kms, to: dst, rekey: true, allowClear: true });
  assert.equal(r.strategies.rekey, 2);
  assert.equal(r.verified, 2);
  const lines = readFileSync(r.rekeyMap!, 'utf8')
    .trim()
    .split('\n')
    .map(
      (l) =>
        JSON.parse(l) as {
          name: string;
          old: { fingerprint: string };
          new: { fingerprint: string };
          delegation?: { file: string; namespace: string; target: string; hash: string };
        },
    );
  const sigEntry = lines.find((l) => l.name === 'ext-sig')!;
  assert.equal(sigEntry.old.fingerprint, oldFp);
  const kr = await openKeyring(dst);
  assert.equal(sigEntry.new.fingerprint, (await kr.describe('ext-sig')).fingerprint);
  assert.notEqual(sigEntry.new.fingerprint, oldFp);
  // a Canton root certificate of the old key's namespace and a NamespaceDelegation to the new key, signed by the
  // old key: the chain verifies (the signatures are checked with node:crypto over Canton's hash by the verifier)
  const d = sigEntry.delegation!;
  assert.equal(d.namespace, oldFp);
  assert.equal(d.target, sigEntry.new.fingerprint);
  const T = await import('../../src/canton/topology/index.js');
  const txs = T.decodeSignedCollection(readFileSync(d.file));
  const report = T.verifyTransactions(txs.map((signed, i) => ({ source: `${i}`, signed })));
  assert.ok(report.ok, JSON.stringify(report.transactions));
  assert.deepEqual(report.namespaces, [oldFp]);
  assert.ok(report.delegations.some((x) => x.namespace === oldFp && x.target === sigEntry.new.fingerprint && x.restriction === 'all'));
  assert.equal(T.transactionHash(txs[1]!.transaction).toString('hex'), d.hash);
  // and independently of keyport's verifier: the old public key verifies the Ed25519 signature over the 34-byte hash
  assert.ok(
    verify(
      null,
      T.transactionHash(txs[1]!.transaction),
      createPublicKey({ key: oldPub, format: 'der', type: 'spki' }),
      txs[1]!.signatures[0]!.signature,
    ),
  );
  assert.equal(lines.find((l) => l.name === 'ext-enc')!.delegation, undefined);
  assert.equal((await kr.describe('ext-sig')).usage.join(), 'namespace');
  await kr.close();
});
