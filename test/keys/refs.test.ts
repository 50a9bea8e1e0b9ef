/**
 * Key references, not addresses (issue 8): what a store keeps never chooses code, endpoints or
 * credentials. A record or a protection setting naming a `driver:` module, a foreign endpoint or another
 * wrapper never causes an import, a connection or a seal under it: the operation fails with one clear
 * line and nothing is written. No credential given in a URI is ever written to a store, journal or map.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { openKeyring } from '../../src/keys/open.js';
import { protectEnable, protectRotate } from '../../src/keys/protect.js';
import { migrate } from '../../src/migrate/index.js';
import { KmsAddress, parseStoredKeyRef } from '../../src/kms/address.js';
import { PROTECTION_META } from '../../src/store/protection.js';
import { openRecordStore } from '../../src/store/open.js';
import { doctorStore } from '../../src/keys/doctor.js';
import { tempDir } from '../support/tmp.js';
import { ROOT, serviceEnv, skipUnless } from '../support/testbed.js';

const dir = tempDir('keyport-refs-');

/** a module that leaves a marker file when imported */
const evil = join(dir, 'evil.mjs');
const marker = join(dir, 'evil-ran');
writeFileSync(
  evil,
  `import { writeFileSync } from 'node:fs'; writeFileSync(${JSON.stringify(marker)}, 'ran');\nexport const factory = async () => { throw new Error('evil'); };\n`,
);

/** a TCP listener that counts every connection made to it */
const hits: Socket[] = [];
const trap = createServer((s) => {
  hits.push(s);
  s.destroy();
});
await new Promise<void>((r) => trap.listen(0, '127.0.0.1', () => r()));
const trapPort = (trap.address() as { port: number }).port;
after(() => trap.close());

function fileText(p: string): string {
  if (!existsSync(p)) return '';
  if (statSync(p).isDirectory())
    return readdirSync(p)
      .map((e) => fileText(join(p, e)))
      .join('\n');
  return readFileSync(p).toString('latin1');
}

const HOSTILE = [
  ['a driver: module', `driver:${evil};key-id=x`],
  ['a foreign endpoint', `awskms:region=us-east-1;endpoint=http://127.0.0.1:${trapPort};access-key-id=a;secret-access-key=b;key-id=k`],
  ['another wrapper', `local:${join(dir, 'attacker-w.key')}`],
] as const;

/** a fresh store of the scheme: a file, a directory, or a table of its own in the testbed's PostgreSQL */
function storeUri(scheme: 'fs' | 'sqlite' | 'postgres', loc: string): string {
  if (scheme === 'postgres') return `postgres:${serviceEnv('postgres')['PG_URL']}?table=refs_${randomBytes(4).toString('hex')}`;
  return `${scheme}:${scheme === 'sqlite' ? `${loc}.db` : loc}`;
}
const pgSkip = () => skipUnless('postgres');

describe('a store naming a driver module, a foreign endpoint or another wrapper', () => {
  for (const scheme of ['fs', 'sqlite', 'postgres'] as const) {
    const skip = scheme === 'postgres' ? pgSkip() : false;
    for (const [what, hostile] of HOSTILE) {
      test(`${scheme}: a sealed record naming ${what} never imports, connects or seals; one clear line`, { skip }, async () => {
        const loc = join(dir, `${scheme}-${randomBytes(3).toString('hex')}`);
        const uri = storeUri(scheme, loc);
        const w = `local:${loc}-w.key`;
        const kr = await openKeyring(uri);
        await kr.create('a', { type: 'ec-p256' });
        await kr.create('b', { type: 'aes256' });
        await protectEnable(kr, w);
        await kr.close();
        // someone who can write the store edits one record's sealed wrapper
        const store = await openRecordStore(uri);
        const rec = await store.get('a');
        await store.replace({ ...rec, versions: rec.versions.map((v) => ({ ...v, sealed: { ...v.sealed!, wrapper: hostile } })) });
        await store.close();
        const kr2 = await openKeyring(uri, { kms: [w] });
        try {
          await assert.rejects(
            kr2.sign('a', Buffer.from('m')),
            (e: Error) => /no configured connection/.test(e.message) && !e.message.includes('\n'),
          );
          // the untouched key still works under the configured wrapper
          assert.ok((await kr2.encrypt('b', Buffer.from('p'))).length > 0);
        } finally {
          await kr2.close();
        }
        assert.ok(!existsSync(marker), 'the driver module was never imported');
        assert.equal(hits.length, 0, 'no connection to the foreign endpoint');
        assert.ok(!existsSync(join(dir, 'attacker-w.key')), 'no wrapper file made or read');
      });

      test(`${scheme}: a protection setting naming ${what} never imports, connects or seals; nothing is written`, { skip }, async () => {
        const loc = join(dir, `${scheme}-p-${randomBytes(3).toString('hex')}`);
        const uri = storeUri(scheme, loc);
        const w = `local:${loc}-w.key`;
        const kr = await openKeyring(uri);
        await kr.create('a', { type: 'ec-p256' });
        await protectEnable(kr, w);
        await kr.close();
        const store = await openRecordStore(uri);
        await store.setMeta(PROTECTION_META, JSON.stringify({ mode: 'envelope', wrapper: hostile }));
        await store.close();
        const kr2 = await openKeyring(uri, { kms: [w] });
        try {
          for (const op of [
            () => kr2.create('new', { type: 'ed25519' }),
            () => kr2.rotate('a'),
            () => kr2.import('imp', Buffer.alloc(32, 1)),
          ])
            await assert.rejects(op(), (e: Error) => /no configured connection/.test(e.message) && !e.message.includes('\n'));
          assert.deepEqual((await kr2.list()).names, ['a'], 'nothing was written');
          assert.equal((await kr2.versions('a')).length, 1);
        } finally {
          await kr2.close();
        }
        assert.ok(!existsSync(marker));
        assert.equal(hits.length, 0);
        assert.ok(!existsSync(join(dir, 'attacker-w.key')));
      });
    }
  }

  test('the CLI on such a store: exit 2, one line naming the reference, the module never runs', () => {
    const loc = join(dir, 'cli-store');
    const w = `local:${join(dir, 'cli-w.key')}`;
    const kp = (args: string[]) => spawnSync(process.execPath, [join(ROOT, 'bin', 'keyport.js'), ...args], { cwd: dir, encoding: 'utf8' });
    assert.equal(kp(['key', 'create', 'a', '--type', 'ec-p256', '--store', `fs:${loc}`]).status, 0);
    assert.equal(kp(['protect', 'enable', '--store', `fs:${loc}`, '--wrapper', w]).status, 0);
    const f = join(loc, 'a.key');
    const rec = JSON.parse(readFileSync(f, 'utf8'));
    rec.versions[0].sealed.wrapper = `driver:${evil};key-id=x`;
    writeFileSync(f, JSON.stringify(rec));
    writeFileSync(join(dir, 'msg'), 'm');
    const r = kp(['key', 'sign', 'a', '--store', `fs:${loc}`, '--wrapper', w, '--in', 'msg', '--out', 'sig']);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /no configured connection reaches wrapper key driver:name=evil;key-id=x/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.ok(!existsSync(marker));
    assert.ok(!existsSync(join(dir, 'sig')));
  });

  test('the server on such a store: POST /v1/key/encrypt answers with the one line, the module never runs, nothing is written', async () => {
    const uri = `sqlite:${join(dir, 'srv-victim.db')}`;
    const w = `local:${join(dir, 'srv-victim-w.key')}`;
    const kr = await openKeyring(uri);
    await kr.create('victim', { type: 'aes256' });
    await kr.create('other', { type: 'aes256' });
    await protectEnable(kr, w);
    await kr.close();
    const store = await openRecordStore(uri);
    const rec = await store.get('victim');
    const edited = { ...rec, versions: rec.versions.map((v) => ({ ...v, sealed: { ...v.sealed!, wrapper: `driver:${evil};key-id=x` } })) };
    await store.replace(edited);
    await store.close();
    const { testServer, agentFor, raw } = await import('../support/server.js');
    const srv = await testServer((c) => {
      c.store = { store: uri, envelope: { wrapper: w } };
    });
    const ag = agentFor();
    const h = { authorization: `Bearer ${srv.admin}` };
    const body = JSON.stringify({ plaintext: Buffer.from('hi').toString('base64') });
    const r = await raw(srv.url, ag, 'POST', '/v1/key/encrypt/victim', body, h);
    assert.equal(r.status, 500, r.body);
    const j = JSON.parse(r.body) as { message: string; code: string };
    assert.match(j.message, /^no configured connection reaches wrapper key driver:name=evil;key-id=x: /);
    assert.ok(!j.message.includes('\n'));
    // the untouched key still works under the configured wrapper; the edited record is as it was left
    assert.equal((await raw(srv.url, ag, 'POST', '/v1/key/encrypt/other', body, h)).status, 200);
    assert.ok(!existsSync(marker), 'the driver module was never imported in the server');
    const st = await openRecordStore(uri);
    try {
      assert.deepEqual(await st.get('victim'), edited, 'nothing was written');
    } finally {
      await st.close();
    }
  });
});

test('addresses are typed and validated at the edge; equality is defined once; they print redacted', () => {
  const a = KmsAddress.parse(
    'awskms:region=us-east-1;endpoint=http://127.0.0.1:1;access-key-id=AK;secret-access-key=S3CR3T;key-id=alias/w',
  );
  assert.equal(a.key.toString(), 'awskms:key-id=alias/w');
  assert.ok(!String(a).includes('S3CR3T'));
  assert.ok(!JSON.stringify({ a }).includes('S3CR3T'));
  assert.throws(() => KmsAddress.parse('awskms:region=x;regoin=y;key-id=k'), /does not take 'regoin'/);
  assert.throws(() => KmsAddress.parse('local:./w.key;secret-access-key=x'), /does not take 'secret-access-key'/);
  assert.throws(() => KmsAddress.parse('pkcs11:token=t;pin-valu=1'), /does not take/);
  assert.throws(
    () => KmsAddress.parse('local:'),
    (e: Error) => /local: needs a path/.test(e.message) && !/undefined/.test(e.message),
  );
  assert.ok(KmsAddress.parse('local:k.key').key.equals(KmsAddress.parse('local:./k.key').key));
  assert.ok(KmsAddress.parse('awskms:region=a;endpoint=http://x:1;key-id=k').key.equals(KmsAddress.parse('awskms:key-id=k').key));
  assert.ok(
    !KmsAddress.parse('gcpkms:project=p;location=l;keyring=r;key-id=k').key.equals(
      KmsAddress.parse('gcpkms:project=q;location=l;keyring=r;key-id=k').key,
    ),
  );
  // a stored 0.1.0 URI reads as the reference it names; the module path, endpoint and PIN are dropped
  assert.equal(parseStoredKeyRef('driver:/tmp/evil.mjs;key-id=x').toString(), 'driver:name=evil;key-id=x');
  assert.equal(
    parseStoredKeyRef('pkcs11:module-path=/usr/lib/softhsm.so;token=t;object=w?pin-value=1234').toString(),
    'pkcs11:token=t;key-id=w',
  );
});

describe('no credential is ever written (moto)', { skip: skipUnless('moto') }, () => {
  test('protect enable | rotate, migrate (journal, rekey map), key register, server use: the secret values are nowhere in files or rows', async () => {
    const env = serviceEnv('moto');
    const { KMSClient, CreateKeyCommand } = await import('@aws-sdk/client-kms');
    const SECRET = `TOPSECRET${randomBytes(6).toString('hex')}`;
    const AKID = `AKIA${randomBytes(6).toString('hex').toUpperCase()}`;
    const sdk = new KMSClient({
      region: 'us-east-1',
      endpoint: env.MOTO_ENDPOINT,
      credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    });
    const mk = async (spec: 'SYMMETRIC_DEFAULT' | 'ECC_NIST_P256') =>
      (await sdk.send(new CreateKeyCommand({ KeySpec: spec, KeyUsage: spec === 'SYMMETRIC_DEFAULT' ? 'ENCRYPT_DECRYPT' : 'SIGN_VERIFY' })))
        .KeyMetadata!.KeyId!;
    const w1 = await mk('SYMMETRIC_DEFAULT');
    const w2 = await mk('SYMMETRIC_DEFAULT');
    const signing = await mk('ECC_NIST_P256');
    const kmsUri = `awskms:region=us-east-1;endpoint=${env.MOTO_ENDPOINT};access-key-id=${AKID};secret-access-key=${SECRET}`;
    const work = join(dir, 'scan');
    const home = join(work, 'home');
    process.env.KEYPORT_HOME = home;
    try {
      const a = `sqlite:${join(work, 'a.db')}`;
      const kr = await openKeyring(a);
      await kr.create('k1', { type: 'ec-p256' });
      await kr.create('k2', { type: 'aes256' });
      await protectEnable(kr, `${kmsUri};key-id=${w1}`);
      await protectRotate(kr, `${kmsUri};key-id=${w2}`);
      await kr.close();
      // migrate into an fs store protected by the same KMS
      const cfg = join(dir, 'scan-b.yaml'); // operator configuration, outside the scanned stores
      writeFileSync(cfg, `store: fs:${join(work, 'b')}\nenvelope:\n  wrapper: "${kmsUri};key-id=${w1}"\n`);
      const r = await migrate({ from: a, to: cfg, kms: [`${kmsUri};key-id=${w2}`] });
      assert.equal(r.migrated, 2);
      // a YAML target's journal lives under KEYPORT_HOME, inside the scanned tree
      assert.ok(readdirSync(join(home, 'journals')).length > 0, 'the journal is there to be scanned');
      // register a pre-generated KMS key in a KMS store (its default catalog under KEYPORT_HOME)
      const ext = await openKeyring(kmsUri);
      const p = await ext.protection();
      assert.equal(p.mode, 'external');
      await ext.register('reg', signing);
      assert.ok((await ext.sign('reg', Buffer.from('x'))).length > 0);
      await ext.close();
      // migrate --rekey into the KMS itself: the old→new map and the delegation files beside the journal
      const rk = `sqlite:${join(work, 'rk.db')}`;
      const rkr = await openKeyring(rk);
      // a name of this run: the KMS keeps aliases between runs against one emulator
      await rkr.create(`rk1-${Date.now().toString(36)}`, { type: 'ec-p256' });
      await rkr.close();
      const rr = await migrate({ from: rk, to: kmsUri, rekey: true });
      assert.equal(rr.strategies.rekey, 1, JSON.stringify(rr));
      assert.ok(rr.rekeyMap && existsSync(rr.rekeyMap) && rr.rekeyMap.startsWith(work), 'the rekey map is there to be scanned');
      // the same through the CLI as the issue ran it: protect enable with a credentialed wrapper, key register
      const kp = (args: string[]) =>
        spawnSync(process.execPath, [join(ROOT, 'bin', 'keyport.js'), ...args], {
          cwd: dir,
          encoding: 'utf8',
          env: { ...process.env, KEYPORT_HOME: home, KEYPORT_STORE: '', KEYPORT_KMS: '', KEYPORT_WRAPPER: '' },
        });
      const c = `sqlite:${join(work, 'c.db')}`;
      for (const args of [
        ['key', 'create', 'c1', '--type', 'ec-p256', '--store', c],
        ['protect', 'enable', '--store', c, '--wrapper', `${kmsUri};key-id=${w1}`],
        ['key', 'register', 'reg-cli', '--store', kmsUri, '--key-id', await mk('ECC_NIST_P256')],
      ]) {
        const x = kp(args);
        assert.equal(x.status, 0, `${args.slice(0, 2).join(' ')}: ${x.stderr}`);
      }
      // a server on the envelope store, used through its API
      const { testServer, agentFor, raw } = await import('../support/server.js');
      const srv = await testServer((c) => {
        c.store = { store: `sqlite:${join(work, 'srv.db')}`, envelope: { wrapper: `${kmsUri};key-id=${w1}` } };
      });
      const ag = agentFor();
      const h = { authorization: `Bearer ${srv.admin}` };
      assert.equal((await raw(srv.url, ag, 'POST', '/v1/key/create/srv-k', undefined, h)).status, 200);
      const enc = await raw(
        srv.url,
        ag,
        'POST',
        '/v1/key/encrypt/srv-k',
        JSON.stringify({ plaintext: Buffer.from('hi').toString('base64') }),
        h,
      );
      assert.equal(enc.status, 200, enc.body);
      const all = fileText(work);
      assert.ok(all.length > 1000, 'sanity: the stores are there');
      for (const s of [SECRET, AKID, env.MOTO_ENDPOINT!]) {
        const at = all.indexOf(s);
        assert.ok(at < 0, `${s.slice(0, 8)}… is not written anywhere: ${all.slice(Math.max(0, at - 200), at + 50)}`);
      }
    } finally {
      delete process.env.KEYPORT_HOME;
    }
  });
});

describe('no credential is ever written (moto + PostgreSQL)', { skip: skipUnless('moto') || pgSkip() }, () => {
  test('protect enable on a PostgreSQL store, migrate into one (journal under KEYPORT_HOME), server use: no secret in any row or file', async () => {
    const env = serviceEnv('moto');
    const pgUrl = serviceEnv('postgres')['PG_URL']!;
    const { KMSClient, CreateKeyCommand } = await import('@aws-sdk/client-kms');
    const sdk = new KMSClient({
      region: 'us-east-1',
      endpoint: env.MOTO_ENDPOINT,
      credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    });
    const w = (await sdk.send(new CreateKeyCommand({ KeySpec: 'SYMMETRIC_DEFAULT', KeyUsage: 'ENCRYPT_DECRYPT' }))).KeyMetadata!.KeyId!;
    const SECRET = `TOPSECRET${randomBytes(6).toString('hex')}`;
    const AKID = `AKIA${randomBytes(6).toString('hex').toUpperCase()}`;
    const wrapper = `awskms:region=us-east-1;endpoint=${env.MOTO_ENDPOINT};access-key-id=${AKID};secret-access-key=${SECRET};key-id=${w}`;
    const tables = [`refs_${randomBytes(4).toString('hex')}`, `refs_${randomBytes(4).toString('hex')}`];
    const [p1, p2] = tables.map((t) => `postgres:${pgUrl}?table=${t}`) as [string, string];
    const work = join(dir, 'pg-scan');
    process.env.KEYPORT_HOME = join(work, 'home');
    try {
      const kr = await openKeyring(p1);
      await kr.create('k1', { type: 'ec-p256' });
      await kr.create('k2', { type: 'aes256' });
      await protectEnable(kr, wrapper);
      await kr.rotate('k1');
      await kr.close();
      // migrate into a second PostgreSQL store sealed under the same wrapper: its journal goes under KEYPORT_HOME
      const cfg = join(dir, 'pg-scan-b.yaml');
      writeFileSync(cfg, `store: "${p2}"\nenvelope:\n  wrapper: "${wrapper}"\n`);
      const r = await migrate({ from: p1, to: cfg });
      assert.equal(r.migrated, 2);
      assert.ok(readdirSync(join(work, 'home', 'journals')).length > 0, 'the journal is there to be scanned');
      // a server on the migrated store
      const { testServer, agentFor, raw } = await import('../support/server.js');
      const srv = await testServer((c) => {
        c.store = { store: p2, envelope: { wrapper } };
      });
      const ag = agentFor();
      const h = { authorization: `Bearer ${srv.admin}` };
      assert.equal((await raw(srv.url, ag, 'POST', '/v1/key/create/srv-k', undefined, h)).status, 200);
      const enc = await raw(srv.url, ag, 'POST', '/v1/key/encrypt/k2', JSON.stringify({ plaintext: 'aGk=' }), h);
      assert.equal(enc.status, 200, enc.body);
      // every row of both stores' tables, and every file
      const pg = await import('pg');
      const client = new pg.default.Client({ connectionString: pgUrl });
      await client.connect();
      let rows = '';
      try {
        for (const t of tables) for (const x of [t, `${t}_meta`]) rows += JSON.stringify((await client.query(`SELECT * FROM "${x}"`)).rows);
      } finally {
        await client.end();
      }
      assert.match(rows, /srv-k/, 'sanity: the rows are there');
      const all = rows + fileText(work);
      for (const s of [SECRET, AKID, env.MOTO_ENDPOINT!]) {
        const at = all.indexOf(s);
        assert.ok(at < 0, `${s.slice(0, 8)}… is not written anywhere: ${all.slice(Math.max(0, at - 200), at + 50)}`);
      }
    } finally {
      delete process.env.KEYPORT_HOME;
    }
  });
});

test('a deleted local wrapper is never made again: rotate and create fail, doctor names every version it cannot open', async () => {
  const uri = `sqlite:${join(dir, 'lost.db')}`;
  const wf = join(dir, 'lost-w.key');
  const kr = await openKeyring(uri);
  await kr.create('x', { type: 'ec-p256' });
  await kr.create('y', { type: 'aes256' });
  await protectEnable(kr, `local:${wf}`);
  await kr.close();
  unlinkSync(wf);
  const kr2 = await openKeyring(uri, { kms: [`local:${wf}`] });
  try {
    await assert.rejects(kr2.rotate('x'), /does not exist.*never creates a wrapper key again/);
    await assert.rejects(kr2.create('z'), /does not exist/);
    await assert.rejects(protectRotate(kr2, `local:${wf}`), /does not exist/);
    assert.equal((await kr2.versions('x')).length, 1);
  } finally {
    await kr2.close();
  }
  assert.ok(!existsSync(wf), 'no new wrapper file');
  const d = await doctorStore(uri, { kms: [`local:${wf}`] });
  assert.equal(d.ok, false);
  const c = d.checks.find((x) => x.check === 'sealed versions');
  assert.ok(
    c && c.status === 'problem' && /2 of 2/.test(c.detail) && /x v1/.test(c.detail) && /y v1/.test(c.detail),
    JSON.stringify(d.checks),
  );
  assert.ok(!existsSync(wf));
});

test('key register and rotate --to-key-id go through the Keyring interface: a server says UNSUPPORTED, connecting nowhere', async () => {
  const kp = (args: string[]) =>
    spawnSync(process.execPath, [join(ROOT, 'bin', 'keyport.js'), ...args], {
      cwd: dir,
      encoding: 'utf8',
      env: { ...process.env, KEYPORT_API_KEY: 'kes:v1:ACBA3fYdIHbK0MBqOa2nZGXsrHKxNFXNf0uP0hdLFBJ6' },
    });
  const server = `https://127.0.0.1:${trapPort}`;
  const before = hits.length;
  for (const args of [
    ['key', 'register', 'x', '--key-id', 'alias/k', '--server', server],
    ['key', 'rotate', 'x', '--to-key-id', 'alias/k', '--server', server],
  ]) {
    const r = kp(args);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /works on a KMS store, not through a server/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
  assert.equal(hits.length, before, 'the server was never asked');
  // and on a store that holds its own keys, register is a usage error from the keyring, not the CLI
  const r = kp(['key', 'register', 'x', '--key-id', 'alias/k', '--store', `sqlite:${join(dir, 'own.db')}`]);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /register needs a KMS store/);
});

test("the README's connection examples: one per backend, each a valid connection, with docs/connections.md linked", () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const at = readme.indexOf('### Where KMS connection settings go');
  assert.ok(at > 0 && readme.includes('<!-- connections-example -->'), 'README has the section and marks its examples');
  const section = readme.slice(at, readme.indexOf('\n## ', at));
  const uris = [...section.matchAll(/\b(?:local|awskms|gcpkms|azurekv|pkcs11|kmip|driver):[^\s'`]+/g)].map((m) => m[0]);
  const schemes = new Set(uris.map((u) => KmsAddress.parse(u, { what: 'README example' }).scheme));
  assert.deepEqual([...schemes].sort(), ['awskms', 'azurekv', 'driver', 'gcpkms', 'kmip', 'local', 'pkcs11']);
  for (const place of ['kms:', '--wrapper', '--kms', 'KEYPORT_WRAPPER', 'KEYPORT_KMS']) assert.ok(section.includes(place), place);
  assert.match(section, /\(docs\/connections\.md\)/);
  assert.doesNotMatch(readme, /follows? (a|the) new address/i);
});

test("node commands take the connection to an envelope store's wrapper like every command: --wrapper, KEYPORT_WRAPPER", () => {
  const db = `sqlite:${join(dir, 'node-env.db')}`;
  const w = `local:${join(dir, 'node-env-w.key')}`;
  const kp = (args: string[], env: Record<string, string> = {}) =>
    spawnSync(process.execPath, [join(ROOT, 'bin', 'keyport.js'), ...args], {
      cwd: dir,
      encoding: 'utf8',
      env: { ...process.env, KEYPORT_STORE: '', KEYPORT_KMS: '', KEYPORT_WRAPPER: '', ...env },
    });
  assert.equal(kp(['key', 'create', 'k', '--store', db]).status, 0);
  assert.equal(kp(['protect', 'enable', '--store', db, '--wrapper', w]).status, 0);
  let r = kp(['node', 'init', 'p1', '--profile', 'participant', '--store', db]);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /no configured connection reaches/);
  r = kp(['node', 'init', 'p1', '--profile', 'participant', '--store', db, '--wrapper', w]);
  assert.equal(r.status, 0, r.stderr);
  r = kp(['node', 'rotate', 'p1', '--role', 'signing', '--store', db], { KEYPORT_WRAPPER: w });
  assert.equal(r.status, 0, r.stderr);
  r = kp(['node', 'canton-config', 'p1', '--store', db, '--kms', w]);
  assert.equal(r.status, 0, r.stderr);
});

test('"the same store" is defined once: paths resolve, a YAML is the store it names, a KMS target is its KMS and catalog', async () => {
  const { targetIdentity } = await import('../../src/keys/open.js');
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    assert.equal(targetIdentity('sqlite:k.db'), targetIdentity(`sqlite:${join(dir, 'k.db')}`));
    assert.equal(targetIdentity('sqlite:./k.db'), targetIdentity('sqlite:k.db'));
    assert.notEqual(targetIdentity('sqlite:k.db'), targetIdentity('fs:k.db'));
    writeFileSync(join(dir, 'same.yaml'), 'store: sqlite:k.db\n');
    assert.equal(targetIdentity('same.yaml'), targetIdentity('sqlite:k.db'), 'a YAML is the store it names (beside it)');
    assert.equal(
      targetIdentity('postgres:postgresql://alice:pw1@db.example:5432/keys'),
      targetIdentity('postgres:postgresql://bob:pw2@db.example/keys'),
      'whoever logs in',
    );
    assert.equal(targetIdentity('awskms:region=us-east-1'), targetIdentity('awskms:region=us-east-1'));
    assert.notEqual(targetIdentity('awskms:region=us-east-1'), targetIdentity('awskms:region=eu-west-1'));
  } finally {
    process.chdir(cwd);
  }
  await assert.rejects(
    migrate({ from: `sqlite:${join(dir, 'k.db')}`, to: join(dir, 'same.yaml') }),
    /source and target are the same store/,
  );
});
