/**
 * The real `kes` CLI (v0.24.0, built from the Go module proxy by scripts/testbed/kes.sh) as a client of
 * keyport server: keys, data keys, encryption, identities — through mTLS with a KES API key.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { skipUnless, serviceEnv } from '../support/testbed.js';
import { testServer } from '../support/server.js';

describe('kes CLI v0.24.0 against keyport server', { skip: skipUnless('kes') }, async () => {
  const bin = serviceEnv('kes')['KES_BIN']!;
  const t = await testServer();
  const kes = (args: string[], apiKey = t.admin) => {
    const r = spawnSync(bin, args, { env: { ...process.env, KES_SERVER: t.url, KES_API_KEY: apiKey, NO_COLOR: '1' }, encoding: 'utf8', timeout: 30_000 });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };

  test('key create, import, ls, info, encrypt/decrypt, dek, rm', () => {
    let r = kes(['key', 'create', '-k', 'kes-made-1', 'kes-made-2']);
    assert.equal(r.code, 0, r.err);
    const raw = randomBytes(32);
    r = kes(['key', 'import', '-k', 'kes-imported', raw.toString('base64')]);
    assert.equal(r.code, 0, r.err);
    r = kes(['key', 'ls', '-k', '--json']);
    assert.equal(r.code, 0, r.err);
    const names = JSON.parse(r.out) as string[];
    for (const n of ['kes-made-1', 'kes-made-2', 'kes-imported']) assert.ok(names.includes(n), `${n} in ${r.out}`);
    r = kes(['key', 'info', '-k', '--json', 'kes-made-1']);
    assert.equal(r.code, 0, r.err);
    assert.equal(JSON.parse(r.out).name, 'kes-made-1');
    r = kes(['key', 'encrypt', '-k', 'kes-imported', 'hello from kes']);
    assert.equal(r.code, 0, r.err);
    const ct = /ciphertext"?:\s*"?([A-Za-z0-9+/=]+)/.exec(r.out)![1]!;
    r = kes(['key', 'decrypt', '-k', 'kes-imported', ct]);
    assert.equal(r.code, 0, r.err);
    const pt = /plaintext"?:\s*"?([A-Za-z0-9+/=]+)/.exec(r.out)![1]!;
    assert.equal(Buffer.from(pt, 'base64').toString(), 'hello from kes');
    r = kes(['key', 'dek', '-k', 'kes-made-2']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /plaintext/);
    r = kes(['key', 'rm', '-k', 'kes-made-2']);
    assert.equal(r.code, 0, r.err);
    r = kes(['key', 'info', '-k', 'kes-made-2']);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /key does not exist/);
  });

  test('identity commands and policy enforcement as the kes client sees it', () => {
    let r = kes(['identity', 'info', '-k']);
    assert.equal(r.code, 0, r.err);
    r = kes(['identity', 'ls', '-k', '--json']);
    assert.equal(r.code, 0, r.err);
    assert.ok(r.out.includes(t.app.identity));
    r = kes(['key', 'create', '-k', 'my-app-from-kes'], t.app.key);
    assert.equal(r.code, 0, r.err);
    r = kes(['key', 'create', '-k', 'not-my-app'], t.app.key);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /not authorized|insufficient permissions/);
    r = kes(['key', 'ls', '-k'], t.stranger.key);
    assert.notEqual(r.code, 0);
  });
});
