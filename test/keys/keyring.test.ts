import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createPublicKey, verify, generateKeyPairSync, randomBytes } from 'node:crypto';
import { openKeyring } from '../../src/keys/open.js';
import { KEY_TYPES, KEY_TYPE_INFO } from '../../src/crypto/keytypes.js';
import { isKeyportError } from '../../src/errors.js';
import { tempDir } from '../support/tmp.js';

const dir = tempDir();

for (const scheme of ['sqlite', 'fs'] as const) {
  describe(`keyring on ${scheme}`, () => {
    const uri = scheme === 'sqlite' ? `sqlite:${join(dir, `${scheme}.db`)}` : `fs:${join(dir, 'fsstore')}`;

    test('every key type: create, describe, sign/verify or encrypt/decrypt', async () => {
      const kr = await openKeyring(uri);
      try {
        for (const type of KEY_TYPES) {
          for (const purpose of KEY_TYPE_INFO[type].purposes) {
            const name = `k-${type}-${purpose}`;
            const info = await kr.create(name, { type, purpose });
            assert.equal(info.type, type);
            assert.equal(info.purpose, purpose);
            assert.equal(info.version, 1);
            assert.equal(info.protection, 'clear');
            const data = Buffer.from(`message for ${name}`);
            if (purpose === 'signing') {
              const sig = await kr.sign(name, data);
              assert.ok(await kr.verify(name, data, sig));
              assert.ok(!(await kr.verify(name, Buffer.from('other'), sig)));
              // independent check with node:crypto and the exported public key
              const pub = createPublicKey({ key: await kr.publicKey(name), format: 'der', type: 'spki' });
              const info2 = KEY_TYPE_INFO[type];
              const ok =
                info2.family === 'rsa'
                  ? verify('sha256', data, { key: pub, padding: 6, saltLength: 32 }, sig)
                  : verify(info2.family === 'ed25519' ? null : info2.hash!, data, pub, sig);
              assert.ok(ok, `${type} signature verifies independently`);
              assert.ok(info.fingerprint.startsWith('1220') && info.fingerprint.length === 68);
            } else {
              const ctx = Buffer.from('ctx');
              const ct = await kr.encrypt(name, data, type === 'aes256' ? ctx : undefined);
              assert.deepEqual(await kr.decrypt(name, ct, type === 'aes256' ? ctx : undefined), data);
              if (type === 'aes256') {
                assert.ok(info.fingerprint.startsWith('kcv1'));
                await assert.rejects(kr.decrypt(name, ct, Buffer.from('other')), (e) => isKeyportError(e, 'INVALID_CIPHERTEXT'));
                const dk = await kr.generate(name);
                assert.equal(dk.plaintext.length, 32);
                assert.deepEqual(await kr.decrypt(name, dk.ciphertext), dk.plaintext);
                assert.equal((await kr.hmac(name, data)).length, 32);
              }
            }
          }
        }
      } finally {
        await kr.close();
      }
    });

    test('rotation: new operations use the newest version, old versions still decrypt and verify', async () => {
      const kr = await openKeyring(uri);
      try {
        await kr.create('rot-a');
        await kr.create('rot-s', { type: 'ec-p256' });
        const ct1 = await kr.encrypt('rot-a', Buffer.from('v1 data'));
        const sig1 = await kr.sign('rot-s', Buffer.from('v1 data'));
        const fp1 = (await kr.describe('rot-s')).fingerprint;
        const r = await kr.rotate('rot-s');
        await kr.rotate('rot-a');
        assert.equal(r.version, 2);
        assert.equal(r.versions, 2);
        assert.notEqual(r.fingerprint, fp1);
        assert.deepEqual(await kr.decrypt('rot-a', ct1), Buffer.from('v1 data'));
        assert.ok(await kr.verify('rot-s', Buffer.from('v1 data'), sig1));
        assert.ok(await kr.verify('rot-s', Buffer.from('v1 data'), sig1, { version: 1 }));
        assert.ok(!(await kr.verify('rot-s', Buffer.from('v1 data'), sig1, { version: 2 })));
        const sig2 = await kr.sign('rot-s', Buffer.from('x'));
        assert.ok(await kr.verify('rot-s', Buffer.from('x'), sig2, { version: 2 }));
        const exported = await kr.export('rot-a');
        assert.deepEqual(
          exported.map((e) => e.version),
          [1, 2],
        );
      } finally {
        await kr.close();
      }
    });

    test('usage restrictions are enforced on use', async () => {
      const kr = await openKeyring(uri);
      try {
        await kr.create('ns-key', { type: 'ed25519', usage: ['namespace'] });
        await assert.rejects(kr.sign('ns-key', Buffer.from('x')), (e) => isKeyportError(e, 'KEY_USAGE'));
        await assert.rejects(kr.sign('ns-key', Buffer.from('x'), { usage: 'protocol' }), (e) => isKeyportError(e, 'KEY_USAGE'));
        const sig = await kr.sign('ns-key', Buffer.from('x'), { usage: 'namespace' });
        assert.ok(await kr.verify('ns-key', Buffer.from('x'), sig));
        await assert.rejects(kr.encrypt('ns-key', Buffer.from('x')), (e) => isKeyportError(e, 'KEY_USAGE'));
        await kr.create('enc-rsa', { type: 'rsa-2048' });
        await assert.rejects(kr.sign('enc-rsa', Buffer.from('x')), (e) => isKeyportError(e, 'KEY_USAGE'));
        await assert.rejects(kr.create('bad-usage', { type: 'aes256', usage: ['namespace'] }), (e) => isKeyportError(e, 'USAGE'));
      } finally {
        await kr.close();
      }
    });

    test('names, duplicates, missing keys, raw ECDSA signatures', async () => {
      const kr = await openKeyring(uri);
      try {
        for (const bad of ['', '-a', 'a-', 'a b', 'ä', 'x'.repeat(81), '../etc', 'a/b', 'a.b'])
          await assert.rejects(kr.create(bad), (e) => isKeyportError(e, 'INVALID_NAME'), bad);
        await kr.create('dup');
        await assert.rejects(kr.create('dup'), (e) => isKeyportError(e, 'EXISTS'));
        await assert.rejects(kr.describe('nope'), (e) => isKeyportError(e, 'NOT_FOUND'));
        await assert.rejects(kr.delete('nope'), (e) => isKeyportError(e, 'NOT_FOUND'));
        await kr.create('p384', { type: 'ec-p384' });
        const raw = await kr.sign('p384', Buffer.from('m'), { format: 'raw' });
        assert.equal(raw.length, 96);
        assert.ok(await kr.verify('p384', Buffer.from('m'), raw, { format: 'raw' }));
        await kr.delete('dup');
        await assert.rejects(kr.describe('dup'), (e) => isKeyportError(e, 'NOT_FOUND'));
      } finally {
        await kr.close();
      }
    });

    test('import: same material, same fingerprint in every store; export round trip', async () => {
      const kr = await openKeyring(uri);
      const other = await openKeyring(`sqlite:${join(dir, `other-${scheme}.db`)}`);
      try {
        const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
        const pem = Buffer.from(privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
        const a = await kr.import('imp-k1', pem);
        const b = await other.import('imp-k1', privateKey.export({ type: 'pkcs8', format: 'der' }) as Buffer);
        assert.equal(a.type, 'secp256k1');
        assert.equal(a.fingerprint, b.fingerprint);
        const sym = randomBytes(32);
        const s1 = await kr.import('imp-aes', sym);
        const s2 = await other.import('imp-aes', sym);
        assert.equal(s1.fingerprint, s2.fingerprint);
        assert.deepEqual((await kr.export('imp-aes'))[0]!.secret, sym);
        await assert.rejects(kr.import('imp-bad', Buffer.from('not a key at all, not 32 bytes')), (e) =>
          isKeyportError(e, 'INVALID_INPUT'),
        );
        await assert.rejects(kr.import('imp-wrong', pem, { type: 'ec-p256' }), (e) => isKeyportError(e, 'INVALID_INPUT'));
      } finally {
        await kr.close();
        await other.close();
      }
    });

    test('listing: globs, paging past 1024 keys, malformed patterns rejected', async () => {
      const kr = await openKeyring(uri);
      try {
        for (let i = 0; i < 1100; i++) await kr.create(`page-${String(i).padStart(4, '0')}`);
        const all: string[] = [];
        let after: string | undefined;
        for (;;) {
          const p = await kr.list('page-*', { after, limit: 250 });
          all.push(...p.names);
          if (!p.next) break;
          after = p.next;
        }
        assert.equal(all.length, 1100);
        assert.equal(new Set(all).size, 1100);
        assert.deepEqual((await kr.list('page-000?')).names.length, 10);
        assert.deepEqual((await kr.list('page-00[0-1]0')).names, ['page-0000', 'page-0010']);
        assert.deepEqual((await kr.list('page-1099')).names, ['page-1099']);
        for (const bad of ['page-[', 'a]', 'x/y', '[]', '[z-a]'])
          await assert.rejects(kr.list(bad), (e) => isKeyportError(e, 'USAGE'), bad);
      } finally {
        await kr.close();
      }
    });

    test('racing rotations (two keyrings on one store, several at once) all land as consecutive versions', async () => {
      const a = await openKeyring(uri);
      const b = await openKeyring(uri);
      try {
        const name = 'rot-race';
        await a.create(name, { type: 'aes256' });
        const pt = Buffer.from('every version decrypts');
        const cts = await Promise.all(
          Array.from({ length: 12 }, async (_, i) => {
            const kr = i % 2 ? a : b;
            await kr.rotate(name);
            return kr.encrypt(name, pt);
          }),
        );
        const d = await a.describe(name);
        assert.equal(d.versions, 13);
        for (const ct of cts) assert.deepEqual(await b.decrypt(name, ct), pt);
      } finally {
        await a.close();
        await b.close();
      }
    });
  });
}
