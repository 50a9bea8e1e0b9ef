/**
 * Migration into and out of a KMS (external mode), with the local development KMS as the KMS:
 * import where the target can import (same fingerprints), re-key where the source cannot export
 * (new key, old→new map, delegation signed by the old key), refusal otherwise.
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
          delegation?: { statement: string; signature: string };
        },
    );
  const sigEntry = lines.find((l) => l.name === 'ext-sig')!;
  assert.equal(sigEntry.old.fingerprint, oldFp);
  const kr = await openKeyring(dst);
  assert.equal(sigEntry.new.fingerprint, (await kr.describe('ext-sig')).fingerprint);
  assert.notEqual(sigEntry.new.fingerprint, oldFp);
  // the delegation verifies under the OLD key, independently of keyport
  const stmt = JSON.parse(sigEntry.delegation!.statement) as { delegator: string; delegate: string };
  assert.equal(stmt.delegator, oldFp);
  assert.equal(stmt.delegate, sigEntry.new.fingerprint);
  assert.ok(
    verify(
      null,
      Buffer.from(sigEntry.delegation!.statement),
      createPublicKey({ key: oldPub, format: 'der', type: 'spki' }),
      Buffer.from(sigEntry.delegation!.signature, 'base64'),
    ),
  );
  assert.equal((await kr.describe('ext-sig')).usage.join(), 'namespace');
  await kr.close();
});
