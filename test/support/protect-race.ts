/**
 * Protect enable / rotate / disable on one keyring while another keyring on the same store rotates,
 * encrypts and deletes keys: afterwards every acknowledged rotation is there, every ciphertext
 * decrypts, and no deleted key came back. Shared by the sqlite/fs and the PostgreSQL tests.
 */
import assert from 'node:assert/strict';
import { openKeyring } from '../../src/keys/open.js';
import { protectDisable, protectEnable, protectRotate } from '../../src/keys/protect.js';

export async function protectRace(uri: string, wrapperPrefix: string): Promise<void> {
  // the store keeps references; both wrappers are reached through configured connections
  const kms = [`local:${wrapperPrefix}-w1.key`, `local:${wrapperPrefix}-w2.key`];
  const admin = await openKeyring(uri, { kms });
  const app = await openKeyring(uri, { kms });
  try {
    const names = Array.from({ length: 60 }, (_, i) => `k${String(i).padStart(2, '0')}`);
    for (const n of names) await admin.create(n, { type: 'aes256' });
    const pt = Buffer.from('still readable');
    const cts: { name: string; ct: Buffer }[] = [];
    const rotations = new Map<string, number>();
    const deleted: string[] = [];
    const churn = async () => {
      for (const [i, n] of names.entries()) {
        if (deleted.includes(n)) continue;
        if (i % 10 === 9) {
          await app.delete(n);
          deleted.push(n);
          continue;
        }
        if (i % 3) continue;
        await app.rotate(n);
        rotations.set(n, (rotations.get(n) ?? 0) + 1);
        cts.push({ name: n, ct: await app.encrypt(n, pt) });
      }
    };
    await Promise.all([protectEnable(admin, `local:${wrapperPrefix}-w1.key`), churn()]);
    await Promise.all([protectRotate(admin, `local:${wrapperPrefix}-w2.key`), churn()]);
    await Promise.all([protectDisable(admin), churn()]);
    const check = await openKeyring(uri, { kms });
    try {
      for (const n of names) {
        if (deleted.includes(n)) {
          assert.equal((await check.list(n)).names.length, 0, `${n} was deleted and must stay deleted`);
          continue;
        }
        assert.equal((await check.describe(n)).versions, 1 + (rotations.get(n) ?? 0), n);
      }
      for (const { name, ct } of cts) if (!deleted.includes(name)) assert.deepEqual(await check.decrypt(name, ct), pt);
    } finally {
      await check.close();
    }
  } finally {
    await admin.close();
    await app.close();
  }
}
