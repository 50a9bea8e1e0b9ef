/**
 * Ctrl-C during `keyport protect enable` (the real CLI): the first SIGINT stops it cleanly — exit 130, one
 * line on stderr, stdout (or --json) says it was interrupted and what was done — every key stays whole and
 * readable, and the same command finishes the job. On an fs: store the keys done are kept (each record is
 * written on its own); on SQLite, where one transaction writes them all, nothing changes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { openKeyring } from '../../src/keys/open.js';
import { ROOT } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';

const dir = tempDir();
const BIN = join(ROOT, 'bin', 'keyport.js');
const ENV = { ...process.env, KEYPORT_STORE: '', KES_SERVER: '', KEYPORT_SERVER: '', KEYPORT_KMS: '', KEYPORT_HOME: join(dir, 'home') };
const KEYS = 3000;

async function fill(uri: string): Promise<Map<string, string>> {
  const kr = await openKeyring(uri);
  const out = new Map<string, string>();
  try {
    for (let i = 0; i < KEYS; i++) {
      const name = `k${String(i).padStart(5, '0')}`;
      await kr.create(name);
      out.set(name, (await kr.export(name))[0]!.secret.toString('base64'));
    }
  } finally {
    await kr.close();
  }
  return out;
}

/** every key is there and holds its secret; how many are sealed */
async function check(uri: string, secrets: Map<string, string>, wrapper: string): Promise<number> {
  const kr = await openKeyring(uri, { kms: [wrapper] });
  let sealed = 0;
  try {
    const names = (await kr.list('*')).names;
    assert.equal(names.length, secrets.size);
    for (const name of names) {
      assert.equal((await kr.export(name))[0]!.secret.toString('base64'), secrets.get(name), `key '${name}' is whole`);
      if ((await kr.describe(name)).protection === 'sealed') sealed++;
    }
  } finally {
    await kr.close();
  }
  return sealed;
}

/** the CLI running in the background, its output collected */
function start(args: string[]) {
  const child = spawn(process.execPath, [BIN, ...args], { env: ENV, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = once(child, 'exit') as Promise<[number | null]>;
  let gone = false;
  void exited.then(() => (gone = true));
  return { child, exited, gone: () => gone, out: () => stdout, err: () => stderr };
}

test('fs: Ctrl-C during protect enable: exit 130, the keys done stay sealed, every key whole; the same command finishes', async () => {
  const storeDir = join(dir, 'fs');
  const uri = `fs:${storeDir}`;
  const secrets = await fill(uri);
  const wrapper = `local:${join(dir, 'w.key')}`;
  const args = ['protect', 'enable', '--wrapper', wrapper, '--store', uri];
  const run = start(args);
  // under way: the first key (names go in order) is sealed in its own file
  const first = join(storeDir, 'k00000.key');
  const sealedFile = () => {
    try {
      return readFileSync(first, 'utf8').includes('"sealed"');
    } catch {
      return false; // being replaced
    }
  };
  while (!run.gone() && !sealedFile()) await new Promise((r) => setTimeout(r, 5));
  assert.ok(!run.gone(), `protect enable finished before it was seen under way: ${run.err()}`);
  run.child.kill('SIGINT');
  const [code] = await run.exited;
  assert.equal(code, 130, run.err());
  assert.match(
    run.err(),
    /^keyport protect enable: interrupted: stopping after the keys in flight; run the same command again to finish\n$/,
  );
  assert.match(
    run.out(),
    /^interrupted: \d+ key\(s\) rewritten, the rest not yet; the store still says clear; run the same command again to finish\n$/,
  );
  const sealed = await check(uri, secrets, wrapper);
  assert.ok(sealed > 0 && sealed < KEYS, `part of the store sealed (${sealed})`);
  const again = spawnSync(process.execPath, [BIN, ...args, '--json'], { env: ENV, cwd: dir });
  assert.equal(again.status, 0, again.stderr.toString());
  const r = JSON.parse(again.stdout.toString()) as Record<string, unknown>;
  assert.deepEqual(
    [r['protection'], r['changed'], (r['changed'] as number) + (r['unchanged'] as number)],
    ['envelope', KEYS - sealed, KEYS],
  );
  assert.equal(await check(uri, secrets, wrapper), KEYS);
});

test('sqlite: Ctrl-C during protect enable: exit 130, --json says interrupted, nothing changed; the same command finishes', async (t) => {
  const uri = `sqlite:${join(dir, 's.db')}`;
  const secrets = await fill(uri);
  const wrapper = `local:${join(dir, 'w2.key')}`;
  const args = ['protect', 'enable', '--wrapper', wrapper, '--store', uri, '--json'];
  const run = start(args);
  // under way: the wrapper key exists (it is made before the first key is sealed)
  while (!run.gone() && !readdirSync(dir).includes('w2.key')) await new Promise((r) => setTimeout(r, 2));
  run.child.kill('SIGINT');
  const [code] = await run.exited;
  if (code === 0) {
    // finished before the signal arrived (a fast machine): reported as skipped, never as passed
    t.skip('protect enable finished before the signal arrived');
    return;
  }
  assert.equal(code, 130, run.err());
  const r = JSON.parse(run.out()) as Record<string, unknown>;
  assert.deepEqual([r['interrupted'], r['changed'], r['protection']], [true, 0, 'clear']);
  assert.equal(await check(uri, secrets, wrapper), 0, 'nothing sealed: one transaction was to write them all');
  const again = spawnSync(process.execPath, [BIN, ...args], { env: ENV, cwd: dir });
  assert.equal(again.status, 0, again.stderr.toString());
  assert.equal(await check(uri, secrets, wrapper), KEYS);
});
