/**
 * Protection is never dropped silently (issue 9 item 5): migrating from an envelope-protected store
 * into a clear one wrote every private key in clear with no word. It now needs --allow-clear and says
 * what it did; the protected way (a YAML target with envelope:) needs nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { openKeyring } from '../../src/keys/open.js';
import { migrate } from '../../src/migrate/index.js';
import { protectEnable } from '../../src/keys/protect.js';
import { isKeyportError } from '../../src/errors.js';
import { tempDir } from '../support/tmp.js';
import { isOneLine, kpIn } from '../support/kp.js';

const dir = tempDir();
/** the source's wrapper connection (the store keeps only its reference) */
const w = (name: string) => `local:${join(dir, `${name}-wrapper.key`)}`;

async function protectedSource(name: string): Promise<string> {
  const src = `sqlite:${join(dir, `${name}.db`)}`;
  const kr = await openKeyring(src);
  await kr.create('a-key');
  await kr.create('b-key', { type: 'ec-p256' });
  await protectEnable(kr, w(name));
  await kr.close();
  return src;
}

test('library: envelope → clear is refused (USAGE) without allowClear, nothing written; with it the report says so', async () => {
  const src = await protectedSource('lib');
  const dst = `sqlite:${join(dir, 'lib-clear.db')}`;
  await assert.rejects(
    migrate({ from: src, to: dst, kms: [w('lib')] }),
    (e) => isKeyportError(e, 'USAGE') && /--allow-clear/.test(e.message),
  );
  await assert.rejects(migrate({ from: src, to: dst, dryRun: true, kms: [w('lib')] }), (e) => isKeyportError(e, 'USAGE'));
  const kr = await openKeyring(dst);
  assert.deepEqual((await kr.list()).names, []);
  await kr.close();
  const r = await migrate({ from: src, to: dst, allowClear: true, kms: [w('lib')] });
  assert.equal(r.migrated, 2);
  assert.equal(r.clearTarget?.sourceProtection, 'envelope');
  assert.doesNotMatch(JSON.stringify(r), /wrapper\.key.*secret/);
  const back = await openKeyring(dst);
  assert.equal((await back.describe('b-key')).protection, 'clear');
  await back.close();
});

test('CLI: refused in one line (exit 2); --allow-clear migrates and says on stderr that the keys are now clear; the protected way needs no flag', async () => {
  const src = await protectedSource('cli');
  const r = kpIn(dir, ['migrate', '--kms', w('cli'), '--from', src, '--to', `fs:${join(dir, 'cli-clear')}`]);
  assert.equal(r.code, 2, r.stderr);
  assert.ok(isOneLine(r.stderr), r.stderr);
  assert.match(r.stderr, /in the clear.*--allow-clear/);
  const ok = kpIn(dir, ['migrate', '--kms', w('cli'), '--from', src, '--to', `fs:${join(dir, 'cli-clear')}`, '--allow-clear']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stderr, /--allow-clear: 2 key\(s\) were written in the clear at fs:.*envelope under local:/);
  const json = kpIn(dir, [
    'migrate',
    '--kms',
    w('cli'),
    '--from',
    src,
    '--to',
    `sqlite:${join(dir, 'cli-clear.db')}`,
    '--allow-clear',
    '--json',
  ]);
  assert.equal(json.code, 0, json.stderr);
  assert.equal(JSON.parse(json.stdout).clearTarget.sourceProtection, 'envelope');
  // the README tour's way: a YAML target that protects what it receives
  writeFileSync(join(dir, 'copy.yaml'), `store: fs:${join(dir, 'copy')}\nenvelope:\n  wrapper: local:${join(dir, 'copy-wrapper.key')}\n`);
  const prot = kpIn(dir, ['migrate', '--kms', w('cli'), '--from', src, '--to', 'copy.yaml', '--json']);
  assert.equal(prot.code, 0, prot.stderr);
  assert.equal(JSON.parse(prot.stdout).migrated, 2);
  assert.equal(JSON.parse(prot.stdout).clearTarget, undefined);
  for (const f of ['a-key.key', 'b-key.key']) {
    const rec = JSON.parse(readFileSync(join(dir, 'copy', f), 'utf8')) as { versions: { clear?: string; sealed?: unknown }[] };
    assert.ok(
      rec.versions.every((v) => v.clear === undefined && v.sealed),
      `${f} is sealed at the target`,
    );
  }
  assert.ok(existsSync(join(dir, 'copy-wrapper.key')));
});
