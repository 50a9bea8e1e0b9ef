/**
 * The default catalog of an external-mode KMS (src/keys/target.ts defaultCatalog): one per KMS connection,
 * however the connection is written; two for one relative path used from two directories; catalogs of
 * keyport 0.1 (named by a hash of the URI as written) still found.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { parseTarget } from '../../src/keys/target.js';
import { ROOT } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';

const dir = tempDir();
process.env.KEYPORT_HOME = join(dir, 'home');

function catalogOf(uri: string, base = dir): string {
  const t = parseTarget(uri, { base });
  assert.equal(t.kind, 'kms');
  return t.kind === 'kms' ? t.catalog.toString() : '';
}

test('one catalog per KMS connection, however it is written', () => {
  const c = catalogOf('local:./kms');
  assert.equal(catalogOf('local:./kms/'), c);
  assert.equal(catalogOf(`local:${join(dir, 'kms')}`), c);
  assert.equal(catalogOf('local:kms', dir), c);
  const aws = catalogOf('awskms:region=eu-west-1;endpoint=http://127.0.0.1:1');
  // settings that only tune the connection, and credentials, do not make another KMS
  assert.equal(catalogOf('awskms:endpoint=http://127.0.0.1:1;region=eu-west-1;timeout-ms=2000;quotas=learn;import=none'), aws);
  assert.equal(
    catalogOf('awskms:region=eu-west-1;endpoint=http://127.0.0.1:1;access-key-id=A;secret-access-key=S'),
    catalogOf('awskms:region=eu-west-1;endpoint=http://127.0.0.1:1;access-key-id=A;secret-access-key=T'),
  );
  assert.notEqual(catalogOf('awskms:region=eu-west-2;endpoint=http://127.0.0.1:1'), aws);
  assert.notEqual(catalogOf('awskms:region=eu-west-1;endpoint=http://127.0.0.1:2'), aws);
});

test('one relative path from two directories: two KMSs, two catalogs', () => {
  assert.notEqual(catalogOf('local:./kms', join(dir, 'a')), catalogOf('local:./kms', join(dir, 'b')));
});

test('a catalog named the 0.1 way (hash of the URI as written) is still found; the new name wins once it exists', () => {
  const uri = 'local:./legacy-kms';
  const catalogs = join(dir, 'home', 'catalogs');
  mkdirSync(catalogs, { recursive: true });
  const legacy = join(catalogs, `${createHash('sha256').update(uri).digest('hex').slice(0, 16)}.db`);
  const fresh = catalogOf(uri);
  writeFileSync(legacy, '');
  assert.equal(catalogOf(uri), `sqlite:${legacy}`);
  writeFileSync(fresh.replace(/^sqlite:/, ''), '');
  assert.equal(catalogOf(uri), fresh);
});

test('CLI: a key made through local:./d is listed through local:./d/ and the absolute path (one catalog)', () => {
  const kp = (args: string[]) =>
    spawnSync(process.execPath, [join(ROOT, 'bin', 'keyport.js'), ...args], {
      cwd: dir,
      env: { ...process.env, KEYPORT_HOME: join(dir, 'home-cli'), KEYPORT_STORE: '', KEYPORT_SERVER: '', KES_SERVER: '' },
      encoding: 'utf8',
    });
  const made = kp(['key', 'create', 'one', '--type', 'ec-p256', '--store', 'local:./d']);
  assert.equal(made.status, 0, made.stderr);
  for (const store of ['local:./d/', `local:${join(dir, 'd')}`]) {
    const ls = kp(['key', 'ls', '--store', store, '--json']);
    assert.equal(ls.status, 0, ls.stderr);
    assert.match(ls.stdout, /"one"/, store);
  }
});
