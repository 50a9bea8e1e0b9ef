/**
 * Compatibility with a REAL MinIO KES v0.24.0 (scripts/testbed/kes.sh: built from the Go module proxy,
 * FS keystore): the key files KES writes, the ciphertexts it makes and accepts, and key files we write
 * that KES then uses. KES is driven over its HTTP API with mTLS (the admin API key as a client cert).
 */
import { describe, test, before } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { skipUnless, serviceEnv } from '../support/testbed.js';
import { decodeKesKey, encodeKesKey, type KesKey } from '../../src/store/kes-format.js';
import { kesDecrypt, kesEncrypt } from '../../src/crypto/kes-ciphertext.js';
import { openKesFsStore } from '../../src/store/kes-fs.js';
import { kcv } from '../../src/crypto/fingerprint.js';
import type { KeyRecord } from '../../src/store/types.js';

describe('real KES v0.24.0: key files and ciphertexts', { skip: skipUnless('kes') }, () => {
  let env: Record<string, string>;
  let tls: { ca: Buffer; cert: Buffer; key: Buffer };
  // the keystore outlives test runs: fresh names every run (KES also caches keys by name)
  const run = randomBytes(4).toString('hex');
  const n = (s: string) => `kp-${run}-${s}`;

  before(() => {
    env = serviceEnv('kes');
    tls = { ca: readFileSync(env['KES_CA']!), cert: readFileSync(env['KES_CLIENT_CERT']!), key: readFileSync(env['KES_CLIENT_KEY']!) };
  });

  function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = request(env['KES_SERVER']! + path, { method, ...tls, timeout: 15_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          resolve({ status: res.statusCode ?? 0, json: text.trim() ? (JSON.parse(text) as Record<string, unknown>) : {} });
        });
      });
      req.on('error', reject);
      req.on('timeout', () => req.destroy(new Error('KES request timed out')));
      req.end(data);
    });
  }
  const ok = async (method: string, path: string, body?: unknown) => {
    const r = await api(method, path, body);
    assert.equal(r.status, 200, `${method} ${path}: ${JSON.stringify(r.json)}`);
    return r.json;
  };
  const b64 = (b: Buffer | string) => Buffer.from(b).toString('base64');
  const kesEnc = async (name: string, pt: Buffer, ctx?: Buffer) =>
    Buffer.from(
      (await ok('POST', `/v1/key/encrypt/${name}`, { plaintext: b64(pt), ...(ctx ? { context: b64(ctx) } : {}) }))['ciphertext'] as string,
      'base64',
    );
  const kesDec = async (name: string, ct: Buffer, ctx?: Buffer) =>
    Buffer.from(
      (await ok('POST', `/v1/key/decrypt/${name}`, { ciphertext: b64(ct), ...(ctx ? { context: b64(ctx) } : {}) }))['plaintext'] as string,
      'base64',
    );
  const kesHmac = async (name: string, msg: Buffer) =>
    Buffer.from((await ok('POST', `/v1/key/hmac/${name}`, { message: b64(msg) }))['hmac'] as string, 'base64');
  const file = (name: string) => join(env['KES_FS_DIR']!, name);

  test('keys KES creates: base64 protobuf KeyVersion, decoded fields match describe and /hmac, byte-exact re-encoding', async () => {
    await ok('POST', `/v1/key/create/${n('made')}`);
    const bytes = readFileSync(file(n('made')));
    assert.match(bytes.toString(), /^[A-Za-z0-9+/]+=*$/, 'one line of standard base64, no newline');
    const k = decodeKesKey(bytes);
    assert.equal(k.form, 'protobuf');
    assert.deepEqual(encodeKesKey(k), bytes);
    const d = await ok('GET', `/v1/key/describe/${n('made')}`);
    assert.equal(d['algorithm'], k.algorithm);
    assert.equal(d['created_at'], k.createdAt);
    assert.equal(d['created_by'], k.createdBy);
    assert.equal(k.createdBy, env['KES_IDENTITY']);
    const msg = randomBytes(100);
    assert.deepEqual(await kesHmac(n('made'), msg), createHmac('sha256', k.hmacKey!).update(msg).digest());
  });

  test('KES ciphertexts decrypt locally with the secret from the file (AES256 and an imported ChaCha20 key)', async () => {
    await ok('POST', `/v1/key/create/${n('aes')}`);
    const chachaSecret = randomBytes(32);
    await ok('POST', `/v1/key/import/${n('chacha')}`, { key: b64(chachaSecret), cipher: 'ChaCha20' });
    const aes = decodeKesKey(readFileSync(file(n('aes'))));
    const cc = decodeKesKey(readFileSync(file(n('chacha'))));
    assert.equal(cc.algorithm, 'ChaCha20');
    assert.deepEqual(cc.secret, chachaSecret);
    assert.equal(cc.hmacKey!.length, 32, 'KES gives imported keys a random HMAC key');
    for (const pt of [Buffer.alloc(0), Buffer.from('hello KES'), randomBytes(4096)]) {
      for (const ctx of [undefined, Buffer.from('bucket/object')]) {
        const a = await kesEnc(n('aes'), pt, ctx);
        assert.equal(a.length, pt.length + 16 + 16 + 12, 'sealed ‖ tag ‖ iv ‖ nonce');
        assert.deepEqual(kesDecrypt(aes.secret, a, ctx, aes.algorithm), pt);
        const c = await kesEnc(n('chacha'), pt, ctx);
        assert.deepEqual(kesDecrypt(cc.secret, c, ctx, 'ChaCha20'), pt);
        assert.throws(() => kesDecrypt(cc.secret, c, Buffer.from('wrong'), 'ChaCha20'), /not authentic/);
      }
    }
  });

  test('KES decrypts what kesEncrypt made, and rejects it under a wrong context', async () => {
    await ok('POST', `/v1/key/create/${n('peer')}`);
    const chachaSecret = randomBytes(32);
    await ok('POST', `/v1/key/import/${n('peer-cc')}`, { key: b64(chachaSecret), cipher: 'ChaCha20' });
    const k = decodeKesKey(readFileSync(file(n('peer'))));
    for (const pt of [Buffer.alloc(0), Buffer.from('from keyport'), randomBytes(3000)]) {
      const ctx = Buffer.from('ctx-' + pt.length);
      assert.deepEqual(await kesDec(n('peer'), kesEncrypt(k.secret, pt, ctx), ctx), pt);
      assert.deepEqual(await kesDec(n('peer-cc'), kesEncrypt(chachaSecret, pt, ctx, 'ChaCha20'), ctx), pt);
    }
    const r = await api('POST', `/v1/key/decrypt/${n('peer')}`, {
      ciphertext: b64(kesEncrypt(k.secret, Buffer.from('x'), Buffer.from('a'))),
      context: b64('b'),
    });
    assert.notEqual(r.status, 200);
  });

  test('legacy JSON and MessagePack ciphertexts: KES accepts the ones we build, and so does kesDecrypt', async () => {
    await ok('POST', `/v1/key/create/${n('legacy')}`);
    const k = decodeKesKey(readFileSync(file(n('legacy'))));
    const iv = randomBytes(16);
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', createHmac('sha256', k.secret).update(iv).digest(), nonce);
    c.setAAD(Buffer.from('ad'));
    const sealed = Buffer.concat([c.update('legacy'), c.final(), c.getAuthTag()]);
    const json = Buffer.from(
      JSON.stringify({ aead: 'AES-256-GCM-HMAC-SHA-256', id: n('legacy'), iv: b64(iv), nonce: b64(nonce), bytes: b64(sealed) }),
    );
    const str = (s: string) => Buffer.concat([Buffer.from([0xa0 | s.length]), Buffer.from(s)]);
    const bin = (b: Buffer) => Buffer.concat([Buffer.from([0xc4, b.length]), b]);
    const msgp = Buffer.concat([Buffer.from([0x95]), str('AES256'), str('k'), bin(iv), bin(nonce), bin(sealed)]);
    for (const ct of [json, msgp]) {
      assert.equal((await kesDec(n('legacy'), ct, Buffer.from('ad'))).toString(), 'legacy');
      assert.equal(kesDecrypt(k.secret, ct, Buffer.from('ad')).toString(), 'legacy');
    }
  });

  test('key files we write (protobuf and legacy JSON, AES256 and ChaCha20) are used by KES', async () => {
    const cases: Array<{ name: string; key: KesKey; form: 'protobuf' | 'json' }> = [];
    for (const form of ['protobuf', 'json'] as const)
      for (const algorithm of ['AES256', 'ChaCha20'] as const)
        cases.push({
          name: n(`w-${form}-${algorithm}`),
          form,
          key: {
            secret: randomBytes(32),
            ...(form === 'protobuf' ? { hmacKey: randomBytes(32) } : {}),
            algorithm,
            createdAt: '2024-02-03T04:05:06.123456789Z',
            createdBy: 'keyport-test',
          },
        });
    for (const c of cases) {
      writeFileSync(file(c.name), encodeKesKey(c.key, c.form), { mode: 0o600 });
      const d = await ok('GET', `/v1/key/describe/${c.name}`);
      assert.equal(d['algorithm'], c.key.algorithm, c.name);
      assert.equal(d['created_at'], c.key.createdAt, c.name);
      assert.equal(d['created_by'], 'keyport-test', c.name);
      const pt = randomBytes(77);
      assert.deepEqual(kesDecrypt(c.key.secret, await kesEnc(c.name, pt, Buffer.from('c')), Buffer.from('c'), c.key.algorithm), pt, c.name);
      assert.deepEqual(await kesDec(c.name, kesEncrypt(c.key.secret, pt, undefined, c.key.algorithm)), pt, c.name);
      if (c.key.hmacKey) assert.deepEqual(await kesHmac(c.name, pt), createHmac('sha256', c.key.hmacKey).update(pt).digest(), c.name);
      else assert.notEqual((await api('POST', `/v1/key/hmac/${c.name}`, { message: b64(pt) })).status, 200, 'legacy keys have no HMAC key');
    }
  });

  test('the KES directory as a kes-fs store: list/get what KES made, create what KES then uses', async () => {
    const dir = env['KES_FS_DIR']!;
    const s = await openKesFsStore(dir, `kes-fs:${dir}`);
    await ok('POST', `/v1/key/create/${n('s-kes')}`);
    const listed: string[] = [];
    let after: string | undefined;
    for (;;) {
      const p = await s.list({ prefix: `kp-${run}-`, after, limit: 2 });
      listed.push(...p.names);
      if (!p.next) break;
      after = p.next;
    }
    assert.ok(listed.includes(n('s-kes')) && listed.includes(n('made')), listed.join(','));
    const kesList = await ok('GET', `/v1/key/list/kp-${run}`);
    assert.deepEqual((kesList['names'] as string[]).slice().sort(), listed.slice().sort(), 'the same names KES lists');
    const r = await s.get(n('s-kes'));
    const fromFile = decodeKesKey(readFileSync(file(n('s-kes'))));
    assert.equal(r.type, 'aes256');
    assert.equal(r.createdBy, env['KES_IDENTITY']);
    assert.equal(r.versions[0]!.fingerprint, kcv(fromFile.secret));
    const clear = Buffer.from(r.versions[0]!.clear!, 'base64');
    const pt = Buffer.from('through the store');
    assert.deepEqual(kesDecrypt(clear.subarray(0, 32), await kesEnc(n('s-kes'), pt)), pt);

    for (const withHmac of [true, false]) {
      const secret = randomBytes(withHmac ? 64 : 32);
      const name = n(`s-mine-${withHmac}`);
      const rec: KeyRecord = {
        name,
        type: 'aes256',
        purpose: 'symmetric',
        usage: ['any'],
        state: 'active',
        createdAt: '2025-06-07T08:09:10.5Z',
        createdBy: 'keyport',
        versions: [{ version: 1, createdAt: '2025-06-07T08:09:10.5Z', fingerprint: kcv(secret), clear: secret.toString('base64') }],
      };
      await s.create(rec);
      assert.deepEqual(await kesDec(name, kesEncrypt(secret.subarray(0, 32), pt, Buffer.from('x')), Buffer.from('x')), pt);
      assert.deepEqual(kesDecrypt(secret.subarray(0, 32), await kesEnc(name, pt)), pt);
      const d = await ok('GET', `/v1/key/describe/${name}`);
      assert.equal(d['created_at'], '2025-06-07T08:09:10.5Z');
      assert.equal(d['created_by'], 'keyport');
      const h = decodeKesKey(readFileSync(file(name))).hmacKey!;
      if (withHmac) assert.deepEqual(h, secret.subarray(32));
      assert.deepEqual(await kesHmac(name, pt), createHmac('sha256', h).update(pt).digest());
      // KES deletes it; the store sees that
      await ok('DELETE', `/v1/key/delete/${name}`);
      await assert.rejects(s.get(name), /does not exist/);
    }
    await s.close();
  });
});
