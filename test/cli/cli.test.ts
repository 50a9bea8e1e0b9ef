/** The CLI as users and scripts call it (the contract): exit codes 0/1/2, one-line errors, JSON. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { writeFileSync, readFileSync, statSync } from 'node:fs';
import { ROOT } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';

const dir = tempDir();
const BIN = join(ROOT, 'bin', 'keyport.js');

function kp(args: string[], input?: Buffer | string, env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    input,
    env: { ...process.env, KEYPORT_STORE: '', KES_SERVER: '', KEYPORT_SERVER: '', ...env },
    cwd: dir,
  });
  return { code: r.status, out: r.stdout, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

function oneLineError(r: { stderr: string }) {
  const lines = r.stderr.trim().split('\n');
  assert.ok(lines.length <= 2, `one-line error, got:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /\n\s+at .+:\d+:\d+/, 'no stack trace');
}

test('--version, --help for every command', () => {
  assert.equal(kp(['--version']).code, 0);
  assert.match(kp(['--help']).stdout, /key/);
  for (const c of [['key'], ['key', 'create'], ['key', 'sign'], ['protect', 'enable'], ['key', 'ls']]) {
    const r = kp([...c, '--help']);
    assert.equal(r.code, 0, c.join(' '));
    assert.match(r.stdout, /Usage: keyport/);
  }
});

test('a tour: create, ls --json, sign, verify, encrypt, decrypt, export/import, protect', () => {
  const S = ['--store', `sqlite:${join(dir, 'tour.db')}`];
  assert.equal(kp(['key', 'create', 'data-key', ...S]).code, 0);
  assert.equal(kp(['key', 'create', 'sig-key', '--type', 'ec-p256', ...S]).code, 0);
  const ls = JSON.parse(kp(['key', 'ls', '--json', ...S]).stdout) as { name: string; type: string; fingerprint: string }[];
  assert.deepEqual(
    ls.map((k) => [k.name, k.type]),
    [
      ['data-key', 'aes256'],
      ['sig-key', 'ec-p256'],
    ],
  );
  assert.ok(ls.every((k) => k.fingerprint.length > 10));
  writeFileSync(join(dir, 'msg'), 'hello');
  assert.equal(kp(['key', 'sign', 'sig-key', '--in', 'msg', '--out', 'msg.sig', ...S]).code, 0);
  assert.equal(kp(['key', 'verify', 'sig-key', '--in', 'msg', '--sig', 'msg.sig', ...S]).code, 0);
  writeFileSync(join(dir, 'msg2'), 'tampered');
  const bad = kp(['key', 'verify', 'sig-key', '--in', 'msg2', '--sig', 'msg.sig', ...S]);
  assert.equal(bad.code, 1);
  oneLineError(bad);
  assert.equal(kp(['key', 'encrypt', 'data-key', '--in', 'msg', '--out', 'msg.enc', '--context', 'c1', ...S]).code, 0);
  const dec = kp(['key', 'decrypt', 'data-key', '--in', 'msg.enc', '--out', '-', '--context', 'c1', ...S]);
  assert.equal(dec.stdout, 'hello');
  // export → import elsewhere keeps the fingerprint
  assert.equal(kp(['key', 'export', 'sig-key', '--out', 'sig.p8', ...S]).code, 0);
  assert.equal(statSync(join(dir, 'sig.p8')).mode & 0o777, 0o600);
  const S2 = ['--store', `fs:${join(dir, 'tour-fs')}`];
  const imp = JSON.parse(kp(['key', 'import', 'sig-copy', '--file', 'sig.p8', '--json', ...S2]).stdout) as { fingerprint: string };
  assert.equal(imp.fingerprint, ls[1]!.fingerprint);
  // rotate, then versions lists both (table and JSON)
  assert.equal(kp(['key', 'rotate', 'data-key', ...S]).code, 0);
  const vs = JSON.parse(kp(['key', 'versions', 'data-key', '--json', ...S]).stdout) as {
    version: number;
    current: boolean;
    fingerprint: string;
  }[];
  assert.deepEqual(
    vs.map((v) => [v.version, v.current]),
    [
      [1, false],
      [2, true],
    ],
  );
  assert.match(kp(['key', 'versions', 'data-key', ...S]).stdout, /^2 \(current\)\s/m);
  assert.equal(
    kp(['key', 'decrypt', 'data-key', '--in', 'msg.enc', '--out', '-', '--context', 'c1', ...S]).stdout,
    'hello',
    'version 1 still decrypts',
  );
  const pem = kp(['key', 'public', 'sig-key', '--pem', ...S]).stdout;
  assert.match(pem, /BEGIN PUBLIC KEY/);
  const pr = kp(['protect', 'enable', '--wrapper', `local:${join(dir, 'w.key')}`, '--json', ...S]);
  assert.equal(pr.code, 0, pr.stderr);
  assert.equal(JSON.parse(pr.stdout).changed, 2);
  assert.equal(statSync(join(dir, 'w.key')).mode & 0o777, 0o600);
  assert.equal(JSON.parse(kp(['key', 'describe', 'sig-key', '--json', ...S]).stdout).protection, 'sealed');
  assert.equal(kp(['key', 'rm', 'data-key', ...S]).code, 0);
  assert.equal(kp(['key', 'describe', 'data-key', ...S]).code, 1);
  // stdin input, sealed under the store's wrapper: its connection is given, the store keeps only its reference
  const fromStdin = kp(['key', 'import', 'raw-aes', '--file', '-', '--wrapper', `local:${join(dir, 'w.key')}`, ...S], Buffer.alloc(32, 7));
  assert.equal(fromStdin.code, 0, fromStdin.stderr);
});

test('user errors: one line, exit 2 for usage, 1 otherwise, never a stack trace', () => {
  const S = ['--store', `sqlite:${join(dir, 'err.db')}`];
  const cases: [string[], number, RegExp][] = [
    [['key', 'create', 'bad name', ...S], 2, /invalid key name/],
    [['key', 'create', 'x', '--type', 'dsa', ...S], 2, /invalid|Allowed/],
    [['key', 'create', 'x'], 2, /no key store/],
    [['key', 'create', 'x', '--store', 'nosuch:foo'], 2, /not a key store/],
    [['key', 'create', 'x', '--store', 'no-scheme-here'], 2, /not a store address/],
    [['key', 'describe', 'missing', ...S], 1, /does not exist/],
    [['key', 'ls', 'a[', ...S], 2, /malformed pattern/],
    [['key', 'import', 'x', '--file', 'nonexistent', ...S], 2, /cannot read/],
    [['key', 'frobnicate'], 2, /unknown command|error/],
    [['key', 'create', 'x', '--store', 'missing.yaml'], 2, /cannot read/],
    [['protect', 'rotate', '--wrapper', 'local:w2.key', ...S], 2, /not envelope-protected/],
  ];
  for (const [args, code, re] of cases) {
    const r = kp(args);
    assert.equal(r.code, code, `${args.join(' ')} → ${r.code}: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
    oneLineError(r);
  }
  writeFileSync(join(dir, 'bad.yaml'), 'store: [unclosed');
  const y = kp(['key', 'ls', '--store', 'bad.yaml']);
  assert.equal(y.code, 1);
  assert.match(y.stderr, /not valid YAML/);
  oneLineError(y);
  writeFileSync(join(dir, 'garbage.p8'), 'garbage');
  const g = kp(['key', 'import', 'g1', '--file', 'garbage.p8', ...S]);
  assert.equal(g.code, 1);
  assert.match(g.stderr, /not a private key/);
  writeFileSync(join(dir, 'ct.bin'), 'short');
  kp(['key', 'create', 'dk', ...S]);
  const c = kp(['key', 'decrypt', 'dk', '--in', 'ct.bin', '--out', '-', ...S]);
  assert.equal(c.code, 1);
  assert.match(c.stderr, /too short/);
  assert.equal(readFileSync(join(dir, 'garbage.p8'), 'utf8'), 'garbage');
});

test('--store and --server together: a usage error, neither is opened (one would have been ignored)', () => {
  const r = kp(['key', 'create', 'both', '--store', `sqlite:${join(dir, 'both.db')}`, '--server', 'https://127.0.0.1:1', '-k']);
  assert.equal(r.code, 2, r.stderr);
  oneLineError(r);
  assert.match(r.stderr, /--store and --server exclude each other/);
  assert.throws(() => statSync(join(dir, 'both.db')), 'no store was created');
});

test('a damaged record: one line naming its file and what to do, exit 1 (keyport never guesses it away)', () => {
  const S = ['--store', `fs:${join(dir, 'damaged')}`];
  assert.equal(kp(['key', 'create', 'fine', ...S]).code, 0);
  const file = join(dir, 'damaged', 'broken.key');
  writeFileSync(file, 'garbage', { mode: 0o600 });
  for (const args of [
    ['key', 'ls'],
    ['key', 'describe', 'broken'],
  ]) {
    const r = kp([...args, ...S]);
    assert.equal(r.code, 1, r.stderr);
    oneLineError(r);
    assert.ok(r.stderr.includes(file), `names the file: ${r.stderr}`);
    assert.match(r.stderr, /restore it from a backup/);
  }
  assert.equal(readFileSync(file, 'utf8'), 'garbage', 'left as it was');
});

test('local:DIR/ that does not exist yet: keys go into DIR, not beside it', () => {
  const env = { KEYPORT_HOME: join(dir, 'home-slash') };
  assert.equal(kp(['key', 'create', 'k1', '--store', 'sqlite:slash.db', '--type', 'ec-p256']).code, 0);
  const r = kp(['migrate', '--from', 'sqlite:slash.db', '--to', 'local:./new-kms-dir/'], undefined, env);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(statSync(join(dir, 'new-kms-dir', 'k1.pem')).isFile(), 'the key is inside the directory');
  assert.throws(() => statSync(join(dir, 'k1.pem')), 'nothing written beside it');
  const s = kp(['key', 'sign', 'k1', '--store', 'local:./new-kms-dir/', '--in', 'slash.db', '--out', 'slash.sig'], undefined, env);
  assert.equal(s.code, 0, s.stderr);
});
