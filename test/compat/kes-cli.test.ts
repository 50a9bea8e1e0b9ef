/**
 * The real `kes` CLI (v0.24.0, built from the Go module proxy by scripts/testbed/kes.sh) as a client of
 * keyport server: keys, data keys, encryption, identities — through mTLS with a KES API key.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { skipUnless, serviceEnv } from '../support/testbed.js';
import { testServer } from '../support/server.js';

describe('kes CLI v0.24.0 against keyport server', { skip: skipUnless('kes') }, async () => {
  const bin = serviceEnv('kes')['KES_BIN']!;
  const t = await testServer();
  // asynchronous: the server answering it runs in this process
  const kes = (args: string[], apiKey = t.admin) =>
    new Promise<{ code: number; out: string; err: string }>((resolve) => {
      execFile(
        bin,
        args,
        {
          env: {
            ...process.env,
            KES_SERVER: t.url,
            KES_API_KEY: apiKey,
            MINIO_KES_SERVER: t.url,
            MINIO_KES_API_KEY: apiKey,
            NO_COLOR: '1',
          },
          encoding: 'utf8',
          timeout: 30_000,
        },
        (e, out, errOut) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err: errOut }),
      );
    });

  test('key create, import, ls, info, encrypt/decrypt, dek, rm', async () => {
    let r = await kes(['key', 'create', '-k', 'kes-made-1', 'kes-made-2']);
    assert.equal(r.code, 0, r.err);
    const raw = randomBytes(32);
    r = await kes(['key', 'import', '-k', 'kes-imported', raw.toString('base64')]);
    assert.equal(r.code, 0, r.err);
    r = await kes(['key', 'ls', '-k', '--json']);
    assert.equal(r.code, 0, r.err);
    // kes v0.24 prints the JSON array and then, by a missing return, the table too
    const names = JSON.parse(r.out.split('\n')[0]!) as string[];
    for (const n of ['kes-made-1', 'kes-made-2', 'kes-imported']) assert.ok(names.includes(n), `${n} in ${r.out}`);
    r = await kes(['key', 'info', '-k', '--json', 'kes-made-1']);
    assert.equal(r.code, 0, r.err);
    assert.equal(JSON.parse(r.out).name, 'kes-made-1');
    r = await kes(['key', 'encrypt', '-k', 'kes-imported', 'hello from kes']);
    assert.equal(r.code, 0, r.err);
    const ct = /ciphertext"?:\s*"?([A-Za-z0-9+/=]+)/.exec(r.out)![1]!;
    r = await kes(['key', 'decrypt', '-k', 'kes-imported', ct]);
    assert.equal(r.code, 0, r.err);
    const pt = /plaintext"?:\s*"?([A-Za-z0-9+/=]+)/.exec(r.out)![1]!;
    assert.equal(Buffer.from(pt, 'base64').toString(), 'hello from kes');
    r = await kes(['key', 'dek', '-k', 'kes-made-2']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /plaintext/);
    r = await kes(['key', 'rm', '-k', 'kes-made-2']);
    assert.equal(r.code, 0, r.err);
    r = await kes(['key', 'info', '-k', 'kes-made-2']);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /key does not exist/);
  });

  test('identity commands and policy enforcement as the kes client sees it', async () => {
    let r = await kes(['identity', 'info', '-k']);
    assert.equal(r.code, 0, r.err);
    r = await kes(['identity', 'ls', '-k', '--json']);
    assert.equal(r.code, 0, r.err);
    assert.ok(r.out.includes(t.app.identity), r.out);
    r = await kes(['key', 'create', '-k', 'my-app-from-kes'], t.app.key);
    assert.equal(r.code, 0, r.err);
    r = await kes(['key', 'create', '-k', 'not-my-app'], t.app.key);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /not authorized|insufficient permissions/);
    r = await kes(['key', 'ls', '-k'], t.stranger.key);
    assert.notEqual(r.code, 0);
  });

  test('ls and key ls by prefix (KES v0.24: the server lists by prefix, a trailing * is not a glob there)', async () => {
    for (const n of ['pfx-a', 'pfx-b', 'pfy']) assert.equal((await kes(['key', 'create', '-k', n])).code, 0);
    let r = await kes(['key', 'ls', '-k', '--json', 'pfx']);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(JSON.parse(r.out.split('\n')[0]!), ['pfx-a', 'pfx-b']);
    r = await kes(['ls', '-k', '--json', 'pf']);
    assert.equal(r.code, 0, r.err);
    for (const n of ['pfx-a', 'pfx-b', 'pfy']) assert.match(r.out, new RegExp(n));
  });

  test('policy info | ls | show, identity info of another identity', async () => {
    let r = await kes(['policy', 'ls', '-k', '--json']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /my-app/);
    r = await kes(['policy', 'info', '-k', '--json', 'my-app']);
    assert.equal(r.code, 0, r.err);
    assert.equal(JSON.parse(r.out).name, 'my-app');
    r = await kes(['policy', 'show', '-k', '--json', 'my-app']);
    assert.equal(r.code, 0, r.err);
    const shown = JSON.parse(r.out) as { allow?: Record<string, unknown>; deny?: Record<string, unknown> };
    assert.ok(shown.allow && '/v1/key/create/my-app*' in shown.allow, r.out);
    assert.ok(shown.deny && '/v1/key/decrypt/my-app-internal*' in shown.deny, r.out);
    r = await kes(['identity', 'info', '-k', '--json', t.app.identity]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /my-app/);
    r = await kes(['policy', 'info', '-k', 'no-such-policy']);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /policy does not exist/);
  });

  test("status (all forms) and metric: the machine's CPUs, no series kes refuses", async () => {
    const os = await import('node:os');
    let r = await kes(['status', '-k', '--json']);
    assert.equal(r.code, 0, r.err);
    const st = JSON.parse(r.out) as { num_cpu_used?: number };
    assert.equal(st.num_cpu_used, os.availableParallelism());
    r = await kes(['status', '-k']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, new RegExp(`CPUs\\s+${os.availableParallelism()}\\b`));
    r = await kes(['status', '-k', '--short']);
    assert.equal(r.code, 0, r.err);
    r = await kes(['status', '-k', '--api']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /\/v1\/key\/list\//);
    // not on a terminal, kes metric prints one JSON object per scrape until interrupted
    const m = await streamFor(['metric', '-k', '--rate', '1s'], 20_000, undefined, (out) => out.split('\n').filter(Boolean).length >= 2);
    assert.doesNotMatch(m.err, /more than one metric|failed to fetch/, m.err);
    const first = JSON.parse(m.out.split('\n')[0]!) as Record<string, unknown>;
    assert.equal(first['kes_system_num_cpu_used'], os.availableParallelism(), m.out);
    assert.ok(Number(first['kes_http_request_success']) > 0, m.out);
    assert.ok(m.out.split('\n').filter(Boolean).length >= 2, `two scrapes expected: ${m.out}`);
  });

  test('log --audit and --error stream until stopped', async () => {
    for (const flag of ['--audit', '--error']) {
      const r = await streamFor(['log', '-k', flag, '--json'], 2000, () => void kes(['key', 'ls', '-k']));
      assert.equal(r.alive, true, `kes log ${flag} ended early: ${r.err}`);
      assert.doesNotMatch(r.err.replace(/Error: interrupt signal received\s*/g, ''), /error|failed/i, `${flag}: ${r.err}`);
    }
  });

  /**
   * run a streaming kes command until `done(output)` holds or `ms` have passed (`during` half-way through the
   * first two seconds), then interrupt it: its output, and whether it was still running
   */
  function streamFor(args: string[], ms: number, during?: () => void, done?: (out: string) => boolean) {
    return new Promise<{ out: string; err: string; alive: boolean }>((resolve) => {
      const p = spawn(bin, args, { env: { ...process.env, KES_SERVER: t.url, KES_API_KEY: t.admin, NO_COLOR: '1' } });
      let out = '';
      let errOut = '';
      p.stdout.on('data', (c: Buffer) => (out += c.toString()));
      p.stderr.on('data', (c: Buffer) => (errOut += c.toString()));
      setTimeout(() => during?.(), Math.min(ms, 2000) / 2);
      const t0 = Date.now();
      const tick = setInterval(() => {
        if (!done?.(out) && Date.now() - t0 < ms) return;
        clearInterval(tick);
        const alive = p.exitCode === null;
        p.kill('SIGINT');
        p.once('close', () => resolve({ out, err: errOut, alive }));
        if (!alive) resolve({ out, err: errOut, alive });
      }, 250);
    });
  }
});
