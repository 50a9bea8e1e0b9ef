/**
 * A KES FS keystore as migration source and target: keys in KES's own file format (protobuf and legacy
 * JSON) move into keyport stores and back byte for byte, KES ciphertexts keep decrypting, and what a
 * KES keystore cannot hold is refused with the reason.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdirSync, writeFileSync, readdirSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { encodeKesKey, decodeKesKey } from '../../src/store/kes-format.js';
import { kesEncrypt } from '../../src/crypto/kes-ciphertext.js';
import { migrate } from '../../src/migrate/index.js';
import { openKeyring } from '../../src/keys/open.js';
import { tempDir } from '../support/tmp.js';

const dir = tempDir();

test('KES FS keystore → sqlite (envelope) → KES FS keystore: every key byte-equal, old ciphertexts decrypt', async () => {
  const kesDir = join(dir, 'kes-src');
  mkdirSync(kesDir);
  const keys = new Map<string, Buffer>();
  const cts = new Map<string, Buffer>();
  const now = new Date().toISOString();
  for (let i = 0; i < 1100; i++) {
    const name = `minio-${i}`;
    const secret = randomBytes(32);
    keys.set(name, secret);
    const legacy = i % 10 === 0;
    writeFileSync(
      join(kesDir, name),
      encodeKesKey(
        {
          secret,
          algorithm: 'AES256',
          createdAt: now,
          createdBy: 'b822d6dd3c9e6e854ee0e1bf4e3e461052a744128b493c82c00014f1ee315c66',
          ...(legacy ? {} : { hmacKey: randomBytes(32) }),
        },
        legacy ? 'json' : 'protobuf',
      ),
      { mode: 0o600 },
    );
    if (i % 100 === 0) cts.set(name, kesEncrypt(secret, Buffer.from(`object key ${i}`), Buffer.from(`bucket/obj-${i}`)));
  }
  const mid = join(dir, 'mid.yaml');
  writeFileSync(mid, `store: sqlite:${join(dir, 'mid.db')}\nenvelope:\n  wrapper: local:${join(dir, 'w.key')}\n`);
  const r1 = await migrate({ from: `kes-fs:${kesDir}`, to: mid });
  assert.deepEqual([r1.migrated, r1.verified, r1.failed.length], [1100, 1100, 0]);
  const kr = await openKeyring(mid);
  for (const [name, ct] of cts)
    assert.equal(
      (await kr.decrypt(name, ct, Buffer.from(`bucket/${name.replace('minio', 'obj')}`))).toString(),
      `object key ${name.split('-')[1]}`,
    );
  assert.equal((await kr.describe('minio-5')).protection, 'sealed');
  await kr.create('not-for-kes', { type: 'ec-p256' });
  await kr.create('two-versions');
  await kr.rotate('two-versions');
  await kr.close();
  const back = join(dir, 'kes-dst');
  const r2 = await migrate({ from: mid, to: `kes-fs:${back}`, allowClear: true });
  assert.equal(r2.migrated, 1100);
  assert.deepEqual(r2.refused.map((x) => x.name).sort(), ['not-for-kes', 'two-versions']);
  assert.match(r2.refused.find((x) => x.name === 'not-for-kes')!.reason, /only aes256/);
  const files = readdirSync(back).filter((f) => !f.startsWith('.'));
  assert.equal(files.length, 1100);
  for (const f of files) {
    const k = decodeKesKey(readFileSync(join(back, f)));
    assert.deepEqual(k.secret, keys.get(f), f);
  }
});
