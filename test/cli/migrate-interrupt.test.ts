/**
 * Ctrl-C during `keyport migrate` (the real CLI, sqlite → sqlite, a few thousand keys): the first SIGINT
 * stops the run cleanly (exit 130, one line on stderr, the usual summary marked interrupted, --json real
 * JSON with `interrupted: true`), every key at the target is whole and the same as the source's, and the
 * same command resumes and finishes the job; a second signal exits at once with 130 and still leaves no
 * half-written key behind. Progress is watched in the journal (a batch marked done), never guessed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { openKeyring } from '../../src/keys/open.js';
import { migrate } from '../../src/migrate/index.js';
import { ROOT } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';

const dir = tempDir();
const BIN = join(ROOT, 'bin', 'keyport.js');
// external-mode catalogs (a KMS target's records) live under KEYPORT_HOME: this file's own, here and in the CLI
process.env.KEYPORT_HOME = join(dir, 'home');
const ENV = { ...process.env, KEYPORT_STORE: '', KES_SERVER: '', KEYPORT_SERVER: '', KEYPORT_KMS: '' };
const KEYS = 3000;
const source = `sqlite:${join(dir, 'source.db')}`;

/** the source: aes256 keys and RSA keys (one material under many names: RSA signatures make verification take a while) */
const filled = (async () => {
  const der = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'der', type: 'pkcs8' });
  const kr = await openKeyring(source);
  try {
    for (let i = 0; i < KEYS; i++) {
      const name = `k${String(i).padStart(5, '0')}`;
      if (i % 2) await kr.import(name, der, { type: 'rsa-2048' });
      else await kr.create(name);
    }
  } finally {
    await kr.close();
  }
})();

/** name → type, purpose, usage and every version's exported secret */
async function snapshot(uri: string): Promise<Map<string, string>> {
  const kr = await openKeyring(uri);
  const out = new Map<string, string>();
  try {
    for (const name of (await kr.list('*')).names) {
      const secrets = (await kr.export(name)).map((e) => `${e.version}:${e.secret.toString('base64')}`).join('|');
      const info = await kr.describe(name);
      out.set(name, `${info.type}/${info.purpose}/${info.usage}/${info.fingerprint}/${secrets}`);
    }
  } finally {
    await kr.close();
  }
  return out;
}

/** every key at the target is whole and holds the source's material (the target may hold fewer) */
async function wholeSubset(target: string, src: Map<string, string>): Promise<number> {
  const dst = await snapshot(target);
  for (const [name, v] of dst) assert.equal(v, src.get(name), `target key '${name}' is the source's key, whole`);
  return dst.size;
}

/** start the migration; resolves once `started()` says progress has started (by default: the journal marks a batch done) */
async function startAndWaitForProgress(
  args: string[],
  journal: string,
  started = () => existsSync(journal) && readFileSync(journal, 'utf8').includes('"t":"batch"'),
) {
  const child = spawn(process.execPath, [BIN, 'migrate', ...args], { env: ENV, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  let gone = false;
  void exited.then(() => (gone = true));
  while (!started()) {
    assert.ok(!gone, `the migration ended before it was seen under way: ${stderr}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.ok(!gone, 'the migration is still running');
  return { child, exited, out: () => stdout, err: () => stderr };
}

function rerun(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, 'migrate', ...args], { env: ENV, cwd: dir });
  return { code: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

test('Ctrl-C stops the run cleanly (exit 130, whole keys, journal says where); the same command resumes it', async () => {
  await filled;
  const src = await snapshot(source);
  assert.equal(src.size, KEYS);
  const target = `sqlite:${join(dir, 'target1.db')}`;
  const journal = join(dir, 'j1.journal');
  const args = ['--from', source, '--to', target, '--journal', journal, '--concurrency', '4'];
  const run = await startAndWaitForProgress(args, journal);
  run.child.kill('SIGINT');
  const [code, signal] = await run.exited;
  assert.equal(signal, null, `exited by itself, not killed by the signal: ${run.err()}`);
  assert.equal(code, 130, run.err());
  assert.match(run.err(), /^keyport migrate: interrupted: stopping after the keys in flight; run the same command again to resume$/m);
  assert.match(run.out(), /^interrupted: \d+ migrated, \d+ verified, 0 skipped .*run the same command again to resume$/m);
  const migrated = Number(/^interrupted: (\d+) migrated/m.exec(run.out())![1]);
  assert.ok(migrated >= 1024 && migrated < KEYS, `some but not all keys migrated: ${migrated}`);
  assert.doesNotMatch(run.err(), /^failed /m, 'keys cancelled by the interrupt are not reported as failures');
  // the journal: batches done so far, where it stopped, and not finished
  const events = readFileSync(journal, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { t: string; i?: number; batch?: number });
  const stopped = events.find((e) => e.t === 'interrupted');
  assert.ok(stopped, 'the journal says the run was interrupted');
  assert.ok(!events.some((e) => e.t === 'finished'));
  assert.deepEqual(
    events.filter((e) => e.t === 'batch').map((e) => e.i),
    [...Array(stopped.batch).keys()],
    'every batch before the stop is done',
  );
  // what is at the target is whole and the source's: every batch marked done, perhaps part of the one in flight
  const there = await wholeSubset(target, src);
  assert.ok(there >= stopped.batch! * 1024 && there < KEYS, `${there} keys at the target`);

  // the same command resumes: every source key at the target, verified, nothing failed
  const again = rerun([...args, '--json']);
  assert.equal(again.code, 0, again.stderr);
  const report = JSON.parse(again.stdout) as Record<string, unknown>;
  assert.equal(report['resumed'], true);
  assert.equal(report['interrupted'], false);
  assert.deepEqual([report['failed'], report['conflicts']], [[], []]);
  assert.equal(report['verified'], KEYS, 'every key verified over both runs');
  assert.deepEqual(await snapshot(target), src, 'the target has exactly the source keys');
  assert.ok(!existsSync(journal), 'the finished run removed its journal');
});

test('--json of an interrupted run is real JSON with interrupted: true; a human re-run says resumed', async () => {
  await filled;
  const target = `sqlite:${join(dir, 'target2.db')}`;
  const journal = join(dir, 'j2.journal');
  const args = ['--from', source, '--to', target, '--journal', journal, '--concurrency', '4'];
  const run = await startAndWaitForProgress([...args, '--json'], journal);
  run.child.kill('SIGTERM');
  const [code] = await run.exited;
  assert.equal(code, 130, run.err());
  assert.match(run.err(), /keyport migrate: interrupted: stopping after the keys in flight/);
  const j = JSON.parse(run.out()) as Record<string, unknown>;
  assert.equal(j['interrupted'], true);
  for (const f of ['migrated', 'skipped', 'conflicts', 'failed', 'verified']) assert.ok(f in j, f);
  assert.deepEqual(j['failed'], []);
  const again = rerun(args);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /^\d+ migrated, \d+ verified, 0 skipped \(resumed\)/m);
  assert.equal((await snapshot(target)).size, KEYS);
});

test('a second signal exits at once with 130: no half-written key, and the same command still finishes the job', async () => {
  await filled;
  const src = await snapshot(source);
  const target = `sqlite:${join(dir, 'target3.db')}`;
  const journal = join(dir, 'j3.journal');
  const args = ['--from', source, '--to', target, '--journal', journal, '--concurrency', '4'];
  const run = await startAndWaitForProgress(args, journal);
  // two signals that arrive together, wherever the run is: stopped, then SIGINT and SIGTERM (two kinds, so
  // the kernel does not merge them into one), then continued
  run.child.kill('SIGSTOP');
  run.child.kill('SIGINT');
  run.child.kill('SIGTERM');
  run.child.kill('SIGCONT');
  const [code, signal] = await run.exited;
  assert.equal(signal, null, run.err());
  assert.equal(code, 130, run.err());
  assert.match(run.err(), /keyport migrate: interrupted: stopping after the keys in flight/);
  // at once: no clean stop came first (no summary, the journal never heard of the interrupt)
  assert.doesNotMatch(run.out(), /migrated/);
  assert.doesNotMatch(readFileSync(journal, 'utf8'), /"t":"interrupted"/);
  await wholeSubset(target, src);
  const again = rerun(args);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /\(resumed\)/);
  assert.deepEqual(await snapshot(target), src);
});

/** a KMS target's records (name → fingerprint) and the key files in the development KMS's directory */
async function kmsTarget(uri: string, kmsDir: string): Promise<{ records: Map<string, string>; files: string[] }> {
  const kr = await openKeyring(uri);
  const records = new Map<string, string>();
  try {
    for (const name of (await kr.list('*')).names) records.set(name, (await kr.describe(name)).fingerprint);
  } finally {
    await kr.close();
  }
  return { records, files: existsSync(kmsDir) ? readdirSync(kmsDir).filter((f) => !f.startsWith('.')) : [] };
}

test('into a KMS: Ctrl-C leaves no imported KMS key without its record, and the same command finishes the job', async () => {
  await filled;
  const kmsDir = join(dir, 'kms1');
  mkdirSync(kmsDir);
  const target = `local:${kmsDir}/`;
  const journal = join(dir, 'jk1.journal');
  // 600 keys (one batch): the development KMS writes each imported key durably, so this takes a while
  const args = ['k00[0-5]*', '--from', source, '--to', target, '--journal', journal, '--concurrency', '4'];
  const run = await startAndWaitForProgress(args, journal, () => existsSync(kmsDir) && readdirSync(kmsDir).length >= 20);
  run.child.kill('SIGINT');
  const [code] = await run.exited;
  assert.equal(code, 130, run.err());
  const srcFp = new Map<string, string>();
  const kr = await openKeyring(source);
  for (const name of (await kr.list('k00[0-5]*')).names) srcFp.set(name, (await kr.describe(name)).fingerprint);
  await kr.close();
  assert.equal(srcFp.size, 600);
  const mid = await kmsTarget(target, kmsDir);
  // the imports in flight finished, and those whose record was not written were deleted again
  assert.equal(mid.files.length, mid.records.size, 'one KMS key per target record: none imported and left behind');
  for (const [name, fp] of mid.records) assert.equal(fp, srcFp.get(name), name);
  const again = rerun([...args, '--json']);
  assert.equal(again.code, 0, again.stderr);
  const report = JSON.parse(again.stdout) as Record<string, unknown>;
  assert.deepEqual([report['failed'], report['interrupted'], report['verified']], [[], false, 600]);
  const end = await kmsTarget(target, kmsDir);
  assert.deepEqual(end.records, srcFp, 'every key at the KMS target, same fingerprints');
  assert.equal(end.files.length, 600, 'one KMS key per key');
});

test('a resumed batch the interrupted run had already written is not imported again: counted, verified, no second KMS key', async () => {
  await filled;
  const kmsDir = join(dir, 'kms2');
  mkdirSync(kmsDir);
  const target = `local:${kmsDir}/`;
  const journal = join(dir, 'jk2.journal');
  const opts = { from: source, to: target, pattern: 'k0000*', journal, keepJournal: true };
  const first = await migrate(opts);
  assert.deepEqual([first.migrated, first.failed], [10, []]);
  // the state an interrupt leaves when it lands after the batch's write, before the batch is marked done
  const lines = readFileSync(journal, 'utf8').trim().split('\n');
  writeFileSync(journal, lines.filter((l) => /"t":"(start|planned)"/.test(l)).join('\n') + '\n');
  const r = await migrate(opts);
  assert.equal(r.resumed, true);
  assert.deepEqual([r.migrated, r.verified, r.failed, r.conflicts], [10, 10, [], []], JSON.stringify(r.errors));
  assert.equal(readdirSync(kmsDir).filter((f) => !f.startsWith('.')).length, 10, 'no second KMS key for a key already there');
});
