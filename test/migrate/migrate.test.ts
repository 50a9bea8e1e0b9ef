import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { openKeyring } from '../../src/keys/open.js';
import { migrate } from '../../src/migrate/index.js';
import { protectEnable } from '../../src/keys/protect.js';
import { isKeyportError } from '../../src/errors.js';
import type { StoreKeyring } from '../../src/keys/keyring.js';
import type { KeyType } from '../../src/crypto/keytypes.js';
import { ROOT } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';

const dir = tempDir();
let n = 0;
const sqlite = () => `sqlite:${join(dir, `s${n++}.db`)}`;
const fsdir = () => `fs:${join(dir, `f${n++}`)}`;

async function names(uri: string): Promise<string[]> {
  const kr = await openKeyring(uri);
  try {
    return (await kr.list('*')).names;
  } finally {
    await kr.close();
  }
}

/** name → fingerprints of every version, and the exported secrets */
async function snapshot(uri: string, kms: string[] = [], pattern = '*'): Promise<Map<string, string>> {
  const kr = await openKeyring(uri, { kms });
  const out = new Map<string, string>();
  try {
    for (const name of (await kr.list(pattern)).names) {
      const secrets = (await kr.export(name)).map((e) => `${e.version}:${e.secret.toString('base64')}`).join('|');
      const info = await kr.describe(name);
      out.set(name, `${info.type}/${info.purpose}/${info.usage}/${secrets}`);
    }
  } finally {
    await kr.close();
  }
  return out;
}

async function fill(
  uri: string,
  names: string[],
  types: readonly KeyType[] = ['aes256', 'ec-p256', 'ed25519', 'rsa-2048', 'secp256k1', 'ec-p384'],
) {
  const kr = await openKeyring(uri);
  try {
    for (const [i, name] of names.entries()) await kr.create(name, { type: types[i % types.length] });
  } finally {
    await kr.close();
  }
}

describe('migrate', () => {
  test('all keys, every type, all versions, between sqlite and fs both ways; verified; re-run changes nothing', async () => {
    const a = sqlite();
    const b = fsdir();
    const c = sqlite();
    const ks = ['alpha', 'Beta', 'beta', 'b_1', 'b-1', 'b0', 'Z', '_x', 'x-y-z', '0', 'A9'];
    await fill(a, ks);
    const kr = await openKeyring(a);
    await kr.rotate('alpha');
    await kr.rotate('beta');
    await kr.close();
    const r = await migrate({ from: a, to: b });
    assert.equal(r.migrated, ks.length);
    assert.equal(r.verified, ks.length);
    assert.deepEqual([r.conflicts, r.failed], [[], []]);
    assert.deepEqual(await snapshot(b), await snapshot(a));
    const r2 = await migrate({ from: b, to: c });
    assert.equal(r2.verified, ks.length);
    assert.deepEqual(await snapshot(c), await snapshot(a));
    const again = await migrate({ from: a, to: b });
    assert.equal(again.migrated, 0);
    assert.equal(again.skipped, ks.length);
    assert.deepEqual(again.conflicts, []);
    assert.deepEqual(await snapshot(b), await snapshot(a));
  });

  test('more than 1024 keys with awkward names, patterns and a single name', async () => {
    const a = sqlite();
    const many: string[] = [];
    for (let i = 0; i < 1100; i++)
      many.push(`${['a', 'A', '_', '-x', 'z'][i % 5]!.replace(/^-/, 'm-')}${i.toString(36)}${i % 3 ? '_' : '-'}${i}`);
    const kr = await openKeyring(a);
    for (const name of many) await kr.create(name);
    await kr.close();
    const b = sqlite();
    const r = await migrate({ from: a, to: b, concurrency: 8 });
    assert.equal(r.migrated, 1100);
    assert.deepEqual((await names(b)).sort(), [...many].sort());
    const c = fsdir();
    const rp = await migrate({ from: a, to: c, pattern: 'A*' });
    assert.equal(rp.migrated, many.filter((x) => x.startsWith('A')).length);
    assert.ok((await names(c)).every((x) => x.startsWith('A')));
    const d = sqlite();
    const one = await migrate({ from: a, to: d, pattern: many[7]! });
    assert.equal(one.migrated, 1);
    await assert.rejects(migrate({ from: a, to: d, pattern: 'nosuchkey' }), (e) => isKeyportError(e, 'NOT_FOUND'));
    await assert.rejects(migrate({ from: a, to: d, pattern: 'a[' }), (e) => isKeyportError(e, 'USAGE'));
    await assert.rejects(migrate({ from: a, to: a }), (e) => isKeyportError(e, 'USAGE'));
  });

  test('conflicts: default writes nothing, --merge skips same material and keeps different, --force replaces', async () => {
    const a = sqlite();
    const b = sqlite();
    await fill(a, ['same', 'differs', 'new1', 'new2']);
    // the target has 'same' with the same material, 'differs' with other material
    const src = await openKeyring(a);
    const dst = await openKeyring(b);
    await dst.import('same', (await src.export('same'))[0]!.secret);
    await dst.create('differs', { type: 'ec-p256' });
    const theirs = (await dst.describe('differs')).fingerprint;
    await src.close();
    await dst.close();
    const r = await migrate({ from: a, to: b });
    assert.deepEqual(r.conflicts.sort(), ['differs', 'same']);
    assert.equal(r.migrated, 0);
    assert.deepEqual((await names(b)).sort(), ['differs', 'same']);
    const m = await migrate({ from: a, to: b, mode: 'merge' });
    assert.deepEqual(m.conflicts, ['differs']);
    assert.equal(m.skipped, 1);
    assert.equal(m.migrated, 2);
    const kb = await openKeyring(b);
    assert.equal((await kb.describe('differs')).fingerprint, theirs);
    await kb.close();
    const f = await migrate({ from: a, to: b, mode: 'force' });
    assert.equal(f.migrated, 1);
    assert.deepEqual(f.conflicts, []);
    assert.deepEqual(await snapshot(b), await snapshot(a));
  });

  test('dry run writes nothing and shows each decision', async () => {
    const a = sqlite();
    const b = fsdir();
    await fill(a, ['d1', 'd2']);
    const r = await migrate({ from: a, to: b, dryRun: true });
    assert.equal(r.planned, 2);
    assert.deepEqual(
      r.plan!.map((e) => [e.n, e.a, e.s]),
      [
        ['d1', 'migrate', 'copy'],
        ['d2', 'migrate', 'copy'],
      ],
    );
    assert.deepEqual(await names(b), []);
  });

  test('clear → envelope target, envelope → clear, and across different wrappers', async () => {
    const a = sqlite();
    await fill(a, ['e1', 'e2', 'e3']);
    const b = sqlite();
    const kb = await openKeyring(b);
    await protectEnable(kb, `local:${join(dir, 'wb.key')}`);
    await kb.close();
    // the stores keep wrapper references; the wrappers are reached through configured connections
    const kms = [`local:${join(dir, 'wb.key')}`, `local:${join(dir, 'wc.key')}`];
    const r = await migrate({ from: a, to: b, kms });
    assert.equal(r.verified, 3);
    const kb2 = await openKeyring(b, { kms });
    for (const x of ['e1', 'e2', 'e3']) assert.equal((await kb2.describe(x)).protection, 'sealed');
    await kb2.close();
    assert.deepEqual(await snapshot(b, kms), await snapshot(a));
    const c = fsdir();
    const kc = await openKeyring(c);
    await protectEnable(kc, `local:${join(dir, 'wc.key')}`);
    await kc.close();
    assert.equal((await migrate({ from: b, to: c, kms })).verified, 3);
    const d = sqlite();
    assert.equal((await migrate({ from: c, to: d, allowClear: true, kms })).verified, 3);
    assert.deepEqual(await snapshot(d), await snapshot(a));
  });

  test('kill -9 at random moments: the same command afterwards leaves the target exactly equal to the source', async () => {
    const trials = Number(process.env.KEYPORT_MIGRATE_CRASH_TRIALS ?? 10);
    const pairs: [() => string, () => string][] = [
      [sqlite, fsdir],
      [fsdir, sqlite],
      [sqlite, sqlite],
    ];
    for (let t = 0; t < trials; t++) {
      const [mkA, mkB] = pairs[t % pairs.length]!;
      const a = mkA();
      const b = mkB();
      const ks = Array.from({ length: 120 }, (_, i) => `key-${i}`);
      await fill(a, ks, ['aes256', 'ec-p256', 'ed25519']);
      const mode = (['default', 'merge', 'force'] as const)[t % 3]!;
      const killAfter = Math.floor(Math.random() * 600);
      await new Promise<void>((resolve) => {
        const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/fixtures/migrate-worker.ts'), a, b, mode, '4'], {
          cwd: ROOT,
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        child.stdout.once('data', () => setTimeout(() => child.kill('SIGKILL'), killAfter));
        child.on('exit', () => resolve());
      });
      const r = await migrate({ from: a, to: b, mode });
      assert.deepEqual([r.failed, r.conflicts], [[], []], `trial ${t} (${mode}, killed after ${killAfter}ms): ${JSON.stringify(r.errors)}`);
      assert.deepEqual(await snapshot(b), await snapshot(a), `trial ${t}`);
      const again = await migrate({ from: a, to: b, mode });
      assert.equal(again.migrated, 0, `trial ${t}: a re-run changes nothing`);
    }
  });

  test('--json report from the CLI has the contract fields', async () => {
    const a = sqlite();
    const b = sqlite();
    await fill(a, ['j1', 'j2']);
    const run = (...more: string[]) =>
      new Promise<string>((resolve) => {
        const c = spawn(process.execPath, [join(ROOT, 'bin/keyport.js'), 'migrate', '--from', a, '--to', b, '--json', ...more], {
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        let s = '';
        c.stdout.on('data', (d) => (s += d));
        c.on('exit', () => resolve(s));
      });
    const journals = () => readdirSync(dir).filter((f) => f.startsWith('.keyport-migrate-'));
    const before = journals();
    const j = JSON.parse(await run()) as Record<string, unknown>;
    for (const f of ['migrated', 'skipped', 'conflicts', 'failed', 'verified']) assert.ok(f in j, f);
    assert.equal(j['migrated'], 2);
    assert.equal(j['verified'], 2);
    assert.equal(j['journal'], undefined, 'a run that finished cleanly removes its journal');
    assert.deepEqual(journals(), before, 'no journal files left beside the target');
    // --keep-journal keeps it
    await fill(a, ['j3']);
    const k = JSON.parse(await run('--keep-journal', '--merge')) as Record<string, unknown>;
    assert.equal(k['migrated'], 1);
    assert.ok(readFileSync(String(k['journal'])).length > 0, 'the journal is kept');
  });
});

export type { StoreKeyring };
