/**
 * fs: stores shared by several processes: rotations through separate processes all land, a lock left by
 * a dead process is broken, a live one is waited for.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { writeFileSync, readdirSync } from 'node:fs';
import { openKeyring } from '../../src/keys/open.js';
import { withFileLock } from '../../src/store/file-lock.js';
import { isKeyportError } from '../../src/errors.js';
import { ROOT } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';

function rotateLoop(uri: string, name: string, n: number): Promise<{ code: number; done: number }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/support/rotate-loop.ts'), uri, name, String(n)], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('exit', (code) => resolve({ code: code ?? -1, done: Number(out.trim()) }));
  });
}

test('three processes rotating one key of an fs store at once: every rotation lands', async () => {
  const dir = tempDir();
  const uri = `fs:${join(dir, 'store')}`;
  const kr = await openKeyring(uri);
  await kr.create('shared', { type: 'aes256' });
  const per = 40;
  const rs = await Promise.all([0, 1, 2].map(() => rotateLoop(uri, 'shared', per)));
  assert.deepEqual(rs, Array(3).fill({ code: 0, done: per }));
  const vs = await kr.versions('shared');
  assert.deepEqual(
    vs.map((v) => v.version),
    Array.from({ length: 1 + 3 * per }, (_, i) => i + 1),
  );
  assert.equal(new Set(vs.map((v) => v.fingerprint)).size, 1 + 3 * per, 'every version is its own key');
  assert.deepEqual(
    readdirSync(join(dir, 'store')).filter((f) => f.startsWith('.lock')),
    [],
    'no lock left behind',
  );
  await kr.close();
});

test('a lock of a dead process is broken; a live one is waited for, then CONFLICT after the timeout', async () => {
  const dir = tempDir();
  const lock = join(dir, '.lock-k');
  writeFileSync(lock, `999999999 ${(await import('node:os')).hostname()} deadbeef`);
  assert.equal(await withFileLock(lock, "key 'k'", () => 'got it'), 'got it');
  // held by us (alive): a second taker waits until it is released
  const order: string[] = [];
  await Promise.all([
    withFileLock(lock, "key 'k'", async () => {
      order.push('a-in');
      await new Promise((r) => setTimeout(r, 50));
      order.push('a-out');
    }),
    new Promise((r) => setTimeout(r, 5)).then(() => withFileLock(lock, "key 'k'", () => order.push('b'))),
  ]);
  assert.deepEqual(order, ['a-in', 'a-out', 'b']);
  // a live holder that never lets go: CONFLICT, one line, retryable
  await withFileLock(lock, "key 'k'", async () => {
    await assert.rejects(
      withFileLock(lock, "key 'k'", () => 0, { timeoutMs: 100 }),
      (e) => isKeyportError(e, 'CONFLICT') && e.retryable && !e.message.includes('\n'),
    );
  });
});
