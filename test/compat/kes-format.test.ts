/**
 * KES formats without a server: the stored key format (src/store/kes-format.ts), the ciphertext format
 * (src/crypto/kes-ciphertext.ts) and the kes-fs store. The fixtures were written by a real KES v0.24.0
 * (scripts/testbed/kes.sh): key files from its FS keystore, ciphertexts and an HMAC from its API.
 * node:crypto is the independent checker; test/compat/kes-real.test.ts repeats this against a live KES.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync, readdirSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { decodeKesKey, encodeKesKey } from '../../src/store/kes-format.js';
import { hchacha20, kesDecrypt, kesEncrypt } from '../../src/crypto/kes-ciphertext.js';
import { openKesFsStore } from '../../src/store/kes-fs.js';
import { kcv } from '../../src/crypto/fingerprint.js';
import { isKeyportError, type ErrorCode } from '../../src/errors.js';
import type { KeyRecord } from '../../src/store/types.js';
import { tempDir } from '../support/tmp.js';

// KES v0.24.0: POST /v1/key/create/k1 by the admin identity below, then describe said
// created_at "2026-11-24T10:28:59.107837878Z"
const K1_FILE =
  'CiQKIHBWMJI1kHiD8PVF8lHcESNLGp0Tqpwkkaqsg8wRHdpEEAESJAogW9E0PJ0/N/NCiIYqVznWPFymeegNCjmgmdZC2bol64IQARoLCOvNldgGELbztTMiQGJhYzgwMWU2MjU3YzZjM2E5YTVkYmIxNDYyNDIxYTEyNDMzNjFkNTA5MmEyMDI4MTRlMDNkMDQxZTU4Nzk0NjY=';
const ADMIN = 'bac801e6257c6c3a9a5dbb1462421a1243361d5092a202814e03d041e5879466';
// POST /v1/key/encrypt/k1 {plaintext: "keyport fixture plaintext", context: "bucket/object"}
const K1_CT = 'wPv09twWqrCJ+o52j44KQ6o3CdGGqQ/RwTehJyV8pSVIu/9ITJ3z2uJEyxbwByfGS+6Hy+t3TaaUH83ymtwAv7Lv3z59';
// POST /v1/key/hmac/k1 {message: "hmac me"}
const K1_HMAC = 'm0bjYZXIH5NkBmlU8CXo9kgYKCgyoB0s+ryJoirGMWs=';
// POST /v1/key/import/c1 {key: random, cipher: "ChaCha20"}, then encrypt "chacha fixture" (no context)
const C1_FILE =
  'CiQKIC4kQg51F4e6/j9VLD2CqwA1i5pNTilY/jip1Lc1PdeOEAISJAogcrCsdH5x8RQyykxF7sDNqeR/KnZ0KMFbY9QEjN4YRWMQARoMCLfPldgGEIKH/M4BIkBiYWM4MDFlNjI1N2M2YzNhOWE1ZGJiMTQ2MjQyMWExMjQzMzYxZDUwOTJhMjAyODE0ZTAzZDA0MWU1ODc5NDY2';
const C1_CT = 'wquXHZOtuKgr9PdxcmPIAMFJndTwGSwZlRG/55/xk7HIUvItzOg0nbS0iMxn6mYtF9bdR6Uk82dgdg==';

function rejects(f: () => unknown, code: ErrorCode) {
  try {
    f();
  } catch (e) {
    assert.ok(isKeyportError(e, code), `expected ${code}, got ${String(e)}`);
    assert.ok(!(e as Error).message.includes('\n'), 'one line');
    return (e as Error).message;
  }
  assert.fail(`expected ${code}`);
}

/** KES's AES256 decryption, written from the v0.24 source with node:crypto only */
function referenceAesOpen(key: Buffer, ct: Buffer, ad: Buffer) {
  const n = ct.length;
  const iv = ct.subarray(n - 28, n - 12);
  const nonce = ct.subarray(n - 12);
  const d = createDecipheriv('aes-256-gcm', createHmac('sha256', key).update(iv).digest(), nonce);
  d.setAAD(ad);
  d.setAuthTag(ct.subarray(n - 44, n - 28));
  return Buffer.concat([d.update(ct.subarray(0, n - 44)), d.final()]);
}

describe('KES stored key format', () => {
  test('a key file written by KES v0.24: fields at their protobuf offsets, byte-exact re-encoding', () => {
    const file = Buffer.from(K1_FILE);
    const raw = Buffer.from(K1_FILE, 'base64');
    // 0a 24 {0a 20 KEY 10 01} 12 24 {0a 20 HMAC 10 01} 1a 0b {08 secs 10 nanos} 22 40 IDENTITY
    assert.equal(raw.subarray(0, 4).toString('hex'), '0a240a20');
    assert.equal(raw.subarray(36, 42).toString('hex'), '10011224' + '0a20');
    const k = decodeKesKey(file);
    assert.equal(k.form, 'protobuf');
    assert.deepEqual(k.secret, raw.subarray(4, 36));
    assert.deepEqual(k.hmacKey, raw.subarray(42, 74));
    assert.equal(k.algorithm, 'AES256');
    assert.equal(k.createdAt, '2026-11-24T10:28:59.107837878Z');
    assert.equal(k.createdBy, ADMIN);
    assert.deepEqual(encodeKesKey(k), file);
    // the HMAC key is the one KES's /v1/key/hmac used
    assert.equal(createHmac('sha256', k.hmacKey!).update('hmac me').digest('base64'), K1_HMAC);
    const c = decodeKesKey(Buffer.from(C1_FILE));
    assert.equal(c.algorithm, 'ChaCha20');
    assert.deepEqual(encodeKesKey(c), Buffer.from(C1_FILE));
  });

  test('legacy JSON form: decode, encode, aliases, defaults; protobuf <-> JSON keep the key', () => {
    const secret = randomBytes(32);
    const j = Buffer.from(
      JSON.stringify({
        bytes: secret.toString('base64'),
        algorithm: 'AES256',
        created_at: '2021-03-04T05:06:07.5+01:00',
        created_by: 'someone',
      }),
    );
    const k = decodeKesKey(j);
    assert.deepEqual(k, { secret, algorithm: 'AES256', createdAt: '2021-03-04T04:06:07.5Z', createdBy: 'someone', form: 'json' });
    assert.equal(k.hmacKey, undefined);
    const enc = encodeKesKey(k, 'json');
    assert.deepEqual(JSON.parse(enc.toString()), {
      bytes: secret.toString('base64'),
      algorithm: 'AES256',
      created_at: '2021-03-04T04:06:07.5Z',
      created_by: 'someone',
    });
    assert.deepEqual(decodeKesKey(enc), k);
    // Go's encoding/json: field names case-insensitive, empty algorithm = AES256, aliases, missing time = zero time
    const a = decodeKesKey(Buffer.from(` {"Bytes":"${secret.toString('base64')}","ALGORITHM":"XCHACHA20-POLY1305"}\n`));
    assert.equal(a.algorithm, 'ChaCha20');
    assert.equal(a.createdAt, '0001-01-01T00:00:00Z');
    assert.equal(decodeKesKey(Buffer.from(`{"bytes":"${secret.toString('base64')}","algorithm":""}`)).algorithm, 'AES256');
    // JSON -> protobuf gets an HMAC key (KES v0.24 needs one), the same secret and times
    const p = decodeKesKey(encodeKesKey(k, 'protobuf'));
    assert.equal(p.form, 'protobuf');
    assert.deepEqual(p.secret, secret);
    assert.equal(p.hmacKey!.length, 32);
    assert.equal(p.createdAt, k.createdAt);
    // protobuf with whole seconds omits nanos; zero time and epoch survive
    for (const t of [
      '2024-01-01T00:00:00Z',
      '0001-01-01T00:00:00Z',
      '1970-01-01T00:00:00Z',
      '1969-12-31T23:59:59.999999999Z',
      '9999-12-31T23:59:59.000000001Z',
    ]) {
      assert.equal(decodeKesKey(encodeKesKey({ secret, algorithm: 'ChaCha20', createdAt: t, createdBy: '' })).createdAt, t);
    }
  });

  test('malformed key files are INVALID_INPUT on one line, never a crash', () => {
    const good = Buffer.from(K1_FILE, 'base64');
    const cases: Buffer[] = [
      Buffer.alloc(0),
      Buffer.from('not base64 at all!'),
      Buffer.from('{"bytes":"AAAA"}'),
      Buffer.from('{"bytes":"' + randomBytes(32).toString('base64') + '","algorithm":"DES"}'),
      Buffer.from('{"bytes":"' + randomBytes(32).toString('base64') + '","created_at":"yesterday"}'),
      Buffer.from('[1,2]'),
      Buffer.from('null'),
      Buffer.from(good.subarray(0, 20).toString('base64')),
      Buffer.from(Buffer.from([0x0a, 0x05, 0x0a, 0x03, 1, 2, 3]).toString('base64')),
      Buffer.from(Buffer.from([0x0b]).toString('base64')),
    ];
    for (const c of cases) rejects(() => decodeKesKey(c), 'INVALID_INPUT');
    // random corruption of a real file: a key or INVALID_INPUT, nothing else
    for (let i = 0; i < 3000; i++) {
      const b = Buffer.from(good);
      const n = 1 + (i % 4);
      for (let j = 0; j < n; j++) b[Math.floor(Math.random() * b.length)] = Math.floor(Math.random() * 256);
      const cut = i % 7 === 0 ? b.subarray(0, Math.floor(Math.random() * b.length)) : b;
      try {
        decodeKesKey(Buffer.from(cut.toString('base64')));
      } catch (e) {
        assert.ok(isKeyportError(e, 'INVALID_INPUT'), String(e));
      }
    }
    rejects(
      () => encodeKesKey({ secret: randomBytes(16), algorithm: 'AES256', createdAt: '2024-01-01T00:00:00Z', createdBy: '' }),
      'INVALID_INPUT',
    );
  });
});

describe('KES ciphertext format', () => {
  test('HChaCha20: draft-irtf-cfrg-xchacha-03 §2.2.1 test vector', () => {
    const key = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
    const nonce = Buffer.from('000000090000004a0000000031415927', 'hex');
    assert.equal(hchacha20(key, nonce).toString('hex'), '82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc');
  });

  test('decrypts what KES v0.24 encrypted (AES256 with context, ChaCha20 without)', () => {
    const k1 = decodeKesKey(Buffer.from(K1_FILE));
    const ct = Buffer.from(K1_CT, 'base64');
    assert.equal(ct.length, 25 + 16 + 16 + 12, 'sealed ‖ tag(16) ‖ iv(16) ‖ nonce(12)');
    assert.equal(kesDecrypt(k1.secret, ct, Buffer.from('bucket/object')).toString(), 'keyport fixture plaintext');
    assert.equal(referenceAesOpen(k1.secret, ct, Buffer.from('bucket/object')).toString(), 'keyport fixture plaintext');
    rejects(() => kesDecrypt(k1.secret, ct, Buffer.from('bucket/other')), 'INVALID_CIPHERTEXT');
    rejects(() => kesDecrypt(k1.secret, ct), 'INVALID_CIPHERTEXT');
    const c1 = decodeKesKey(Buffer.from(C1_FILE));
    assert.equal(kesDecrypt(c1.secret, Buffer.from(C1_CT, 'base64'), undefined, 'ChaCha20').toString(), 'chacha fixture');
    rejects(() => kesDecrypt(c1.secret, Buffer.from(C1_CT, 'base64'), undefined, 'AES256'), 'INVALID_CIPHERTEXT');
  });

  test('kesEncrypt output opens with an independent node:crypto implementation; both algorithms round-trip', () => {
    const key = randomBytes(32);
    for (const pt of [Buffer.alloc(0), Buffer.from('x'), randomBytes(1000)]) {
      const ct = kesEncrypt(key, pt, Buffer.from('ctx'));
      assert.equal(ct.length, pt.length + 44);
      assert.deepEqual(referenceAesOpen(key, ct, Buffer.from('ctx')), pt);
      assert.deepEqual(kesDecrypt(key, ct, Buffer.from('ctx')), pt);
      const cc = kesEncrypt(key, pt, Buffer.from('ctx'), 'ChaCha20');
      assert.deepEqual(kesDecrypt(key, cc, Buffer.from('ctx'), 'ChaCha20'), pt);
      // the ChaCha20 form: chacha20-poly1305 under HChaCha20(key, iv) with the 12-byte nonce
      const n = cc.length;
      const d = createDecipheriv('chacha20-poly1305', hchacha20(key, cc.subarray(n - 28, n - 12)), cc.subarray(n - 12), {
        authTagLength: 16,
      });
      d.setAAD(Buffer.from('ctx'), { plaintextLength: pt.length });
      d.setAuthTag(cc.subarray(n - 44, n - 28));
      assert.deepEqual(Buffer.concat([d.update(cc.subarray(0, n - 44)), d.final()]), pt);
    }
  });

  test('legacy JSON and MessagePack ciphertexts (built from the KES v0.24 parser rules)', () => {
    const key = randomBytes(32);
    const iv = randomBytes(16);
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', createHmac('sha256', key).update(iv).digest(), nonce);
    c.setAAD(Buffer.from('ad'));
    const sealed = Buffer.concat([c.update('legacy data'), c.final(), c.getAuthTag()]);
    const json = Buffer.from(
      JSON.stringify({
        aead: 'AES-256-GCM-HMAC-SHA-256',
        id: 'k',
        iv: iv.toString('base64'),
        nonce: nonce.toString('base64'),
        bytes: sealed.toString('base64'),
      }),
    );
    assert.equal(kesDecrypt(key, json, Buffer.from('ad')).toString(), 'legacy data');
    const str = (s: string) => Buffer.concat([Buffer.from([0xa0 | s.length]), Buffer.from(s)]);
    const bin = (b: Buffer) => Buffer.concat([Buffer.from([0xc4, b.length]), b]);
    const msgp = Buffer.concat([Buffer.from([0x95]), str('AES256'), str('k'), bin(iv), bin(nonce), bin(sealed)]);
    assert.equal(kesDecrypt(key, msgp, Buffer.from('ad')).toString(), 'legacy data');
    // ChaCha20Poly1305 JSON ciphertexts of older KES
    const cc = kesEncrypt(key, Buffer.from('old chacha'), undefined, 'ChaCha20');
    const n = cc.length;
    const legacyCc = Buffer.from(
      JSON.stringify({
        aead: 'ChaCha20Poly1305',
        iv: cc.subarray(n - 28, n - 12).toString('base64'),
        nonce: cc.subarray(n - 12).toString('base64'),
        bytes: cc.subarray(0, n - 28).toString('base64'),
      }),
    );
    assert.equal(kesDecrypt(key, legacyCc).toString(), 'old chacha');
    rejects(() => kesDecrypt(key, json, Buffer.from('other')), 'INVALID_CIPHERTEXT');
    rejects(() => kesDecrypt(key, Buffer.from('{"aead":"ROT13","iv":"","nonce":"","bytes":""}')), 'INVALID_CIPHERTEXT');
  });

  test('bad ciphertexts are INVALID_CIPHERTEXT on one line, never a crash', () => {
    const key = randomBytes(32);
    const ct = kesEncrypt(key, Buffer.from('some plaintext'), Buffer.from('c'));
    const cases = [
      Buffer.alloc(0),
      Buffer.alloc(43),
      Buffer.from('{'),
      Buffer.from([0x95]),
      Buffer.from([0x95, 0xa1]),
      randomBytes(100),
      ct.subarray(1),
    ];
    for (const c of cases) rejects(() => kesDecrypt(key, c, Buffer.from('c')), 'INVALID_CIPHERTEXT');
    for (let i = 0; i < 2000; i++) {
      const b = Buffer.from(ct);
      b[i % b.length] ^= 1 + (i % 255);
      if (i % 3 === 0) b[0] = [0x7b, 0x95, 0x00][i % 9 === 0 ? 0 : 1]!;
      rejects(() => kesDecrypt(key, b, Buffer.from('c'), i % 2 ? 'AES256' : 'ChaCha20'), 'INVALID_CIPHERTEXT');
    }
    rejects(() => kesEncrypt(randomBytes(31), Buffer.from('x')), 'INVALID_INPUT');
  });
});

function rec(name: string, over: Partial<KeyRecord> = {}, secret = randomBytes(64)): KeyRecord {
  return {
    name,
    type: 'aes256',
    purpose: 'symmetric',
    usage: ['any'],
    state: 'active',
    createdAt: '2025-01-02T03:04:05.678Z',
    createdBy: 'tester',
    versions: [{ version: 1, createdAt: '2025-01-02T03:04:05.678Z', fingerprint: kcv(secret), clear: secret.toString('base64') }],
    ...over,
  };
}

describe('kes-fs store on a directory', () => {
  test('create/get/list/delete, KES file format, 0600, EXISTS, NOT_FOUND', async () => {
    const dir = tempDir('kesfs-');
    const s = await openKesFsStore(dir, `kes-fs:${dir}`);
    const secret = randomBytes(64);
    await s.create(rec('alpha', {}, secret));
    const file = readFileSync(join(dir, 'alpha'));
    assert.equal(statSync(join(dir, 'alpha')).mode & 0o777, 0o600);
    const k = decodeKesKey(file);
    assert.equal(k.form, 'protobuf');
    assert.deepEqual(k.secret, secret.subarray(0, 32));
    assert.deepEqual(k.hmacKey, secret.subarray(32));
    assert.equal(k.createdAt, '2025-01-02T03:04:05.678Z');
    assert.equal(k.createdBy, 'tester');
    const r = await s.get('alpha');
    assert.equal(r.type, 'aes256');
    assert.equal(r.purpose, 'symmetric');
    assert.deepEqual(r.meta, { kes_algorithm: 'AES256' });
    assert.equal(r.versions.length, 1);
    assert.equal(r.versions[0]!.fingerprint, kcv(secret.subarray(0, 32)));
    assert.equal(r.versions[0]!.clear, secret.toString('base64'));
    await assert.rejects(s.create(rec('alpha')), (e) => isKeyportError(e, 'EXISTS'));
    await assert.rejects(s.get('nope'), (e) => isKeyportError(e, 'NOT_FOUND'));
    await assert.rejects(s.delete('nope'), (e) => isKeyportError(e, 'NOT_FOUND'));
    await assert.rejects(s.get('../etc'), (e) => isKeyportError(e, 'INVALID_NAME'));
    await s.delete('alpha');
    await assert.rejects(s.get('alpha'), (e) => isKeyportError(e, 'NOT_FOUND'));
    assert.deepEqual(readdirSync(dir), [], 'no temp files left behind');
  });

  test('records KES cannot hold are UNSUPPORTED and nothing is written', async () => {
    const dir = tempDir('kesfs-');
    const s = await openKesFsStore(dir, `kes-fs:${dir}`);
    const one = rec('x').versions[0]!;
    const cases: KeyRecord[] = [
      rec('ec', { type: 'ec-p256' }),
      rec('two', { versions: [one, { ...one, version: 2 }] }),
      rec('sealed', {
        versions: [{ version: 1, createdAt: one.createdAt, fingerprint: one.fingerprint, sealed: { wrapper: 'local:/w', blob: 'AAAA' } }],
      }),
      rec('ext', {
        versions: [
          { version: 1, createdAt: one.createdAt, fingerprint: one.fingerprint, external: { kms: 'awskms:region=x', keyId: 'k' } },
        ],
      }),
      rec('off', { state: 'disabled' }),
    ];
    for (const c of cases)
      await assert.rejects(s.create(c), (e) => isKeyportError(e, 'UNSUPPORTED') && !(e as Error).message.includes('\n'));
    await assert.rejects(s.putMany([rec('fine'), cases[0]!]), (e) => isKeyportError(e, 'UNSUPPORTED'));
    assert.deepEqual(readdirSync(dir), []);
  });

  test('list: byte order, prefix, after, limit, never truncated; dot files, temp files and directories skipped', async () => {
    const dir = tempDir('kesfs-');
    const s = await openKesFsStore(dir, `kes-fs:${dir}`);
    const names: string[] = [];
    for (let i = 0; i < 1100; i++) names.push(`k-${String(i).padStart(4, '0')}`);
    names.push('A', 'Z', '_u', 'a');
    const proto = encodeKesKey({ secret: randomBytes(32), algorithm: 'AES256', createdAt: '2024-01-01T00:00:00Z', createdBy: '' });
    for (const n of names) writeFileSync(join(dir, n), proto, { mode: 0o600 });
    writeFileSync(join(dir, '.tmp-k-0001-abc'), 'partial');
    writeFileSync(join(dir, 'has.dot'), 'x');
    mkdirSync(join(dir, 'subdir'));
    symlinkSync(join(dir, 'A'), join(dir, 'linked'));
    names.push('linked');
    await s.setMeta('protection', 'none');
    assert.equal(await s.getMeta('protection'), 'none');
    await s.setMeta('protection', undefined);
    assert.equal(readdirSync(dir).includes('.keyport-meta.json'), false, 'an empty meta file is removed');
    await s.setMeta('protection', 'none');
    const all: string[] = [];
    let after: string | undefined;
    for (;;) {
      const p = await s.list({ after, limit: 333 });
      all.push(...p.names);
      if (!p.next) break;
      after = p.next;
    }
    assert.deepEqual(
      all,
      [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))),
    );
    assert.deepEqual((await s.list({ prefix: 'k-10', limit: 1000 })).names.length, 100);
    assert.deepEqual((await s.list({ prefix: 'k-109', after: 'k-1095' })).names, ['k-1096', 'k-1097', 'k-1098', 'k-1099']);
    assert.equal((await s.get('linked')).versions[0]!.fingerprint, (await s.get('A')).versions[0]!.fingerprint);
  });

  test('replace keeps a legacy JSON file JSON while it has no HMAC key; damaged files are INVALID_INPUT', async () => {
    const dir = tempDir('kesfs-');
    const s = await openKesFsStore(dir, `kes-fs:${dir}`);
    const secret = randomBytes(32);
    writeFileSync(
      join(dir, 'old'),
      JSON.stringify({
        bytes: secret.toString('base64'),
        algorithm: 'ChaCha20',
        created_at: '2020-05-06T07:08:09Z',
        created_by: 'kes-admin',
      }),
    );
    const r = await s.get('old');
    assert.deepEqual(r.meta, { kes_algorithm: 'ChaCha20', kes_form: 'json' });
    assert.equal(r.createdBy, 'kes-admin');
    await s.replace({ ...r, createdBy: 'someone else' });
    const j = decodeKesKey(readFileSync(join(dir, 'old')));
    assert.equal(j.form, 'json');
    assert.equal(j.algorithm, 'ChaCha20');
    assert.equal(j.createdBy, 'someone else');
    await assert.rejects(s.replace(rec('missing')), (e) => isKeyportError(e, 'NOT_FOUND'));
    // with an HMAC key the file becomes protobuf (JSON cannot hold it)
    const withHmac = Buffer.concat([secret, randomBytes(32)]);
    await s.replace({ ...r, versions: [{ ...r.versions[0]!, clear: withHmac.toString('base64') }] });
    assert.equal(decodeKesKey(readFileSync(join(dir, 'old'))).form, 'protobuf');
    writeFileSync(join(dir, 'broken'), 'garbage!');
    await assert.rejects(s.get('broken'), (e) => isKeyportError(e, 'INVALID_INPUT') && (e as Error).message.includes("'broken'"));
  });
});
