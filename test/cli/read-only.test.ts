/**
 * Read-only commands write nothing (founders: "read-only commands never create stores or keys", "no silent
 * damage"). A store YAML with `envelope:` over an existing CLEAR store sealed the store on open for every
 * command, `key ls` and `doctor` included, and made a new local wrapper key file; an `external:` YAML over an
 * empty clear catalog wrote its marker. Now a read-only command reads the clear keys as they are and says
 * once on stderr that they are not yet sealed; doctor reports it as a problem with its fix; a write command
 * still seals on open (Canton's behaviour).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../support/tmp.js';
import { kpIn } from '../support/kp.js';

const dir = tempDir();
const env = { KEYPORT_HOME: join(dir, 'home'), KEYPORT_KMS: '', KEYPORT_WRAPPER: '' };

/** every file under `path` (a sqlite store's directory or an fs store) by name, mode and content */
function hashTree(path: string): string {
  const h = createHash('sha256');
  const walk = (p: string, rel: string) => {
    const st = statSync(p);
    h.update(`${rel} ${st.mode.toString(8)}\n`);
    if (st.isDirectory()) for (const n of readdirSync(p).sort()) walk(join(p, n), `${rel}/${n}`);
    else h.update(readFileSync(p));
  };
  walk(path, '.');
  return h.digest('hex');
}

const NOTICE =
  /keyport: (\d+) key\(s\) in \S+ are not yet sealed under local:\S+wrapper\.key: the next write command or 'keyport protect enable --wrapper local:\S+wrapper\.key' seals them/g;

for (const kind of ['sqlite', 'fs'] as const) {
  test(`${kind}: read-only commands on a YAML (envelope, local wrapper not yet there) over a clear store write nothing`, () => {
    const d = join(dir, kind);
    mkdirSync(join(d, 'store'), { recursive: true });
    const kp = (args: string[]) => kpIn(d, args, undefined, env);
    const ok = (args: string[]) => {
      const r = kp(args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      return r;
    };
    // a clear store with keys and a Canton node
    const clear = kind === 'sqlite' ? 'sqlite:./store/keys.db' : 'fs:./store/keys';
    ok(['key', 'create', 'k', '--store', clear]);
    ok(['key', 'create', 's', '--type', 'ec-p256', '--store', clear]);
    ok(['node', 'init', 'n', '--profile', 'participant', '--store', clear]);
    ok(['key', 'create', 'o', '--store', 'sqlite:./other.db']);
    writeFileSync(join(d, 'msg'), 'hello');
    writeFileSync(join(d, 'store.yaml'), `store: ${clear}\nenvelope:\n  wrapper: local:./wrapper.key\n`);
    const wrapper = join(d, 'wrapper.key');
    const y = ['--store', 'store.yaml'];
    const keys = 6; // k, s and the node's four

    const before = hashTree(join(d, 'store'));
    const unchanged = (what: string, r: { stdout: string; stderr: string }) => {
      assert.equal(hashTree(join(d, 'store')), before, `${what} changed the store: ${r.stderr}`);
      assert.equal(existsSync(wrapper), false, `${what} created the wrapper key file`);
    };
    // each works, says once that the keys are not sealed yet, and leaves the store byte-identical
    const works: string[][] = [
      ['key', 'ls', ...y],
      ['key', 'describe', 'k', ...y],
      ['key', 'versions', 'k', ...y],
      ['key', 'public', 's', '--pem', ...y],
      ['key', 'export', 'k', '--pem', '--out', 'k.pem', ...y],
      ['key', 'sign', 's', '--in', 'msg', '--out', 'msg.sig', ...y],
      ['key', 'verify', 's', '--in', 'msg', '--sig', 'msg.sig', ...y],
      ['key', 'encrypt', 'k', '--in', 'msg', '--out', 'msg.ct', ...y],
      ['key', 'decrypt', 'k', '--in', 'msg.ct', '--out', 'msg.pt', ...y],
      ['key', 'hmac', 'k', '--in', 'msg', ...y],
      ['key', 'generate', 'k', ...y],
      ['node', 'ls', ...y],
      ['node', 'show', 'n', ...y],
      ['node', 'export', 'n', '--out', 'certs', ...y],
      ['node', 'canton-config', 'n', ...y],
      ['node', 'compat', ...y],
      ['migrate', '--from', 'store.yaml', '--to', `sqlite:./copy.db`],
      // a dry run into it: its target is only read too
      ['migrate', '--from', 'sqlite:./other.db', '--to', 'store.yaml', '--dry-run'],
    ];
    for (const args of works) {
      const r = ok(args);
      const notices = [...r.stderr.matchAll(NOTICE)];
      assert.equal(notices.length, 1, `${args.join(' ')}: one notice: ${r.stderr}`);
      assert.equal(Number(notices[0]![1]), keys, `${args.join(' ')}: ${r.stderr}`);
      unchanged(args.join(' '), r);
    }
    assert.equal(readFileSync(join(d, 'msg.pt'), 'utf8'), 'hello');
    assert.match(kp(['key', 'ls', '--json', ...y]).stdout, /"protection": "clear"/);
    assert.match(ok(['key', 'ls', '--store', 'sqlite:./copy.db']).stdout, /n-namespace/);

    // AWS IAM policy of a node without AWS keys: refused as before, and nothing written either
    const iam = kp(['node', 'iam-policy', 'n', ...y]);
    unchanged('node iam-policy', iam);

    // doctor: a problem, with the fix, and nothing written
    const doc = kp(['doctor', 'store.yaml', '--json']);
    assert.equal(doc.code, 1, doc.stdout + doc.stderr);
    const prot = (JSON.parse(doc.stdout) as { checks: { check: string; status: string; detail: string; fix?: string }[] }).checks.find(
      (c) => c.check === 'protection',
    );
    assert.equal(prot?.status, 'problem', doc.stdout);
    assert.match(prot!.detail, new RegExp(`^${keys} key\\(s\\) are not yet sealed under local:`));
    assert.match(prot!.fix ?? '', /next write command or 'keyport protect enable/);
    unchanged('doctor', doc);

    // a write command seals on open as before (Canton's behaviour): the wrapper key is made, every key sealed
    const w = ok(['key', 'create', 'z', ...y]);
    assert.match(w.stderr, new RegExp(`envelope protection enabled on open: ${keys} key\\(s\\) sealed under local:`));
    assert.ok(existsSync(wrapper), 'the write command made the wrapper key');
    assert.notEqual(hashTree(join(d, 'store')), before);
    const after = ok(['key', 'ls', '--json', ...y]);
    assert.doesNotMatch(after.stdout, /"protection": "clear"/);
    assert.equal([...after.stderr.matchAll(NOTICE)].length, 0, after.stderr);
    assert.equal(ok(['doctor', 'store.yaml']).code, 0);
  });
}

test('an external YAML over an empty clear catalog: a read-only command writes no protection marker', () => {
  const d = join(dir, 'external');
  mkdirSync(join(d, 'store'), { recursive: true });
  const kp = (args: string[]) => kpIn(d, args, undefined, env);
  // an empty clear sqlite store (its one key removed again)
  for (const args of [
    ['key', 'create', 't', '--store', 'sqlite:./store/cat.db'],
    ['key', 'rm', 't', '--yes', '--store', 'sqlite:./store/cat.db'],
  ])
    assert.equal(kp(args).code, 0, args.join(' '));
  writeFileSync(join(d, 'ext.yaml'), 'store: sqlite:./store/cat.db\nexternal:\n  kms: local:./kms\n');
  const before = hashTree(join(d, 'store'));
  for (const args of [
    ['key', 'ls', '--store', 'ext.yaml'],
    ['node', 'ls', '--store', 'ext.yaml'],
  ]) {
    const r = kp(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(hashTree(join(d, 'store')), before, `${args.join(' ')} wrote into the catalog`);
  }
  const doc = kp(['doctor', 'ext.yaml']);
  assert.equal(hashTree(join(d, 'store')), before, `doctor wrote into the catalog: ${doc.stdout}`);
  assert.equal(existsSync(join(d, 'kms')), false);
});
