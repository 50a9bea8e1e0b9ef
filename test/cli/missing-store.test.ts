/**
 * Read-only commands never create stores (issue 9 item 2): `key ls --store sqlite:/nonexistent/dir/x.db`
 * created the directory and an empty database and exited 0; `migrate --from` a typo said "0 migrated";
 * --dry-run and a refused pattern created the target; a store YAML's relative paths followed the current
 * directory, so running from elsewhere made a new empty store and a new wrapper key. Only key create /
 * import / register, node init / import and migrate --to create a store; every other command reports a
 * missing store in one line, exit 1, and nothing appears on disk.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { openRecordStore, isStoreMissing } from '../../src/store/open.js';
import { tempDir } from '../support/tmp.js';
import { skipUnless, serviceEnv } from '../support/testbed.js';
import { isOneLine, kpIn } from '../support/kp.js';
import { devSetup } from '../../src/server/dev.js';
import { loadServerConfig } from '../../src/server/config.js';
import { startServer } from '../../src/server/index.js';
import { KmsAddress } from '../../src/kms/address.js';

const dir = tempDir();
const home = join(dir, 'home');
writeFileSync(join(dir, 'msg'), 'hello');
writeFileSync(join(dir, 'msg.sig'), 'x');
const env = { KEYPORT_HOME: home, KEYPORT_KMS: '', KEYPORT_WRAPPER: '' };
const kp = (cwd: string, args: string[]) => kpIn(cwd, args, undefined, env);

/** every command that reads or changes a store but must not make one */
const KEY_COMMANDS: string[][] = [
  ['key', 'ls'],
  ['key', 'describe', 'k'],
  ['key', 'versions', 'k'],
  ['key', 'public', 'k', '--pem'],
  ['key', 'export', 'k', '--pem'],
  ['key', 'rm', 'k', '--yes'],
  ['key', 'rotate', 'k'],
  ['key', 'sign', 'k', '--in', 'msg', '--out', '-', '--json'],
  ['key', 'verify', 'k', '--in', 'msg', '--sig', 'msg.sig'],
  ['key', 'encrypt', 'k', '--in', 'msg', '--json'],
  ['key', 'decrypt', 'k', '--in', 'msg', '--json'],
  ['key', 'hmac', 'k', '--in', 'msg'],
  ['key', 'generate', 'k'],
];
const NODE_COMMANDS: string[][] = [
  ['node', 'ls'],
  ['node', 'show', 'n'],
  ['node', 'export', 'n', '--out', 'certs'],
  ['node', 'rotate', 'n'],
  ['node', 'canton-config', 'n'],
  ['node', 'compat'],
];

/** a missing store of each kind, under a parent directory that must still not exist afterwards */
function missingStores(tag: string): { kind: string; store: string; parent: string }[] {
  const p = (k: string) => join(dir, `none-${tag}-${k}`);
  const kes = p('kes-config');
  mkdirSync(kes);
  // a KES server config whose FS keystore (relative to the config) is not there
  writeFileSync(join(kes, 'kes.yml'), 'address: 0.0.0.0:7373\nadmin:\n  identity: disabled\nkeystore:\n  fs:\n    path: ./deeper/keys\n');
  const yaml = p('yaml');
  mkdirSync(yaml);
  writeFileSync(join(yaml, 'store.yaml'), 'store: sqlite:./deeper/keys.db\nenvelope:\n  wrapper: local:./deeper/wrapper.key\n');
  return [
    { kind: 'sqlite', store: `sqlite:${join(p('sqlite'), 'deeper', 'x.db')}`, parent: p('sqlite') },
    { kind: 'fs', store: `fs:${join(p('fs'), 'deeper', 'keys')}`, parent: p('fs') },
    { kind: 'kes-fs', store: `kes-fs:${join(p('kes-fs'), 'deeper', 'keys')}`, parent: p('kes-fs') },
    { kind: 'KES config (fs keystore)', store: join(kes, 'kes.yml'), parent: join(kes, 'deeper') },
    { kind: 'store YAML (sqlite + local wrapper)', store: join(yaml, 'store.yaml'), parent: join(yaml, 'deeper') },
  ];
}

test('key and node commands on a missing sqlite:, fs:, kes-fs:, KES config or store YAML store: exit 1, one line, nothing created', () => {
  for (const { kind, store, parent } of missingStores('cmd')) {
    for (const args of [...KEY_COMMANDS, ...NODE_COMMANDS]) {
      const r = kp(dir, [...args, '--store', store]);
      assert.equal(r.code, 1, `${kind}: ${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.ok(isOneLine(r.stderr), `${kind}: ${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /does not exist/, `${kind}: ${args.join(' ')}`);
      assert.equal(existsSync(parent), false, `${kind}: ${args.join(' ')} created ${parent}`);
    }
    assert.equal(existsSync(join(dir, 'certs')), false);
  }
});

test('protect enable|rotate|disable and doctor on a missing store: exit 1, nothing created (no store, no wrapper key)', () => {
  const wrapper = join(dir, 'protect-wrapper.key');
  for (const { kind, store, parent } of missingStores('protect')) {
    for (const op of ['enable', 'rotate', 'disable']) {
      const r = kp(dir, ['protect', op, '--store', store, '--wrapper', `local:${wrapper}`]);
      assert.equal(r.code, 1, `${kind}: protect ${op}: ${r.stdout}${r.stderr}`);
      assert.ok(isOneLine(r.stderr), r.stderr);
      assert.match(r.stderr, /does not exist/);
    }
    const doc = kp(dir, ['doctor', store, '--json']);
    assert.equal(doc.code, 1, `${kind}: doctor: ${doc.stdout}${doc.stderr}`);
    const rep = JSON.parse(doc.stdout) as { ok: boolean; checks: { check: string; status: string; detail: string }[] };
    assert.deepEqual(
      rep.checks.map((c) => [c.check, c.status]),
      [['store', 'problem']],
    );
    assert.match(rep.checks[0]!.detail, /does not exist/);
    assert.equal(existsSync(parent), false, `${kind}: protect or doctor created ${parent}`);
    assert.equal(existsSync(wrapper), false, `${kind}: protect made a wrapper key`);
  }
});

test('a KMS store without a catalog: read commands say so and create no catalog; key create makes one', () => {
  const kms = `local:${join(dir, 'kms')}/`;
  mkdirSync(join(dir, 'kms'));
  for (const args of [
    ['key', 'ls'],
    ['key', 'describe', 'k'],
  ]) {
    const r = kp(dir, [...args, '--store', kms]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.ok(isOneLine(r.stderr), r.stderr);
    assert.match(r.stderr, /keyport has no catalog of local:/);
  }
  assert.equal(existsSync(join(home, 'catalogs')), false, 'no catalog made');
  assert.deepEqual(readdirSync(join(dir, 'kms')), [], 'nothing made in the KMS');
  assert.equal(kp(dir, ['key', 'create', 'c-key', '--type', 'ec-p256', '--store', kms]).code, 0);
  assert.equal(readdirSync(join(home, 'catalogs')).length, 1);
  const ls = kp(dir, ['key', 'ls', '--json', '--store', kms]);
  assert.equal(ls.code, 0, ls.stderr);
});

test('key register creates only a KMS catalog: into a missing sqlite: or fs: store it is refused and leaves no store behind', () => {
  for (const store of [`sqlite:${join(dir, 'reg-none', 'x.db')}`, `fs:${join(dir, 'reg-none', 'keys')}`]) {
    const r = kp(dir, ['key', 'register', 'r', '--key-id', 'some-key', '--store', store]);
    // the usage error register gives on any store that holds its own keys (test/keys/refs.test.ts)
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /register needs a KMS store/);
    assert.ok(isOneLine(r.stderr), r.stderr);
    assert.equal(existsSync(join(dir, 'reg-none')), false, `${store}: register left a store behind`);
  }
});

test('migrate: a missing source fails; --dry-run, a refused pattern, a plan with nothing to do create no target; a real run does', () => {
  const src = `sqlite:${join(dir, 'src.db')}`;
  assert.equal(kp(dir, ['key', 'create', 'a-key', '--store', src]).code, 0, 'key create creates its store');
  assert.equal(kp(dir, ['key', 'create', 'b-key', '--type', 'ec-p256', '--store', src]).code, 0);
  for (const to of ['fs', 'sqlite', 'kes-fs']) {
    const parent = join(dir, `new-${to}`);
    const target = `${to}:${join(parent, to === 'sqlite' ? 'k.db' : 'keys')}`;
    const typo = kp(dir, ['migrate', '--from', `sqlite:${join(dir, 'typo', 'x.db')}`, '--to', target]);
    assert.equal(typo.code, 1, typo.stdout);
    assert.ok(isOneLine(typo.stderr), typo.stderr);
    assert.match(typo.stderr, /does not exist/);
    assert.doesNotMatch(typo.stdout, /migrated/);
    assert.equal(existsSync(join(dir, 'typo')), false);
    const dry = kp(dir, ['migrate', '--from', src, '--to', target, '--dry-run', '--json']);
    // a KES keystore holds aes256 keys only: the EC key is refused (exit 1), the other planned
    assert.equal(dry.code, to === 'kes-fs' ? 1 : 0, dry.stderr);
    assert.equal(JSON.parse(dry.stdout).planned, to === 'kes-fs' ? 1 : 2, dry.stdout);
    assert.equal(kp(dir, ['migrate', 'a[', '--from', src, '--to', target]).code, 2);
    assert.equal(kp(dir, ['migrate', 'no-such-key', '--from', src, '--to', target]).code, 1);
    const none = kp(dir, ['migrate', 'z*', '--from', src, '--to', target, '--json']);
    assert.equal(none.code, 0, none.stderr);
    assert.equal(JSON.parse(none.stdout).migrated, 0);
    assert.equal(existsSync(parent), false, `${to}: no target, no directory for its journal`);
  }
  const target = join(dir, 'new-fs', 'keys');
  const real = kp(dir, ['migrate', '--from', src, '--to', `fs:${target}`, '--json']);
  assert.equal(real.code, 0, real.stderr);
  assert.equal(JSON.parse(real.stdout).migrated, 2);
  assert.deepEqual(
    readdirSync(target)
      .filter((f) => f.endsWith('.key'))
      .sort(),
    ['a-key.key', 'b-key.key'],
  );
});

test("a store YAML's relative paths (store, local wrapper key) are beside the YAML, from any directory", () => {
  const conf = join(dir, 'conf');
  const elsewhere = join(dir, 'elsewhere');
  mkdirSync(conf);
  mkdirSync(elsewhere);
  writeFileSync(join(conf, 'store.yaml'), 'store: sqlite:data/keys.db\nenvelope:\n  wrapper: local:./wrapper.key\n');
  const before = kp(elsewhere, ['key', 'ls', '--store', join(conf, 'store.yaml')]);
  assert.equal(before.code, 1, 'missing: an error, not a new store in the current directory');
  assert.ok(isOneLine(before.stderr), before.stderr);
  assert.deepEqual(readdirSync(elsewhere), []);
  assert.deepEqual(readdirSync(conf), ['store.yaml']);

  assert.equal(kp(elsewhere, ['key', 'create', 'y-key', '--store', '../conf/store.yaml']).code, 0);
  assert.ok(existsSync(join(conf, 'data', 'keys.db')), 'store created beside the YAML');
  assert.ok(existsSync(join(conf, 'wrapper.key')), 'wrapper key created beside the YAML');
  assert.deepEqual(readdirSync(elsewhere), []);
  // from a third directory: the same store and wrapper (the key opens), nothing new anywhere
  for (const [cwd, store] of [
    [dir, 'conf/store.yaml'],
    [conf, 'store.yaml'],
    [elsewhere, join(conf, 'store.yaml')],
  ] as const) {
    const ls = kp(cwd, ['key', 'ls', '--json', '--store', store]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.deepEqual(
      (JSON.parse(ls.stdout) as { name: string }[]).map((k) => k.name),
      ['y-key'],
    );
    const enc = kp(cwd, ['key', 'encrypt', 'y-key', '--in', join(dir, 'msg'), '--json', '--store', store]);
    assert.equal(enc.code, 0, enc.stderr);
    const doc = kp(cwd, ['doctor', store, '--json']);
    assert.equal(doc.code, 0, doc.stdout + doc.stderr);
  }
  const rot = kp(elsewhere, ['protect', 'rotate', '--store', '../conf/store.yaml', '--wrapper', `local:${join(conf, 'wrapper2.key')}`]);
  assert.equal(rot.code, 0, rot.stderr);
  assert.deepEqual(readdirSync(elsewhere), []);
  assert.deepEqual(readdirSync(conf).sort(), ['data', 'store.yaml', 'wrapper.key', 'wrapper2.key']);
});

test("a server config's keystore.keyport section: its relative store and wrapper paths are beside the config, not in the cwd", async () => {
  const conf = join(dir, 'server-conf');
  const dev = await devSetup({ dir: join(conf, 'tls'), host: '127.0.0.1', port: 0 });
  writeFileSync(
    join(conf, 'server.yaml'),
    [
      'address: 127.0.0.1:0',
      'admin:',
      '  identity: disabled',
      'tls:',
      '  key: tls/server.key',
      `  cert: ${JSON.stringify(dev.certPath)}`,
      'keystore:',
      '  keyport:',
      '    store: sqlite:./data/keys.db',
      '    envelope:',
      '      wrapper: local:./wrapper.key',
      '',
    ].join('\n'),
  );
  const cwdBefore = readdirSync(process.cwd()).sort();
  const started = await startServer(loadServerConfig(join(conf, 'server.yaml')));
  await started.close();
  assert.ok(existsSync(join(conf, 'data', 'keys.db')), 'the store is beside the config');
  assert.ok(existsSync(join(conf, 'wrapper.key')), 'the wrapper key is beside the config');
  assert.deepEqual(readdirSync(process.cwd()).sort(), cwdBefore, 'nothing new in the current directory');
});

test("a YAML's TLS and credential files resolve beside it; on the command line they stay as given", () => {
  const yaml = KmsAddress.parse('kmip:host=h;port=5696;cert=tls/c.pem;key=./tls/k.pem;ca=/etc/ca.pem', { base: '/etc/kp' });
  assert.equal(yaml.toString(), 'kmip:host=h;port=5696;cert=/etc/kp/tls/c.pem;key=/etc/kp/tls/k.pem;ca=/etc/ca.pem');
  const p11 = KmsAddress.parse('pkcs11:module-path=libsofthsm2.so;token=t;pin-source=file:pin.txt', { base: '/etc/kp' });
  assert.match(p11.toString(), /module-path=libsofthsm2\.so/, 'a bare module name is left to the loader');
  assert.match(p11.toString(), /pin-source=file:\/etc\/kp\/pin\.txt/);
  assert.equal(KmsAddress.parse('kmip:host=h;port=5696;cert=c.pem').toString(), 'kmip:host=h;port=5696;cert=c.pem');
});

test('library: openRecordStore({ create: false }) on a missing store is NOT_FOUND (isStoreMissing); the default still creates', async () => {
  for (const scheme of ['fs', 'kes-fs', 'sqlite']) {
    const p = join(dir, `lib-none-${scheme}`, 'x');
    await assert.rejects(openRecordStore(`${scheme}:${p}`, { create: false }), (e) => isStoreMissing(e));
    const s = await openRecordStore(`${scheme}:${p}`, { create: 'stand-in' });
    assert.deepEqual((await s.list()).names, []);
    await s.close();
    assert.equal(existsSync(join(dir, `lib-none-${scheme}`)), false);
  }
  const s = await openRecordStore(`fs:${join(dir, 'lib-new')}`);
  await s.close();
  assert.ok(existsSync(join(dir, 'lib-new')));
});

describe('postgres: read-only commands never create the tables', { skip: skipUnless('postgres') }, () => {
  test('key ls on a table that does not exist: exit 1, and still no table; key create makes it', async () => {
    const url = new URL(serviceEnv('postgres')['PG_URL']!);
    const table = `missing_${process.pid}_${Date.now().toString(36)}`;
    url.searchParams.set('table', table);
    const store = `postgres:${url.toString()}`;
    for (const args of [
      ['key', 'ls'],
      ['key', 'describe', 'k'],
      ['node', 'ls'],
    ]) {
      const r = kp(dir, [...args, '--store', store]);
      assert.equal(r.code, 1, r.stdout);
      assert.ok(isOneLine(r.stderr), r.stderr);
      assert.match(r.stderr, /does not exist/);
    }
    await assert.rejects(openRecordStore(store, { create: false }), (e) => isStoreMissing(e));
    assert.equal(kp(dir, ['key', 'create', 'p-key', '--store', store]).code, 0);
    const ls = kp(dir, ['key', 'ls', '--json', '--store', store]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.equal((JSON.parse(ls.stdout) as unknown[]).length, 1);
  });
});
