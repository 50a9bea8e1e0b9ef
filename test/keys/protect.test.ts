/** Envelope protection (Canton's encrypted private key storage) with the local wrapper KMS. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { relative, join } from 'node:path';
import { readdirSync, readFileSync, statSync, unlinkSync, writeFileSync, existsSync } from 'node:fs';
import { openKeyring } from '../../src/keys/open.js';
import { protectDisable, protectEnable, protectRotate } from '../../src/keys/protect.js';
import { isKeyportError } from '../../src/errors.js';
import { tempDir } from '../support/tmp.js';
import { protectRace } from '../support/protect-race.js';
import type { KeyType } from '../../src/crypto/keytypes.js';

const dir = tempDir();
const TYPES: KeyType[] = ['aes256', 'ec-p256', 'ec-p384', 'secp256k1', 'ed25519', 'rsa-2048'];

/** every byte of every file under p */
function allBytes(p: string): Buffer {
  if (!existsSync(p)) return Buffer.alloc(0);
  if (statSync(p).isDirectory()) return Buffer.concat(readdirSync(p).map((f) => allBytes(join(p, f))));
  return readFileSync(p);
}

/** the secret itself, its base64/hex forms, and (for PKCS#8) the raw private scalar, must appear nowhere */
function leaks(haystack: Buffer, secrets: Buffer[]): string[] {
  const text = haystack.toString('latin1');
  const found: string[] = [];
  for (const s of secrets) {
    const probes = [s.subarray(-32), s.subarray(0, 24)];
    for (const pr of probes) {
      if (haystack.includes(pr)) found.push('raw');
      if (text.includes(pr.toString('base64').slice(4, 28))) found.push('base64');
      if (text.includes(pr.toString('hex').slice(0, 40))) found.push('hex');
    }
  }
  return found;
}

for (const scheme of ['sqlite', 'fs'] as const) {
  describe(`protect on ${scheme}`, () => {
    const loc = join(dir, scheme === 'sqlite' ? 'p.db' : 'pfs');
    const uri = `${scheme}:${loc}`;
    const files = () => (scheme === 'sqlite' ? Buffer.concat([allBytes(loc), allBytes(`${loc}-wal`)]) : allBytes(loc));
    const w1 = `local:${join(dir, `${scheme}-w1.key`)}`;
    const w2 = `local:${join(dir, `${scheme}-w2.key`)}`;

    test('enable seals every clear key; the store then holds no plaintext key bytes; keys still work', async () => {
      const kr = await openKeyring(uri);
      const sigs: Record<string, Buffer> = {};
      for (const t of TYPES) {
        await kr.create(`k-${t}`, { type: t, purpose: t === 'aes256' ? 'symmetric' : t === 'rsa-2048' ? 'encryption' : 'signing' });
        if (t !== 'aes256' && t !== 'rsa-2048') sigs[t] = await kr.sign(`k-${t}`, Buffer.from('m'));
      }
      const ct = await kr.encrypt('k-aes256', Buffer.from('payload'));
      const secrets = (await Promise.all(TYPES.map((t) => kr.export(`k-${t}`)))).flat().map((e) => e.secret);
      assert.ok(leaks(files(), secrets).length > 0, 'sanity: a clear store does contain the key bytes');
      const r = await protectEnable(kr, w1);
      assert.equal(r.changed, TYPES.length);
      await kr.close();
      // a fresh process view: everything sealed, nothing leaks
      // a fresh process view (the store keeps the wrapper's reference; its connection is configuration)
      const kr2 = await openKeyring(uri, { kms: [w1] });
      try {
        for (const t of TYPES) assert.equal((await kr2.describe(`k-${t}`)).protection, 'sealed');
        assert.deepEqual(leaks(files(), secrets), []);
        assert.deepEqual(await kr2.decrypt('k-aes256', ct), Buffer.from('payload'));
        for (const [t, sig] of Object.entries(sigs)) assert.ok(await kr2.verify(`k-${t}`, Buffer.from('m'), sig));
        const s = await kr2.sign('k-ec-p256', Buffer.from('new'));
        assert.ok(await kr2.verify('k-ec-p256', Buffer.from('new'), s));
        // new keys in a protected store are sealed from the start
        assert.equal((await kr2.create('k-new')).protection, 'sealed');
        // enabling again is a no-op; a different wrapper is refused
        assert.equal((await protectEnable(kr2, w1)).changed, 0);
        await assert.rejects(protectEnable(kr2, w2), (e) => isKeyportError(e, 'CONFLICT'));
      } finally {
        await kr2.close();
      }
    });

    test('rotate re-wraps every key; the old wrapper can then be removed', async () => {
      const kr = await openKeyring(uri, { kms: [w1] });
      try {
        const _ct = await kr.encrypt('k-aes256', Buffer.from('before rotate'));
        const r = await protectRotate(kr, w2);
        assert.equal(r.changed, TYPES.length + 1);
        unlinkSync(join(dir, `${scheme}-w1.key`));
      } finally {
        await kr.close();
      }
      const kr2 = await openKeyring(uri, { kms: [w2] });
      try {
        for (const t of TYPES) await kr2.export(`k-${t}`); // every key opens with w2 alone
        const s = await kr2.sign('k-ed25519', Buffer.from('after'));
        assert.ok(await kr2.verify('k-ed25519', Buffer.from('after'), s));
      } finally {
        await kr2.close();
      }
    });

    test('disable reverts to clear keys', async () => {
      const kr = await openKeyring(uri, { kms: [w2] });
      try {
        await protectDisable(kr);
        for (const t of TYPES) assert.equal((await kr.describe(`k-${t}`)).protection, 'clear');
        assert.equal((await kr.create('k-after-disable')).protection, 'clear');
      } finally {
        await kr.close();
      }
    });
  });
}

test('YAML envelope config protects existing clear keys on open; a wrong wrapper is refused', async () => {
  const db = join(dir, 'yaml.db');
  const kr = await openKeyring(`sqlite:${db}`);
  await kr.create('y1', { type: 'ec-p256' });
  await kr.close();
  const cfg = join(dir, 'store.yaml');
  writeFileSync(cfg, `store: sqlite:${db}\nenvelope:\n  wrapper: local:${join(dir, 'yaml-w.key')}\ncache:\n  ttl: 1m\n`);
  const notices: string[] = [];
  const kr2 = await openKeyring(cfg, { onNotice: (m) => notices.push(m) });
  assert.equal((await kr2.describe('y1')).protection, 'sealed');
  assert.match(notices.join(), /1 key\(s\) sealed/);
  await kr2.close();
  writeFileSync(cfg, `store: sqlite:${db}\nenvelope:\n  wrapper: local:${join(dir, 'other-w.key')}\n`);
  await assert.rejects(openKeyring(cfg), (e) => isKeyportError(e, 'CONFLICT'));
  for (const [bad, re] of [
    ['store: [1', /not valid YAML/],
    ['stor: sqlite:x', /store|unrecognized/i],
    [`store: sqlite:${db}\nenvelope: {}\n`, /envelope\.wrapper/],
    [`store: sqlite:${db}\ncache: {ttl: soon}\n`, /not a duration/],
  ] as const) {
    writeFileSync(cfg, bad);
    await assert.rejects(openKeyring(cfg), (e) => isKeyportError(e) && re.test(e.message) && !e.message.includes('\n'), bad);
  }
});

test('a wrapper key reached at a new address (same scheme and key id) keeps the store readable; the store keeps only the reference', async () => {
  const { sameKeyRef: sameWrapperKey } = await import('../../src/kms/address.js');
  assert.ok(
    sameWrapperKey(
      'awskms:region=eu-west-1;endpoint=http://10.0.0.1:4566;key-id=alias/w',
      'awskms:region=eu-west-1;endpoint=http://10.0.0.9:4599;key-id=alias/w',
    ),
  );
  assert.ok(!sameWrapperKey('awskms:region=eu-west-1;key-id=alias/w', 'awskms:region=eu-west-1;key-id=alias/other'));
  assert.ok(!sameWrapperKey('kmip:host=a;port=1;key-id=7', 'awskms:key-id=7'));
  const db = join(dir, 'moved.db');
  const w = join(dir, 'moved-w.key');
  const kr = await openKeyring({ store: `sqlite:${db}`, envelope: { wrapper: `local:${w}` } });
  await kr.create('moved-key', { type: 'ed25519' });
  await kr.close();
  // the config reaches the same key another way (a relative path here): the stored reference is unchanged
  const rel = relative(process.cwd(), w);
  const kr2 = await openKeyring({ store: `sqlite:${db}`, envelope: { wrapper: `local:./${rel}` } });
  assert.equal(((await kr2.protection()) as { wrapper: string }).wrapper, `local:${w}`);
  const sig = await kr2.sign('moved-key', Buffer.from('x'));
  assert.ok(await kr2.verify('moved-key', Buffer.from('x'), sig));
  await kr2.close();
});

test('protect enable / rotate / disable while another keyring rotates and deletes keys: no version lost, no key brought back (sqlite, fs)', async () => {
  await protectRace(`sqlite:${join(dir, 'race.db')}`, join(dir, 'race-sqlite'));
  await protectRace(`fs:${join(dir, 'race-fs')}`, join(dir, 'race-fs-w'));
});
