/**
 * What a newcomer meets on the command line: --json is JSON (base64 fields) or a usage error, --in/--out
 * default to stdin/stdout, kcv1 reads apart from its hex, grammar, confirmation on a terminal (through a
 * real pseudo-terminal from util-linux `script`), the dry-run tail, the plan in words, help with
 * examples and the environment.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPublicKey, createVerify } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';

const dir = tempDir();
const BIN = join(ROOT, 'bin', 'keyport.js');
const env = { ...process.env, KEYPORT_STORE: '', KES_SERVER: '', KEYPORT_SERVER: '', KEYPORT_HOME: join(dir, 'home') };
const kp = (args: string[], input?: string | Buffer) => {
  const r = spawnSync(process.execPath, [BIN, ...args], { input, env, cwd: dir });
  return { code: r.status, out: r.stdout, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
};
const S = ['--store', `sqlite:${join(dir, 'k.db')}`];
const json = (r: { code: number | null; stdout: string; stderr: string }) => {
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, unknown>;
};

test('--json on sign, encrypt, decrypt, public, export: one JSON object, bytes base64, never raw', () => {
  assert.equal(kp(['key', 'create', 'd', ...S]).code, 0);
  assert.equal(kp(['key', 'create', 'e', '--type', 'ec-p256', ...S]).code, 0);
  writeFileSync(join(dir, 'msg'), 'hello');
  const sig = json(kp(['key', 'sign', 'e', '--in', 'msg', '--json', ...S]));
  assert.equal(sig['name'], 'e');
  const pub = json(kp(['key', 'public', 'e', '--json', ...S]));
  const spki = createPublicKey({ key: Buffer.from(String(pub['publicKey']), 'base64'), format: 'der', type: 'spki' });
  assert.equal(String(pub['pem']), spki.export({ format: 'pem', type: 'spki' }));
  assert.ok(
    createVerify('sha256')
      .update('hello')
      .verify(spki, Buffer.from(String(sig['signature']), 'base64')),
  );
  const enc = json(kp(['key', 'encrypt', 'd', '--in', 'msg', '--json', '--context', 'c', ...S]));
  writeFileSync(join(dir, 'msg.enc'), Buffer.from(String(enc['ciphertext']), 'base64'));
  const dec = json(kp(['key', 'decrypt', 'd', '--in', 'msg.enc', '--json', '--context', 'c', ...S]));
  assert.equal(Buffer.from(String(dec['plaintext']), 'base64').toString(), 'hello');
  const ex = json(kp(['key', 'export', 'd', '--json', ...S]));
  assert.equal(ex['format'], 'raw');
  assert.equal(Buffer.from(String(ex['key']), 'base64').length, 32);
  const exe = json(kp(['key', 'export', 'e', '--json', ...S]));
  assert.equal(exe['format'], 'pkcs8-der');
  // with --out the bytes go to the file and the JSON names it
  const f = json(kp(['key', 'sign', 'e', '--in', 'msg', '--out', 'msg.sig', '--json', ...S]));
  assert.equal(f['out'], 'msg.sig');
  assert.equal(f['bytes'], readFileSync(join(dir, 'msg.sig')).length);
  const both = kp(['key', 'export', 'd', '--json', '--pem', ...S]);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--pem and --json/);
});

test('--in and --out default to stdin and stdout', () => {
  const sig = kp(['key', 'sign', 'e', ...S], 'piped');
  assert.equal(sig.code, 0, sig.stderr);
  writeFileSync(join(dir, 'piped.sig'), sig.out);
  writeFileSync(join(dir, 'piped'), 'piped');
  assert.equal(kp(['key', 'verify', 'e', '--sig', 'piped.sig', ...S], 'piped').code, 0);
  const enc = kp(['key', 'encrypt', 'd', ...S], 'secret text');
  assert.equal(enc.code, 0, enc.stderr);
  const dec = kp(['key', 'decrypt', 'd', ...S], enc.out);
  assert.equal(dec.stdout, 'secret text');
  assert.match(kp(['key', 'hmac', 'd', ...S], 'x').stdout, /^[0-9a-f]{64}\n$/);
});

test('kcv1 reads apart from its hex for people; JSON keeps the contract value', () => {
  const human = kp(['key', 'describe', 'd', ...S]).stdout;
  assert.match(human, /Fingerprint\s+kcv1:[0-9a-f]+\n/);
  const ls = JSON.parse(kp(['key', 'ls', '--json', ...S]).stdout) as { name: string; fingerprint: string }[];
  assert.match(ls.find((k) => k.name === 'd')!.fingerprint, /^kcv1[0-9a-f]+$/);
  assert.match(kp(['key', 'ls', ...S]).stdout, /kcv1:[0-9a-f]+/);
});

test('errors read as English: an aes256 key', () => {
  const r = kp(['key', 'sign', 'd', '--in', 'msg', ...S]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /is an aes256 symmetric key/);
});

const hasScript = spawnSync('script', ['--version']).status === 0;
/** run keyport on a pseudo-terminal with `answer` typed in */
function onTty(args: string[], answer: string) {
  const cmd = [process.execPath, BIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return spawnSync('script', ['-qec', cmd, '/dev/null'], { input: answer, env, cwd: dir, encoding: 'utf8', timeout: 60_000 });
}

test('binary output is refused on a terminal, naming only the options the command has', {
  skip: !hasScript && 'util-linux script missing',
}, () => {
  assert.equal(kp(['key', 'create', 'tty-ec', '--type', 'ec-p256', ...S]).code, 0);
  const pub = onTty(['key', 'public', 'tty-ec', ...S], '');
  assert.match(pub.stdout, /refusing to write binary data to a terminal: use --out FILE or --pem/);
  writeFileSync(join(dir, 'tty-msg'), 'm');
  const sig = onTty(['key', 'sign', 'tty-ec', '--in', join(dir, 'tty-msg'), ...S], '');
  assert.match(sig.stdout, /refusing to write binary data to a terminal: use --out FILE\r?\n/);
  assert.doesNotMatch(sig.stdout, /--pem/);
});

test('key rm and protect disable ask on a terminal; --yes and scripts (no TTY) do not', {
  skip: !hasScript && 'util-linux script missing',
}, () => {
  assert.equal(kp(['key', 'create', 'gone', ...S]).code, 0);
  const no = onTty(['key', 'rm', 'gone', ...S], 'n\n');
  assert.match(no.stdout, /delete key 'gone'.*\[y\/N\]/);
  assert.match(no.stdout, /not confirmed: nothing deleted/);
  assert.equal(kp(['key', 'describe', 'gone', ...S]).code, 0, 'still there');
  const yes = onTty(['key', 'rm', 'gone', ...S], 'y\n');
  assert.match(yes.stdout, /deleted key 'gone'/);
  assert.equal(kp(['key', 'create', 'gone2', ...S]).code, 0);
  assert.match(onTty(['key', 'rm', 'gone2', '--yes', ...S], '').stdout, /deleted key 'gone2'/);
  assert.equal(kp(['key', 'create', 'gone3', ...S]).code, 0);
  assert.equal(kp(['key', 'rm', 'gone3', ...S]).code, 0, 'no terminal: no question (scripts keep working)');

  const P = ['--store', `sqlite:${join(dir, 'p.db')}`];
  assert.equal(kp(['key', 'create', 'x', ...P]).code, 0);
  assert.equal(kp(['protect', 'enable', '--wrapper', `local:${join(dir, 'w.key')}`, ...P]).code, 0);
  const keep = onTty(['protect', 'disable', ...P], '\n');
  assert.match(keep.stdout, /not confirmed: nothing changed/);
  assert.match(kp(['key', 'describe', 'x', ...P]).stdout, /Protection\s+sealed/);
  // --wrapper on disable is the connection to the store's wrapper (never an ignored option)
  assert.doesNotMatch(kp(['protect', 'disable', '--help']).stdout, /ignored/);
  assert.equal(kp(['protect', 'disable', '--wrapper', `local:${join(dir, 'w.key')}`, ...P]).code, 0);
  assert.match(kp(['key', 'describe', 'x', ...P]).stdout, /Protection\s+clear/);
});

test('migrate: the dry run says how many more entries; the JSON plan is in words; a clean run leaves no journal', () => {
  const A = `sqlite:${join(dir, 'many.db')}`;
  for (let i = 0; i < 52; i++) assert.equal(kp(['key', 'create', `k${String(i).padStart(2, '0')}`, '--store', A]).code, 0);
  const dry = kp(['migrate', '--from', A, '--to', `fs:${join(dir, 'copy')}`, '--dry-run']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /… and 2 more entries \(--all lists them all/);
  const all = kp(['migrate', '--from', A, '--to', `fs:${join(dir, 'copy')}`, '--dry-run', '--all']);
  assert.equal(all.stdout.split('\n').filter((l) => l.startsWith('  migrate')).length, 52);
  // --all never turns into a real run's option: without --dry-run it is refused, nothing migrated
  const real = kp(['migrate', '--from', A, '--to', `fs:${join(dir, 'copy')}`, '--all']);
  assert.equal(real.code, 2, real.stderr);
  assert.match(real.stderr, /--all only lists the whole plan of a --dry-run/);
  assert.equal(existsSync(join(dir, 'copy')), false, 'nothing written');
  const plan = json(kp(['migrate', '--from', A, '--to', `fs:${join(dir, 'copy')}`, '--dry-run', '--json'])) as { plan: object[] };
  assert.deepEqual(plan.plan[0], { name: 'k00', action: 'migrate', strategy: 'copy' });
  const run = json(kp(['migrate', '--from', A, '--to', `fs:${join(dir, 'copy')}`, '--json']));
  assert.equal(run['migrated'], 52);
  assert.equal(run['journal'], undefined);
});

test('help: examples on every key command, the environment and --api-key in key --help', () => {
  const h = kp(['key', 'create', '--help']).stdout;
  assert.match(h, /Examples:\n {2}\$ keyport key create/);
  assert.match(h, /--api-key <key>/);
  assert.match(h, /--server <url>/);
  assert.match(h, /KES_API_KEY/);
  for (const c of ['sign', 'verify', 'encrypt', 'decrypt', 'export', 'public', 'rm', 'ls', 'rotate'])
    assert.match(kp(['key', c, '--help']).stdout, /Examples:/, `key ${c} --help has examples`);
  for (const c of [['migrate'], ['doctor'], ['protect', 'enable'], ['server']])
    assert.match(kp([...c, '--help']).stdout, /Examples:/, `${c.join(' ')} --help has examples`);
});

test('help: every command without subcommands has examples, each naming the command', async () => {
  const { buildProgram } = await import('../../src/cli/main.js');
  const leaves: string[][] = [];
  const walk = (c: import('commander').Command, path: string[]) => {
    for (const sub of c.commands) {
      if (sub.name() === 'help') continue;
      const p = [...path, sub.name()];
      if (sub.commands.length === 0) leaves.push(p);
      walk(sub, p);
    }
  };
  walk(await buildProgram(), []);
  assert.ok(leaves.length >= 30, `${leaves.length} commands`);
  for (const p of leaves) {
    const h = kp([...p, '--help']).stdout;
    const ex = h.split('\nExamples:\n')[1]?.split('\n\n')[0] ?? '';
    assert.match(ex, new RegExp(`^ {2}\\$ .*keyport ${p.join(' ')}\\b`, 'm'), `keyport ${p.join(' ')} --help has examples of it`);
  }
});
