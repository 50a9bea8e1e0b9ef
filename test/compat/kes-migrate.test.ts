/**
 * `keyport migrate --from kes-a.yml --to kes-b.yml` next to `kes migrate` (v0.24.0, the real binary) on the
 * same KES server config files with FS keystores: the target directories must end up byte for byte the same,
 * for --merge and for --force. Source keys: written by a real KES v0.24.0 server (protobuf) and legacy JSON
 * keys as KES ≤ 0.21 wrote them. Also: exit codes, --target and -f, refusals on stderr.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { encodeKesKey } from '../../src/store/kes-format.js';
import { kesKeystoreToStoreConfig } from '../../src/store/kes-config.js';
import { loadStoreConfig } from '../../src/keys/open.js';
import { ROOT, serviceEnv, skipUnless } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';

const CLI = join(ROOT, 'bin', 'keyport.js');

describe('KES server configs as stores: keyport migrate vs kes migrate, byte for byte', { skip: skipUnless('kes') }, async () => {
  const env = serviceEnv('kes');
  const dir = tempDir('keyport-kesmig-');
  const run = randomBytes(3).toString('hex');
  const kes = (args: string[]) =>
    new Promise<{ code: number; out: string; err: string }>((resolve) => {
      execFile(
        env['KES_BIN']!,
        args,
        { env: { ...process.env, KES_SERVER: env['KES_SERVER'], KES_API_KEY: env['KES_API_KEY'], NO_COLOR: '1' }, timeout: 60_000 },
        (e, out, errOut) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out: String(out), err: String(errOut) }),
      );
    });
  const keyport = (args: string[]) => {
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
    return { code: r.status ?? 1, out: r.stdout, err: r.stderr };
  };
  const config = (name: string, keys: string) => {
    const f = join(dir, name);
    const tls = dirname(env['KES_CA']!);
    writeFileSync(
      f,
      `version: v1\naddress: 127.0.0.1:0\nadmin:\n  identity: ${env['KES_IDENTITY']}\ntls:\n  key: ${tls}/server.key\n  cert: ${tls}/server.crt\nkeystore:\n  fs:\n    path: ${keys}\n`,
    );
    return f;
  };
  const files = (d: string) =>
    new Map(
      readdirSync(d)
        .filter((f) => !f.startsWith('.'))
        .sort()
        .map((f) => [f, readFileSync(join(d, f))]),
    );

  // the source: 30 keys made by the real KES server, 8 legacy JSON keys, and the two keys the targets also have
  const src = join(dir, 'a');
  mkdirSync(src);
  const made = Array.from({ length: 30 }, (_, i) => `m${run}-${i}`);
  const r0 = await kes(['key', 'create', '-k', ...made]);
  assert.equal(r0.code, 0, r0.err);
  for (const n of made) copyFileSync(join(env['KES_FS_DIR']!, n), join(src, n));
  for (let i = 0; i < 8; i++)
    writeFileSync(
      join(src, `legacy-${i}`),
      encodeKesKey({ secret: randomBytes(32), algorithm: 'AES256', createdAt: '2021-03-04T05:06:07.123456789Z', createdBy: '' }, 'json'),
    );
  const same = readFileSync(join(src, made[0]!));
  copyFileSync(join(src, made[1]!), join(src, 'conflict'));
  writeFileSync(join(src, 'same'), same);
  const seed = (d: string) => {
    mkdirSync(d);
    writeFileSync(join(d, 'same'), same);
    writeFileSync(join(d, 'conflict'), readFileSync(join(src, made[2]!))); // same name, other material
  };
  const A = config('kes-a.yml', src);

  test('the config hook: a KES config is its keystore (fs path relative to the file; AWS Secrets Manager with credentials)', () => {
    assert.deepEqual(loadStoreConfig(A), { store: `kes-fs:${src}` });
    assert.deepEqual(kesKeystoreToStoreConfig({ fs: { path: 'keys' } }, '/etc/kes/config.yml'), { store: 'kes-fs:/etc/kes/keys' });
    process.env['KP_TEST_SK'] = 'sec;ret';
    assert.deepEqual(
      kesKeystoreToStoreConfig(
        {
          aws: {
            secretsmanager: {
              endpoint: 'secretsmanager.eu-west-1.amazonaws.com',
              region: 'eu-west-1',
              kmskey: 'alias/kes',
              // biome-ignore lint/suspicious/noTemplateCurlyInString: KES's own ${VAR} syntax
              credentials: { accesskey: 'AKIA1', secretkey: '${KP_TEST_SK}' },
            },
          },
        },
        '/etc/kes/config.yml',
      ),
      {
        store:
          'awssm:region=eu-west-1;endpoint=https://secretsmanager.eu-west-1.amazonaws.com;kms-key-id=alias/kes;access-key-id=AKIA1;secret-access-key=sec%3Bret',
      },
    );
    assert.throws(
      () => kesKeystoreToStoreConfig({ vault: { endpoint: 'https://v' } }, 'c.yml'),
      /KES 'vault' keystore is not one keyport opens/,
    );
    assert.throws(() => kesKeystoreToStoreConfig({ fs: { path: 'a' }, aws: {} }, 'c.yml'), /more than one keystore/);
  });

  test('--merge: same files as kes migrate --merge; exit 3 for the conflict left untouched (KES: 0), reported on stderr', async () => {
    const bk = join(dir, 'merge-kes');
    const bp = join(dir, 'merge-keyport');
    seed(bk);
    seed(bp);
    const k = await kes(['migrate', '--merge', '--from', A, '--to', config('merge-kes.yml', bk)]);
    assert.equal(k.code, 0, k.err);
    const p = keyport(['migrate', '--merge', '--from', A, '--target', config('merge-keyport.yml', bp)]);
    assert.equal(p.code, 3, p.err);
    assert.match(p.err, /^conflicts \(1, untouched\): conflict$/m);
    assert.doesNotMatch(p.out, /conflict/);
    const want = files(bk);
    const got = files(bp);
    assert.deepEqual([...got.keys()], [...want.keys()]);
    assert.equal(want.size, 30 + 8 + 2);
    for (const [name, bytes] of want) assert.ok(bytes.equals(got.get(name)!), `${name} differs from kes migrate's`);
  });

  test('-f (--force): same files as kes migrate -f, exit 0', async () => {
    const bk = join(dir, 'force-kes');
    const bp = join(dir, 'force-keyport');
    seed(bk);
    seed(bp);
    const k = await kes(['migrate', '-f', '--from', A, '--to', config('force-kes.yml', bk)]);
    assert.equal(k.code, 0, k.err);
    const p = keyport(['migrate', '-f', '--from', A, '--to', config('force-keyport.yml', bp)]);
    assert.equal(p.code, 0, p.err);
    const want = files(bk);
    const got = files(bp);
    assert.deepEqual([...got.keys()], [...want.keys()]);
    for (const [name, bytes] of want) assert.ok(bytes.equals(got.get(name)!), `${name} differs from kes migrate's`);
    assert.ok(got.get('conflict')!.equals(readFileSync(join(src, 'conflict'))));
  });

  test("at KES's limit: 1025 keys (kes migrate lists one page of 1024 and the continuation key), the same files", async () => {
    // past 1025 keys kes migrate v0.24 silently stops: its keystore listing pages by 1024 and the next page is
    // asked for by prefix, so the comparison is made at the most kes migrate moves correctly
    const big = join(dir, 'big');
    mkdirSync(big);
    for (let i = 0; i < 1025; i++)
      writeFileSync(
        join(big, `k${String(i).padStart(4, '0')}`),
        encodeKesKey({
          secret: randomBytes(32),
          hmacKey: randomBytes(32),
          algorithm: 'AES256',
          createdAt: '2024-05-06T07:08:09.123456789Z',
          createdBy: env['KES_IDENTITY']!,
        }),
      );
    const from = config('big.yml', big);
    const bk = join(dir, 'big-kes');
    const bp = join(dir, 'big-keyport');
    const k = await kes(['migrate', '--from', from, '--to', config('big-kes.yml', bk)]);
    assert.equal(k.code, 0, k.err);
    const p = keyport(['migrate', '--from', from, '--to', config('big-keyport.yml', bp)]);
    assert.equal(p.code, 0, p.err);
    const want = files(bk);
    const got = files(bp);
    assert.equal(want.size, 1025);
    assert.deepEqual([...got.keys()], [...want.keys()]);
    for (const [name, bytes] of want) assert.ok(bytes.equals(got.get(name)!), `${name} differs from kes migrate's`);
  });

  test('without --merge or --force: nothing written, the refusal on stderr, exit 1; usage errors exit 2', () => {
    const bp = join(dir, 'plain-keyport');
    seed(bp);
    const p = keyport(['migrate', '--from', A, '--to', config('plain-keyport.yml', bp)]);
    assert.equal(p.code, 1);
    assert.match(p.err, /nothing was written: use --merge or --force/);
    assert.equal(files(bp).size, 2);
    assert.equal(keyport(['migrate', '--from', A]).code, 2);
    assert.equal(keyport(['migrate', '--from', A, '--to', 'fs:x', '--target', 'fs:y']).code, 2);
  });
});

describe('a KES config with an AWS Secrets Manager keystore (moto) as store, next to kes migrate', {
  skip: skipUnless('moto') || skipUnless('kes'),
}, async () => {
  const moto = serviceEnv('moto');
  const kesEnv = serviceEnv('kes');
  const dir = tempDir('keyport-kesaws-');
  const run = randomBytes(3).toString('hex');
  const tls = dirname(kesEnv['KES_CA']!);
  const head = `version: v1\naddress: 127.0.0.1:0\nadmin:\n  identity: ${kesEnv['KES_IDENTITY']}\ntls:\n  key: ${tls}/server.key\n  cert: ${tls}/server.crt\n`;
  const src = join(dir, 'src');
  mkdirSync(src);
  const names = Array.from({ length: 5 }, (_, i) => `aws${run}-${i}`);
  for (const n of names)
    writeFileSync(
      join(src, n),
      encodeKesKey({
        secret: randomBytes(32),
        hmacKey: randomBytes(32),
        algorithm: 'AES256',
        createdAt: '2024-01-02T03:04:05.5Z',
        createdBy: '',
      }),
    );
  const fsYml = join(dir, 'fs.yml');
  writeFileSync(fsYml, `${head}keystore:\n  fs:\n    path: src\n`);
  const awsYml = join(dir, 'aws.yml');
  process.env['KP_TEST_MOTO_SECRET'] = moto['MOTO_SECRET_ACCESS_KEY']!;
  writeFileSync(
    awsYml,
    `${head}keystore:\n  aws:\n    secretsmanager:\n      endpoint: ${moto['MOTO_ENDPOINT']}\n      region: ${moto['MOTO_REGION']}\n      credentials:\n        accesskey: ${moto['MOTO_ACCESS_KEY_ID']}\n        secretkey: \${KP_TEST_MOTO_SECRET}\n`,
  );
  const keyport = (args: string[]) => {
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
    return { code: r.status ?? 1, out: r.stdout, err: r.stderr };
  };

  test('keyport migrate fs config → aws config; key ls --store aws config; kes migrate reads the secrets back', async () => {
    const m = keyport(['migrate', '--from', fsYml, '--to', awsYml, `aws${run}-*`]);
    assert.equal(m.code, 0, m.err);
    const ls = keyport(['key', 'ls', `aws${run}-*`, '--store', awsYml, '--json']);
    assert.equal(ls.code, 0, ls.err);
    assert.deepEqual((JSON.parse(ls.out) as { name: string }[]).map((k) => k.name).sort(), names);
    // the real kes migrate takes the secrets keyport wrote back into an FS keystore: the same bytes as the source
    const back = join(dir, 'back');
    writeFileSync(join(dir, 'back.yml'), `${head}keystore:\n  fs:\n    path: ${back}\n`);
    const k = spawnSync(kesEnv['KES_BIN']!, ['migrate', '--from', awsYml, '--to', join(dir, 'back.yml'), `aws${run}-*`], {
      encoding: 'utf8',
      timeout: 60_000,
      cwd: dir,
    });
    assert.equal(k.status, 0, k.stderr + k.stdout);
    for (const n of names) assert.ok(readFileSync(join(back, n)).equals(readFileSync(join(src, n))), `${n} differs`);
  });
});
