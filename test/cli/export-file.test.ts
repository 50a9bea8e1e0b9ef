/** `key export --out FILE` (and decrypt --out) writes secrets to a new 0600 file and refuses symlinks (issue 9 item 12). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { chmodSync, lstatSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tempDir } from '../support/tmp.js';
import { isOneLine, kpIn } from '../support/kp.js';

const dir = tempDir();
const S = ['--store', `sqlite:${join(dir, 'k.db')}`];
const mode = (p: string) => statSync(p).mode & 0o777;

test('export --out: an existing 0644 file becomes a new 0600 file holding the key', () => {
  process.umask(0o022);
  assert.equal(kpIn(dir, ['key', 'create', 'k', ...S]).code, 0);
  assert.equal(kpIn(dir, ['key', 'create', 'ec', '--type', 'ec-p256', ...S]).code, 0);
  const out = join(dir, 'exported.key');
  writeFileSync(out, 'old public content, readable by all');
  chmodSync(out, 0o644);
  const r = kpIn(dir, ['key', 'export', 'k', '--out', out, ...S]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(mode(out), 0o600);
  assert.equal(readFileSync(out).length, 32);
  // a new file too, PEM, and a decrypted plaintext
  const pem = join(dir, 'new.pem');
  assert.equal(kpIn(dir, ['key', 'export', 'ec', '--pem', '--out', pem, ...S]).code, 0);
  assert.equal(mode(pem), 0o600);
  assert.match(readFileSync(pem, 'utf8'), /BEGIN PRIVATE KEY/);
  writeFileSync(join(dir, 'msg'), 'secret text');
  assert.equal(kpIn(dir, ['key', 'encrypt', 'k', '--in', 'msg', '--out', 'msg.enc', ...S]).code, 0);
  writeFileSync(join(dir, 'plain'), 'x');
  chmodSync(join(dir, 'plain'), 0o666);
  assert.equal(kpIn(dir, ['key', 'decrypt', 'k', '--in', 'msg.enc', '--out', 'plain', ...S]).code, 0);
  assert.equal(mode(join(dir, 'plain')), 0o600);
  assert.equal(readFileSync(join(dir, 'plain'), 'utf8'), 'secret text');
  // no temp file left beside them
  assert.deepEqual(
    readdirSync(dir).filter((f) => f.includes('keyport-')),
    [],
  );
});

test('export --out: a symlink (dangling or not) or a directory is refused, its target untouched', () => {
  const victim = join(dir, 'victim.txt');
  writeFileSync(victim, 'do not overwrite');
  chmodSync(victim, 0o644);
  symlinkSync(victim, join(dir, 'link.key'));
  symlinkSync(join(dir, 'nowhere'), join(dir, 'dangling.key'));
  mkdirSync(join(dir, 'adir'));
  for (const out of ['link.key', 'dangling.key', 'adir']) {
    const r = kpIn(dir, ['key', 'export', 'k', '--out', out, ...S]);
    assert.equal(r.code, 2, `${out}: ${r.stderr}`);
    assert.ok(isOneLine(r.stderr), r.stderr);
  }
  assert.equal(readFileSync(victim, 'utf8'), 'do not overwrite');
  assert.equal(mode(victim), 0o644);
  assert.ok(lstatSync(join(dir, 'link.key')).isSymbolicLink());
  assert.throws(() => lstatSync(join(dir, 'nowhere')));
});
