/**
 * kill -9 during a migration into an fs: store left `.tmp-*` files, each a whole clear key record, that
 * nothing removed and doctor did not see (issue 9 item 4). Now: doctor reports them, the store removes
 * them under its lock before its first write, and an envelope target never has a clear secret in any
 * file, temporary or not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { existsSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { openKeyring } from '../../src/keys/open.js';
import { openRecordStore } from '../../src/store/open.js';
import { migrate } from '../../src/migrate/index.js';
import type { KeyRecord } from '../../src/store/types.js';
import { ROOT } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';
import { kpIn } from '../support/kp.js';

const dir = tempDir();
const temps = (d: string) => (existsSync(d) ? readdirSync(d).filter((f) => f.startsWith('.tmp-')) : []);

/** a source with `n` keys (copies of a few real keys under many names) and the clear secrets they hold */
async function source(name: string, n: number): Promise<{ uri: string; secrets: Buffer[] }> {
  const uri = `sqlite:${join(dir, `${name}.db`)}`;
  const kr = await openKeyring(uri);
  const models: KeyRecord[] = [];
  for (const [i, type] of (['aes256', 'ec-p256', 'ed25519', 'secp256k1'] as const).entries()) {
    await kr.create(`model-${i}`, { type });
    models.push(await kr.store.get(`model-${i}`));
  }
  const recs = Array.from({ length: n }, (_, i) => ({ ...models[i % models.length]!, name: `key-${i}` }));
  await kr.store.putMany(recs);
  await kr.close();
  return { uri, secrets: models.map((m) => Buffer.from(m.versions[0]!.clear!, 'base64')) };
}

/** run a big-batch migration and kill -9 it while its temp files exist; true when caught in the act */
async function killWhileWriting(from: string, to: string, targetDir: string): Promise<boolean> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/fixtures/migrate-big-batch.ts'), from, to], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let caught = false;
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  let done = false;
  void exited.then(() => (done = true));
  while (!done) {
    if (temps(targetDir).length > 20) {
      child.kill('SIGKILL');
      caught = true;
      break;
    }
    await new Promise((r) => setImmediate(r));
  }
  await exited;
  return caught;
}

/** every file under `d` (and the journal files beside it) that contains one of the secrets */
function filesHolding(d: string, secrets: Buffer[]): string[] {
  const out: string[] = [];
  const files = [...readdirSync(d).map((f) => join(d, f)), ...readdirSync(dirname(d)).map((f) => join(dirname(d), f))];
  for (const f of files) {
    if (!statSync(f, { throwIfNoEntry: false })?.isFile() || f.endsWith('.db') || f.endsWith('.db-wal')) continue;
    const body = readFileSync(f);
    for (const s of secrets)
      if (body.includes(s) || body.includes(Buffer.from(s.toString('base64'))) || body.includes(Buffer.from(s.toString('hex'))))
        out.push(f);
  }
  return out;
}

test('kill -9 mid-migration into fs: doctor reports the temp files, the resumed migration removes them', async () => {
  const { uri } = await source('clear-src', 3000);
  const target = join(dir, 'clear-dst');
  let caught = false;
  for (let t = 0; t < 5 && !caught; t++) caught = await killWhileWriting(uri, `fs:${target}`, target);
  assert.ok(caught, 'the migration was killed while its temp files existed');
  const left = temps(target);
  assert.ok(left.length > 0);
  // what they hold: whole clear key records (why they must go). A temp file the kill caught between its
  // creation and its write is empty or cut short: the others are whole
  const whole = left.flatMap((f) => {
    try {
      return [JSON.parse(readFileSync(join(target, f), 'utf8')) as KeyRecord];
    } catch {
      return [];
    }
  });
  assert.ok(whole.length > 0, `${left.length} temp files, none whole`);
  assert.ok(whole[0]!.versions[0]!.clear !== undefined);
  const doc = kpIn(dir, ['doctor', `fs:${target}`, '--json']);
  assert.equal(doc.code, 1, doc.stdout);
  const check = (JSON.parse(doc.stdout) as { checks: { check: string; status: string; detail: string }[] }).checks.find(
    (c) => c.check === 'temp files',
  );
  assert.equal(check?.status, 'problem');
  assert.match(check!.detail, new RegExp(`^${left.length} temp file`));
  const r = await migrate({ from: uri, to: `fs:${target}` });
  assert.deepEqual([r.failed, r.conflicts], [[], []]);
  assert.deepEqual(temps(target), []);
  assert.equal(readdirSync(target).filter((f) => f.endsWith('.key')).length, 3004, 'every key and the four models');
  const again = kpIn(dir, ['doctor', `fs:${target}`, '--json']);
  assert.equal(
    (JSON.parse(again.stdout) as { checks: { check: string }[] }).checks.find((c) => c.check === 'temp files'),
    undefined,
  );
});

test('kill -9 mid-migration into an envelope fs: store: no file, temporary or not, holds a clear secret', async () => {
  const { uri, secrets } = await source('env-src', 3000);
  const target = join(dir, 'env-dst');
  const yaml = join(dir, 'env-dst.yaml');
  writeFileSync(yaml, `store: fs:${target}\nenvelope:\n  wrapper: local:${join(dir, 'env-wrapper.key')}\n`);
  let caught = false;
  for (let t = 0; t < 5 && !caught; t++) caught = await killWhileWriting(uri, yaml, target);
  assert.ok(caught, 'the migration was killed while its temp files existed');
  assert.ok(temps(target).length > 0);
  assert.deepEqual(filesHolding(target, secrets), []);
  const r = await migrate({ from: uri, to: yaml });
  assert.deepEqual([r.failed, r.conflicts], [[], []]);
  assert.deepEqual(temps(target), []);
  assert.deepEqual(filesHolding(target, secrets), []);
});

test("stale temps are removed before a store's first write; a live writer's temp and reads leave everything alone", async () => {
  const d = join(dir, 'fab');
  const store = await openRecordStore(`fs:${d}`);
  await store.setMeta('x', '1');
  await store.close();
  // a temp of a process that has exited, one from before temp names carried a pid (old), and one of a live process
  const dead = spawnSync(process.execPath, ['-e', 'process.pid']).pid!;
  const live = spawn('sleep', ['60']);
  try {
    writeFileSync(join(d, `.tmp-p${dead}.0123456789ab.key-1.key`), '{"clear":"dead writer"}');
    writeFileSync(join(d, '.tmp-key-2.key-a1b2c3d4e5f6'), '{"clear":"old format"}');
    utimesSync(join(d, '.tmp-key-2.key-a1b2c3d4e5f6'), new Date(Date.now() - 120_000), new Date(Date.now() - 120_000));
    writeFileSync(join(d, `.tmp-p${live.pid}.0123456789ab.key-3.key`), '{"clear":"in flight"}');
    const s2 = await openRecordStore(`fs:${d}`);
    assert.deepEqual(s2.staleFiles!().length, 2);
    await s2.list();
    await s2.getMeta('x');
    assert.equal(temps(d).length, 3, 'reads remove nothing');
    await s2.setMeta('y', '2');
    assert.deepEqual(temps(d), [`.tmp-p${live.pid}.0123456789ab.key-3.key`]);
    await s2.close();
  } finally {
    live.kill();
  }
});
