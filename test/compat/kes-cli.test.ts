/**
 * The real `kes` CLI (v0.24.0, built from the Go module proxy by scripts/testbed/kes.sh) as a client of
 * keyport server: keys, data keys, encryption, identities — through mTLS with a KES API key.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
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
        { env: { ...process.env, KES_SERVER: t.url, KES_API_KEY: apiKey, NO_COLOR: '1' }, encoding: 'utf8', timeout: 30_000 },
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
});
