/**
 * A real MinIO server (built from the Go module proxy by scripts/testbed/minio.sh) with keyport server as its
 * KMS, driven by the real `mc`: SSE-S3, SSE-KMS, bucket default encryption, multipart, `mc admin kms key
 * create|list|status`, restart of both, the KMS down (MinIO fails cleanly) and back (MinIO recovers). MinIO
 * authenticates with a policy-bound API key (MinIO's documented KES policy), not the admin's. The same
 * scenario, on the same KES config file, runs against the real KES v0.24.0 as the baseline.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { generateApiKey } from '../../src/server/identity.js';
import { ROOT, serviceEnv, skipUnless, TESTBED_STATE } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';

const MINIO_SH = join(ROOT, 'scripts', 'testbed', 'minio.sh');

/** minio + mc built (cached); like skipUnless: a failure in CI, a listed skip locally */
function minioSkip(): false | string {
  const r = spawnSync('bash', [MINIO_SH, 'install'], { encoding: 'utf8', timeout: 40 * 60_000 });
  if (r.status === 0) return false;
  const why = `minio: ${(r.stderr || '').trim().split('\n').slice(-2).join(' | ')}`;
  if (process.env.CI === 'true') throw new Error(`testbed service unavailable in CI: ${why}`);
  mkdirSync(TESTBED_STATE, { recursive: true });
  writeFileSync(join(TESTBED_STATE, 'skipped.txt'), `${why}\n`, { flag: 'a' });
  return `SKIPPED (service unavailable): ${why}`;
}

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** resolves once nothing listens on 127.0.0.1:port (15 s at most), else fails naming what still runs */
async function portClosed(port: number, what: string): Promise<void> {
  for (let i = 0; i < 150; i++) {
    const open = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (!open) return;
    await sleep(100);
  }
  throw new Error(`${what} still listens on port ${port} after it was stopped`);
}

function run(bin: string, args: string[], env: Record<string, string> = {}, timeout = 120_000) {
  return new Promise<{ code: number; out: string; err: string }>((resolve) => {
    execFile(bin, args, { env: { ...process.env, ...env }, timeout, maxBuffer: 64 << 20 }, (e, out, errOut) =>
      resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out: String(out), err: String(errOut) }),
    );
  });
}

const skip = skipUnless('kes') || minioSkip();

for (const kms of ['keyport', 'kes'] as const) {
  describe(`MinIO with ${kms === 'keyport' ? 'keyport server' : 'real KES v0.24.0 (baseline)'} as its KMS`, { skip }, async () => {
    const kesEnv = serviceEnv('kes');
    const dir = tempDir(`keyport-minio-${kms}-`);
    const kmsPort = await freePort();
    // TLS for the KMS: the kes CLI's own certificate maker (IP SAN 127.0.0.1)
    const mk = spawnSync(kesEnv['KES_BIN']!, [
      'identity',
      'new',
      '--key',
      join(dir, 'server.key'),
      '--cert',
      join(dir, 'server.crt'),
      '--ip',
      '127.0.0.1',
      'localhost',
    ]);
    assert.equal(mk.status, 0, String(mk.stderr));
    const admin = generateApiKey();
    const minioKey = generateApiKey();
    // one KES config file, served by either server: MinIO's documented policy for its identity
    const config = join(dir, 'kes.yml');
    writeFileSync(
      config,
      `version: v1
address: 127.0.0.1:${kmsPort}
admin:
  identity: ${admin.identity}
tls:
  key: ${join(dir, 'server.key')}
  cert: ${join(dir, 'server.crt')}
policy:
  minio:
    allow:
    - /v1/key/create/*
    - /v1/key/generate/*
    - /v1/key/decrypt/*
    - /v1/key/list/*
    - /v1/status
    - /v1/metrics
    - /v1/log/audit
    - /v1/log/error
    identities:
    - ${minioKey.identity}
keystore:
  fs:
    path: ${join(dir, 'keys')}
log:
  error: on
  audit: off
`,
    );
    let kmsProc: ChildProcess | undefined;
    const startKms = async () => {
      const [bin, args] =
        kms === 'keyport'
          ? [process.execPath, [join(ROOT, 'bin', 'keyport.js'), 'server', '--config', config]]
          : [kesEnv['KES_BIN']!, ['server', '--config', config]];
      const p = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let errText = '';
      p.stderr!.on('data', (c: Buffer) => (errText += c.toString()));
      kmsProc = p;
      for (let i = 0; i < 300; i++) {
        const up = await new Promise<boolean>((resolve) => {
          const s = connect(kmsPort, '127.0.0.1', () => {
            s.destroy();
            resolve(true);
          });
          s.on('error', () => resolve(false));
        });
        if (up) return;
        if (p.exitCode !== null) throw new Error(`${kms} server exited: ${errText}`);
        await sleep(100);
      }
      throw new Error(`${kms} server did not start: ${errText}`);
    };
    const stopKms = async () => {
      const p = kmsProc;
      if (!p || p.exitCode !== null) return;
      const gone = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await Promise.race([gone, sleep(10_000)]);
      if (p.exitCode === null) p.kill('SIGKILL');
      await portClosed(kmsPort, kms);
    };

    const minioState = join(dir, 'minio');
    const minioPort = await freePort();
    const minioEnv = {
      MINIO_TB_STATE: minioState,
      MINIO_TB_PORT: String(minioPort),
      MINIO_TB_KMS_ENDPOINT: `https://127.0.0.1:${kmsPort}`,
      MINIO_TB_KMS_API_KEY: minioKey.key,
      MINIO_TB_KMS_CA: join(dir, 'server.crt'),
      MINIO_TB_KMS_DEFAULT_KEY: 'minio-default',
    };
    let mcBin = '';
    const mcEnv = { MC_CONFIG_DIR: join(dir, 'mc'), NO_COLOR: '1', MC_INSECURE: 'false' };
    const mc = (args: string[]) => run(mcBin, ['--no-color', ...args], mcEnv);
    const startMinio = async () => {
      const r = await run('bash', [MINIO_SH, 'start'], minioEnv, 180_000);
      assert.equal(r.code, 0, r.err);
      const env = Object.fromEntries(
        r.out
          .split('\n')
          .map((l) => /^([A-Z_]+)=(.*)$/.exec(l))
          .filter((m) => m)
          .map((m) => [m![1], m![2]]),
      ) as Record<string, string>;
      mcBin = env['MC_BIN']!;
      minioPid = Number(readFileSync(join(minioState, 'minio.pid'), 'utf8'));
      const alias = await mc(['alias', 'set', 'kp', env['MINIO_ENDPOINT']!, env['MINIO_ROOT_USER']!, env['MINIO_ROOT_PASSWORD']!]);
      assert.equal(alias.code, 0, alias.err + alias.out);
      // ready: MinIO has loaded its (KMS-encrypted) IAM data
      for (let i = 0; i < 120; i++) {
        if ((await mc(['ls', 'kp'])).code === 0) return;
        await sleep(500);
      }
      throw new Error(`minio not ready: ${readFileSync(join(minioState, 'minio.log'), 'utf8').slice(-2000)}`);
    };
    // the pid is kept here too: the temp dir (with the pid file) may be removed before this file's after() runs
    let minioPid = 0;
    const stopMinio = async () => {
      await run('bash', [MINIO_SH, 'stop'], minioEnv);
      if (minioPid) {
        for (const target of [-minioPid, minioPid]) {
          try {
            process.kill(target, 'SIGKILL');
          } catch {
            // already gone (or not a process group)
          }
        }
        minioPid = 0;
      }
      // stopped means its port is free: a restart must be served by a new MinIO, not the old one still listening
      await portClosed(minioPort, 'MinIO');
    };
    after(async () => {
      await stopMinio();
      await stopKms();
    });

    await startKms();
    await startMinio();
    const small = randomBytes(100_000);
    const big = randomBytes(20 << 20); // multipart (minio-go splits uploads over 16 MiB)
    writeFileSync(join(dir, 'small'), small);
    writeFileSync(join(dir, 'big'), big);
    const cat = async (path: string) => {
      const r = await run(mcBin, ['--no-color', 'cat', path], mcEnv);
      return r;
    };
    const catBytes = (path: string) =>
      new Promise<{ code: number; bytes: Buffer; err: string }>((resolve) => {
        const p = spawn(mcBin, ['--no-color', 'cat', path], { env: { ...process.env, ...mcEnv } });
        const chunks: Buffer[] = [];
        let e = '';
        p.stdout.on('data', (c: Buffer) => chunks.push(c));
        p.stderr.on('data', (c: Buffer) => (e += c.toString()));
        p.on('close', (code) => resolve({ code: code ?? 1, bytes: Buffer.concat(chunks), err: e }));
      });
    const stat = async (path: string) => {
      const r = await mc(['stat', '--json', path]);
      assert.equal(r.code, 0, r.err + r.out);
      return JSON.parse(r.out) as { etag?: string; metadata?: Record<string, string> };
    };
    const sse = (s: { metadata?: Record<string, string> }) => s.metadata?.['X-Amz-Server-Side-Encryption'];

    test('mc admin kms key create | list | status with a policy-bound identity', async () => {
      let r = await mc(['admin', 'kms', 'key', 'create', 'kp', 'app-key']);
      assert.equal(r.code, 0, r.err + r.out);
      r = await mc(['admin', 'kms', 'key', 'list', 'kp', '--json']);
      assert.equal(r.code, 0, r.err + r.out);
      assert.match(r.out, /app-key/);
      assert.match(r.out, /minio-default/);
      r = await mc(['admin', 'kms', 'key', 'status', 'kp']);
      assert.equal(r.code, 0, r.err + r.out);
      assert.match(r.out, /minio-default/);
      r = await mc(['admin', 'kms', 'key', 'status', 'kp', 'app-key']);
      assert.equal(r.code, 0, r.err + r.out);
      assert.match(r.out, /Encryption\s*[:✔]|✔|success/i);
    });

    test('SSE-S3, SSE-KMS, bucket default encryption, multipart: stored encrypted, read back equal', async () => {
      for (const b of ['sse-s3', 'sse-kms', 'default-enc']) {
        const m = await mc(['mb', `kp/${b}`]);
        assert.equal(m.code, 0, m.err + m.out);
      }
      let r = await mc(['cp', '--enc-s3', 'kp/sse-s3/', join(dir, 'small'), 'kp/sse-s3/small']);
      assert.equal(r.code, 0, r.err + r.out);
      r = await mc(['cp', '--enc-kms', 'kp/sse-kms/=app-key', join(dir, 'small'), 'kp/sse-kms/small']);
      assert.equal(r.code, 0, r.err + r.out);
      r = await mc(['cp', '--enc-kms', 'kp/sse-kms/=app-key', join(dir, 'big'), 'kp/sse-kms/big']);
      assert.equal(r.code, 0, r.err + r.out);
      r = await mc(['encrypt', 'set', 'sse-kms', 'app-key', 'kp/default-enc']);
      assert.equal(r.code, 0, r.err + r.out);
      r = await mc(['cp', join(dir, 'big'), 'kp/default-enc/big']);
      assert.equal(r.code, 0, r.err + r.out);
      assert.equal(sse(await stat('kp/sse-s3/small')), 'AES256');
      assert.equal(sse(await stat('kp/sse-kms/small')), 'aws:kms');
      assert.equal(sse(await stat('kp/sse-kms/big')), 'aws:kms');
      assert.equal(sse(await stat('kp/default-enc/big')), 'aws:kms');
      // the 20 MiB uploads went in parts (an S3 multipart ETag ends in -<parts>); the small ones did not
      for (const p of ['kp/sse-kms/big', 'kp/default-enc/big']) assert.match((await stat(p)).etag ?? '', /-2$/, `${p} is multipart`);
      assert.doesNotMatch((await stat('kp/sse-kms/small')).etag ?? '', /-\d+$/);
      for (const [p, want] of [
        ['kp/sse-s3/small', small],
        ['kp/sse-kms/small', small],
        ['kp/sse-kms/big', big],
        ['kp/default-enc/big', big],
      ] as const) {
        const c = await catBytes(p);
        assert.equal(c.code, 0, c.err);
        assert.ok(c.bytes.equals(want), `${p} read back differs`);
      }
    });

    test('restart of both: the objects still decrypt', async () => {
      const before = minioPid;
      await stopMinio();
      await stopKms();
      await startKms();
      await startMinio();
      assert.notEqual(minioPid, before, 'a new MinIO process serves after the restart');
      const c = await catBytes('kp/sse-kms/big');
      assert.equal(c.code, 0, c.err);
      assert.ok(c.bytes.equals(big));
      assert.ok((await catBytes('kp/sse-s3/small')).bytes.equals(small));
    });

    test('KMS down: MinIO refuses encrypted reads and writes cleanly; KMS back: MinIO recovers', async () => {
      await stopKms();
      // MinIO caches nothing of a data key: a new object needs the KMS
      const put = await mc(['cp', '--enc-kms', 'kp/sse-kms/=app-key', join(dir, 'small'), 'kp/sse-kms/while-down']);
      assert.notEqual(put.code, 0, 'an SSE-KMS upload must fail while the KMS is down');
      assert.doesNotMatch(put.err + put.out, /panic|goroutine/);
      const get = await cat('kp/sse-kms/small');
      assert.notEqual(get.code, 0, 'an SSE-KMS read must fail while the KMS is down');
      assert.doesNotMatch(get.err + get.out, /panic|goroutine/);
      await startKms();
      let ok = false;
      for (let i = 0; i < 60 && !ok; i++) {
        const c = await catBytes('kp/sse-kms/small');
        ok = c.code === 0 && c.bytes.equals(small);
        if (!ok) await sleep(500);
      }
      assert.ok(ok, 'MinIO did not recover after the KMS came back');
      const again = await mc(['cp', '--enc-kms', 'kp/sse-kms/=app-key', join(dir, 'small'), 'kp/sse-kms/after']);
      assert.equal(again.code, 0, again.err + again.out);
    });
  });
}
