import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { RemoteKeyring } from '../../src/client/remote.js';
import { openKeyring } from '../../src/keys/open.js';
import { kesDecrypt } from '../../src/crypto/kes-ciphertext.js';
import { isKeyportError } from '../../src/errors.js';
import { testServer, agentFor, raw } from '../support/server.js';

describe('keyport server (KES v1 API)', async () => {
  const t = await testServer();
  const admin = new RemoteKeyring(t.url, { apiKey: t.admin, insecure: true });
  const app = new RemoteKeyring(t.url, { apiKey: t.app.key, insecure: true });
  const stranger = new RemoteKeyring(t.url, { apiKey: t.stranger.key, insecure: true });

  test('admin: create, import, describe, list, encrypt/decrypt, generate, hmac, delete', async () => {
    await admin.create('k1');
    await admin.import('k2', Buffer.alloc(32, 9));
    const d = await admin.describe('k1');
    assert.equal(d.type, 'aes256');
    assert.ok(d.fingerprint.startsWith('kcv1'));
    assert.deepEqual((await admin.list('k*')).names, ['k1', 'k2']);
    const ct = await admin.encrypt('k1', Buffer.from('secret'), Buffer.from('ctx'));
    assert.deepEqual(await admin.decrypt('k1', ct, Buffer.from('ctx')), Buffer.from('secret'));
    await assert.rejects(admin.decrypt('k1', ct, Buffer.from('other')), (e) => isKeyportError(e, 'INVALID_CIPHERTEXT'));
    // the server's ciphertext is the KES format under the imported key
    const ct2 = await admin.encrypt('k2', Buffer.from('kes format'));
    assert.deepEqual(kesDecrypt(Buffer.alloc(32, 9), ct2), Buffer.from('kes format'));
    const dk = await admin.generate('k1');
    assert.deepEqual(await admin.decrypt('k1', dk.ciphertext), dk.plaintext);
    assert.equal((await admin.hmac('k1', Buffer.from('m'))).length, 32);
    await assert.rejects(admin.create('k1'), (e) => isKeyportError(e, 'EXISTS'));
    await admin.delete('k2');
    await assert.rejects(admin.describe('k2'), (e) => isKeyportError(e, 'NOT_FOUND'));
  });

  test('keyport additions: asymmetric keys, sign/verify, public key, rotate', async () => {
    await admin.create('sig', { type: 'ec-p256' });
    const sig = await admin.sign('sig', Buffer.from('m'));
    assert.ok(await admin.verify('sig', Buffer.from('m'), sig));
    assert.equal((await admin.publicKey('sig')).length, 91);
    const r = await admin.rotate('sig');
    assert.equal(r.version, 2);
    assert.ok(await admin.verify('sig', Buffer.from('m'), sig));
    // versions: both listed, oldest first, the newest current, each with its own public key
    const vs = await admin.versions('sig');
    assert.deepEqual(
      vs.map((v) => [v.version, v.current]),
      [
        [1, false],
        [2, true],
      ],
    );
    assert.equal(vs[1]!.fingerprint, r.fingerprint);
    assert.notEqual(vs[0]!.publicKey, vs[1]!.publicKey);
    assert.deepEqual(Buffer.from(vs[0]!.publicKey!, 'base64'), await admin.publicKey('sig', 1));
    await assert.rejects(admin.versions('no-such-key'), (e) => isKeyportError(e, 'NOT_FOUND'));
  });

  test('policies: allow, deny wins, unknown identity and missing certificate are refused', async () => {
    await app.create('my-app-data');
    await app.create('my-app-internal');
    const dk = await app.generate('my-app-data');
    assert.deepEqual(await app.decrypt('my-app-data', dk.ciphertext), dk.plaintext);
    await assert.rejects(app.generate('my-app-internal'), (e) => isKeyportError(e, 'PERMISSION'));
    await assert.rejects(app.create('other'), (e) => isKeyportError(e, 'PERMISSION'));
    await assert.rejects(app.delete('my-app-data'), (e) => isKeyportError(e, 'PERMISSION'));
    await assert.rejects(stranger.describe('my-app-data'), (e) => isKeyportError(e, 'PERMISSION') && !/my-app/.test(e.message));
    const anon = await raw(t.url, agentFor(), 'GET', '/v1/key/describe/my-app-data');
    assert.equal(anon.status, 400);
    assert.deepEqual(JSON.parse(anon.body), { message: 'tls: client certificate is required', code: 'AUTH' });
    // the bearer form of an API key is the same identity
    const bearer = await raw(t.url, agentFor(), 'GET', '/v1/key/describe/my-app-data', undefined, { Authorization: `Bearer ${t.app.key}` });
    assert.equal(bearer.status, 200);
    const self = JSON.parse((await raw(t.url, agentFor(t.app), 'GET', '/v1/identity/self/describe')).body);
    assert.equal(self.identity, t.app.identity);
    // as the KES client decodes it (kms-go/kes DescribeSelf): the policy's name, its rules beside it
    assert.equal(self.policy, 'my-app');
    assert.ok('/v1/key/create/my-app*' in self.allow && '/v1/key/decrypt/my-app-internal*' in self.deny, JSON.stringify(self));
  });

  test('HTTP details: POST for PUT, 405 with Accept, 413 over the body limit, JSON errors, /version, /v1/api, metrics', async () => {
    const a = agentFor(t.app);
    const ad = agentFor((await import('../../src/server/identity.js')).parseApiKey(t.admin));
    assert.equal((await raw(t.url, ad, 'POST', '/v1/key/create/post-made')).status, 200);
    const m = await raw(t.url, ad, 'DELETE', '/v1/key/describe/x');
    assert.equal(m.status, 405);
    assert.equal(m.headers['accept'], 'GET');
    const big = await raw(
      t.url,
      ad,
      'PUT',
      '/v1/key/encrypt/post-made',
      JSON.stringify({ plaintext: Buffer.alloc(1 << 20).toString('base64') }),
      { 'Content-Type': 'application/json' },
    );
    assert.equal(big.status, 413);
    assert.ok(JSON.parse(big.body).message);
    const bad = await raw(t.url, ad, 'PUT', '/v1/key/encrypt/post-made', '{"plaintext": "!!notbase64"}');
    assert.equal(bad.status, 400);
    assert.deepEqual(JSON.parse(bad.body), { message: 'invalid request body', code: 'INVALID_INPUT' });
    assert.equal(JSON.parse((await raw(t.url, a, 'GET', '/version')).body).version.startsWith('v0.24'), true);
    const api = JSON.parse((await raw(t.url, ad, 'GET', '/v1/api')).body) as { path: string; max_body: number }[];
    assert.ok(api.some((r) => r.path === '/v1/key/encrypt/' && r.max_body === 1 << 20));
    const metrics = await raw(t.url, ad, 'GET', '/v1/metrics');
    assert.match(metrics.body, /kes_http_request_success/);
    assert.equal((await raw(t.url, ad, 'GET', '/v1/ready')).status, 200);
  });

  test('the audit log streams requests and never carries key bytes or plaintexts', async () => {
    const ad = agentFor((await import('../../src/server/identity.js')).parseApiKey(t.admin));
    const lines: string[] = [];
    const streamReq = request(t.url + '/v1/log/audit', { agent: ad, method: 'GET' }, (res) =>
      res.on('data', (d: Buffer) => lines.push(d.toString())),
    );
    streamReq.end();
    await new Promise((r) => setTimeout(r, 200));
    await admin.import('audited', Buffer.alloc(32, 0x41));
    const secret = Buffer.from('very secret plaintext 123');
    const ct = await admin.encrypt('audited', secret);
    await admin.decrypt('audited', ct);
    await new Promise((r) => setTimeout(r, 200));
    streamReq.destroy();
    const all = lines.join('');
    assert.match(all, /"path":"\/v1\/key\/encrypt\/audited"/);
    for (const needle of [
      secret.toString(),
      secret.toString('base64'),
      ct.toString('base64'),
      Buffer.alloc(32, 0x41).toString('base64'),
      'AAAAAAAA',
    ])
      assert.ok(!all.includes(needle), `audit leaks ${needle.slice(0, 10)}`);
  });

  test("errors carry a stable code beside KES's message, and the remote client keeps it (KEY_DISABLED, KEY_USAGE are not PERMISSION)", async () => {
    await admin.create('ns-only', { type: 'ec-p256', usage: ['namespace'] });
    await assert.rejects(admin.sign('ns-only', Buffer.from('m'), { usage: 'protocol' }), (e) => isKeyportError(e, 'KEY_USAGE'));
    // a key the server has not seen yet, disabled in its store (as a KES or keyport store can hold one)
    const kr = await openKeyring({
      store: (t.config.store as { store: string }).store,
      envelope: (t.config.store as { envelope: { wrapper: string } }).envelope,
    });
    await kr.create('to-disable', { type: 'ec-p256' });
    const rec = await kr.store.get('to-disable');
    await kr.store.replace({ ...rec, state: 'disabled' });
    await kr.close();
    const r = await raw(
      t.url,
      agentFor((await import('../../src/server/identity.js')).parseApiKey(t.admin)),
      'PUT',
      '/v1/key/sign/to-disable',
      '{}',
    );
    assert.equal(r.status, 403);
    assert.equal(JSON.parse(r.body).code, 'KEY_DISABLED');
    await assert.rejects(admin.sign('to-disable', Buffer.from('m')), (e) => isKeyportError(e, 'KEY_DISABLED'));
    // policy refusals stay PERMISSION, unknown keys NOT_FOUND
    await assert.rejects(app.delete('my-app-data'), (e) => isKeyportError(e, 'PERMISSION'));
    await assert.rejects(admin.describe('never-made'), (e) => isKeyportError(e, 'NOT_FOUND'));
  });

  test('the store behind the server is envelope-protected and readable as a keyport store', async () => {
    await admin.create('persisted');
    const kr = await openKeyring({
      store: (t.config.store as { store: string }).store,
      envelope: (t.config.store as { envelope: { wrapper: string } }).envelope,
    });
    assert.equal((await kr.describe('persisted')).protection, 'sealed');
    await kr.close();
  });
});
