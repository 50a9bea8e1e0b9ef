/**
 * The awskms: driver against real emulators, each check routed to the emulator that really implements it:
 *  - moto (scripts/testbed/moto.sh): real ECDSA P-256 / P-384 / secp256k1 and RSA-PSS signatures and
 *    SPKI public keys, symmetric Encrypt/Decrypt (moto's own AES-GCM blob, opaque to us), aliases,
 *    tags, DescribeKey states, DisableKey, ScheduleKeyDeletion, ListKeys/ListAliases.
 *    moto does NOT implement: RSA Encrypt/Decrypt (it runs its symmetric AES-GCM fake with the RSA key's
 *    random "key material", so a real RSA-OAEP ciphertext is refused), GetParametersForImport /
 *    ImportKeyMaterial, ListKeys paging (it returns every key in one page), MessageType DIGEST, and
 *    it checks no credentials.
 *  - local-kms (test/kms/aws-localkms.test.ts, the Go emulator): RSA-OAEP-SHA-256 decrypt, symmetric
 *    BYOK import, ECDSA; LocalStack's KMS (test/kms/aws-localstack.test.ts): RSA-OAEP-SHA-256 decrypt,
 *    symmetric and private-key BYOK import (RSA_AES_KEY_WRAP_SHA_256), which local-kms lacks.
 * Signatures are checked with node:crypto and openssl, never with the driver or the emulator.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPublicKey, publicEncrypt, randomBytes, verify, constants as C } from 'node:crypto';
import { KMSClient, DisableKeyCommand, DescribeKeyCommand, ListKeysCommand } from '@aws-sdk/client-kms';
import { openKeyring } from '../../src/keys/open.js';
import { migrate } from '../../src/migrate/index.js';
import { skipUnless, serviceEnv } from '../support/testbed.js';
import { factory } from '../../src/kms/aws/index.js';
import type { Driver } from '../../src/kms/driver.js';
import { rejectsCode } from '../support/rejects.js';

const uniq = () => `t${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;

function opensslVerify(spki: Buffer, sig: Buffer, data: Buffer, digest: 'sha256' | 'sha384'): { status: number | null; out: string } {
  const dir = mkdtempSync(join(tmpdir(), 'keyport-aws-'));
  try {
    writeFileSync(
      join(dir, 'pub.pem'),
      createPublicKey({ key: spki, format: 'der', type: 'spki' }).export({ format: 'pem', type: 'spki' }),
    );
    writeFileSync(join(dir, 'sig.der'), sig);
    writeFileSync(join(dir, 'data'), data);
    const r = spawnSync(
      'openssl',
      ['dgst', `-${digest}`, '-verify', join(dir, 'pub.pem'), '-signature', join(dir, 'sig.der'), join(dir, 'data')],
      { encoding: 'utf8' },
    );
    return { status: r.status, out: (r.stdout + r.stderr).trim() };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('awskms driver on moto', { skip: skipUnless('moto') }, () => {
  let env: Record<string, string>;
  let d: Driver;
  let raw: KMSClient;
  const params = () => ({
    region: env.MOTO_REGION!,
    endpoint: env.MOTO_ENDPOINT!,
    'access-key-id': env.MOTO_ACCESS_KEY_ID!,
    'secret-access-key': env.MOTO_SECRET_ACCESS_KEY!,
  });

  before(async () => {
    env = serviceEnv('moto');
    d = await factory(params(), 'awskms:region=us-east-1');
    raw = new KMSClient({
      region: env.MOTO_REGION!,
      endpoint: env.MOTO_ENDPOINT!,
      credentials: { accessKeyId: env.MOTO_ACCESS_KEY_ID!, secretAccessKey: env.MOTO_SECRET_ACCESS_KEY! },
    });
  });
  after(async () => {
    await d?.close?.();
    raw?.destroy();
  });

  it('health is ok', async () => {
    assert.deepEqual(await d.health(), { state: 'ok' });
  });

  for (const [spec, algo, digest, curve] of [
    ['ec-p256', 'ecdsa-sha256', 'sha256', 'prime256v1'],
    ['ec-p384', 'ecdsa-sha384', 'sha384', 'secp384r1'],
    ['secp256k1', 'ecdsa-sha256', 'sha256', 'secp256k1'],
  ] as const) {
    it(`${spec}: DER signature from KMS verifies with node:crypto and openssl against the SPKI`, async () => {
      const id = await d.generateSigningKeyPair(spec, uniq());
      const pub = await d.getPublicKey(id);
      assert.equal(pub.spec, spec);
      const key = createPublicKey({ key: pub.spki, format: 'der', type: 'spki' });
      assert.equal(key.asymmetricKeyDetails?.namedCurve, curve);
      const data = randomBytes(1000);
      const sig = await d.sign(id, data, algo);
      assert.equal(sig[0], 0x30, 'DER SEQUENCE');
      assert.ok(verify(digest, data, { key, dsaEncoding: 'der' }, sig), 'node:crypto verifies');
      assert.ok(!verify(digest, Buffer.concat([data, Buffer.of(1)]), { key, dsaEncoding: 'der' }, sig), 'other data does not verify');
      const o = opensslVerify(pub.spki, sig, data, digest);
      assert.equal(o.status, 0, o.out);
      assert.match(o.out, /Verified OK/);
      const bad = opensslVerify(pub.spki, sig, Buffer.concat([data, Buffer.of(1)]), digest);
      assert.notEqual(bad.status, 0);
    });
  }

  it('rsa-2048 RSASSA_PSS_SHA_256 signature verifies with node:crypto (moto signs with the maximum salt length)', async () => {
    const id = await d.generateSigningKeyPair('rsa-2048');
    const pub = await d.getPublicKey(id);
    assert.equal(pub.spec, 'rsa-2048');
    const data = Buffer.from('keyport rsa-pss');
    const sig = await d.sign(id, data, 'rsa-pss-sha256');
    const key = createPublicKey({ key: pub.spki, format: 'der', type: 'spki' });
    assert.ok(verify('sha256', data, { key, padding: C.RSA_PKCS1_PSS_PADDING, saltLength: C.RSA_PSS_SALTLEN_AUTO }, sig));
  });

  it('symmetric encrypt/decrypt round trip; a tampered ciphertext is INVALID_CIPHERTEXT', async () => {
    const id = await d.generateSymmetricKey();
    const pt = randomBytes(32);
    const ct = await d.encryptSymmetric(id, pt);
    assert.ok(!ct.includes(pt), 'ciphertext does not carry the plaintext');
    assert.deepEqual(await d.decryptSymmetric(id, ct), pt);
    const t = Buffer.from(ct);
    t[t.length - 1]! ^= 1;
    await rejectsCode(d.decryptSymmetric(id, t), 'INVALID_CIPHERTEXT');
    await rejectsCode(d.encryptSymmetric(id, Buffer.alloc(5000)), 'INVALID_INPUT');
  });

  it('aliases and ARNs: a named key is reachable as alias/NAME and by its ARN; a taken name is EXISTS', async () => {
    const name = uniq();
    const id = await d.generateSymmetricKey(name);
    assert.equal(await d.resolveKeyId!(`alias/${name}`), id);
    const arn = (await raw.send(new DescribeKeyCommand({ KeyId: id }))).KeyMetadata!.Arn!;
    assert.equal(await d.resolveKeyId!(arn), arn, 'ARNs pass through unchanged');
    const ct = await d.encryptSymmetric(`alias/${name}`, Buffer.from('via alias'));
    assert.deepEqual(await d.decryptSymmetric(arn, ct), Buffer.from('via alias'));
    await rejectsCode(d.generateSymmetricKey(name), 'EXISTS');
    const listed = [];
    for await (const k of d.listKeys!()) if (k.keyId === id) listed.push(k);
    assert.equal(listed.length, 1);
    assert.equal(listed[0]!.name, name);
    assert.equal(listed[0]!.kind, 'symmetric');
    assert.equal(listed[0]!.spec, 'aes256');
    assert.equal(listed[0]!.state, 'enabled');
  });

  it('unknown keys are NOT_FOUND; disabled and deleted keys are KEY_DISABLED; deleteKey frees the alias', async () => {
    await rejectsCode(d.keyExistsAndIsActive('00000000-0000-0000-0000-000000000000'), 'NOT_FOUND');
    await rejectsCode(d.encryptSymmetric('alias/no-such-keyport-key', Buffer.from('x')), 'NOT_FOUND');
    await rejectsCode(d.getPublicKey('00000000-0000-0000-0000-000000000000'), 'NOT_FOUND');

    const a = await d.generateSymmetricKey();
    await d.keyExistsAndIsActive(a);
    await raw.send(new DisableKeyCommand({ KeyId: a }));
    await rejectsCode(d.keyExistsAndIsActive(a), 'KEY_DISABLED');

    const name = uniq();
    const b = await d.generateSigningKeyPair('ec-p256', name);
    await d.deleteKey(b);
    const m = (await raw.send(new DescribeKeyCommand({ KeyId: b }))).KeyMetadata!;
    assert.equal(m.KeyState, 'PendingDeletion');
    assert.ok(m.DeletionDate && m.DeletionDate.getTime() - Date.now() < 7.1 * 86400_000, 'minimum 7-day window');
    await rejectsCode(d.keyExistsAndIsActive(b), 'KEY_DISABLED');
    await rejectsCode(d.resolveKeyId!(`alias/${name}`), 'NOT_FOUND');
    await d.deleteKey(b); // idempotent while pending deletion
    const c = await d.generateSigningKeyPair('ec-p256', name); // the name is free again
    assert.notEqual(c, b);
    let seen: string | undefined;
    for await (const k of d.listKeys!()) if (k.keyId === b) seen = k.state;
    assert.equal(seen, 'pending-deletion');
  });

  it('a key used for the wrong operation is KEY_USAGE', async () => {
    const enc = await d.generateSymmetricKey();
    await rejectsCode(d.sign(enc, Buffer.from('x'), 'ecdsa-sha256'), 'KEY_USAGE');
  });

  it('moto fakes RSA encryption: a real RSA-OAEP ciphertext is refused (INVALID_CIPHERTEXT), so OAEP is checked on LocalStack', async () => {
    const id = await d.generateEncryptionKeyPair('rsa-2048');
    const pub = await d.getPublicKey(id);
    assert.equal(pub.spec, 'rsa-2048');
    const ct = publicEncrypt(
      { key: createPublicKey({ key: pub.spki, format: 'der', type: 'spki' }), padding: C.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
      randomBytes(32),
    );
    await rejectsCode(d.decryptAsymmetric(id, ct, 'rsa-oaep-sha256'), 'INVALID_CIPHERTEXT');
  });

  it('moto has no BYOK import: importKey fails with UNSUPPORTED naming the limitation', async () => {
    const e = await rejectsCode(d.importKey!({ kind: 'symmetric', spec: 'aes256', secret: randomBytes(32) }), 'UNSUPPORTED');
    assert.match(e.message, /import/);
  });

  it('moto declared as importing nothing (import=none): importKey refuses before any KMS call, and a migrate plan re-keys or refuses up front', async () => {
    const none = await factory({ ...params(), import: 'none' }, 'awskms:region=us-east-1');
    assert.match(none.importRefusal!('symmetric', 'aes256')!, /imports no key material/);
    assert.equal(d.importRefusal!('signing', 'ec-p256'), undefined, "AWS KMS's own limits: EC keys import");
    assert.match(d.importRefusal!('signing', 'ed25519')!, /cannot import a ed25519 signing key/);
    const before = await raw.send(new ListKeysCommand({ Limit: 1000 }));
    const e = await rejectsCode(none.importKey!({ kind: 'symmetric', spec: 'aes256', secret: randomBytes(32) }, uniq()), 'UNSUPPORTED');
    assert.match(e.message, /import/);
    assert.equal((await raw.send(new ListKeysCommand({ Limit: 1000 }))).Keys!.length, before.Keys!.length, 'no KMS key was made');
    await none.close?.();
    // the plan, against moto itself (keyport's catalog for it in a fresh home)
    const home = mkdtempSync(join(tmpdir(), 'keyport-aws-plan-'));
    const oldHome = process.env.KEYPORT_HOME;
    process.env.KEYPORT_HOME = home;
    try {
      const src = `sqlite:${join(home, 'src.db')}`;
      const kr = await openKeyring(src);
      await kr.create('plan-aes');
      await kr.create('plan-ec', { type: 'ec-p256' });
      await kr.close();
      const to = `awskms:region=${env.MOTO_REGION};endpoint=${env.MOTO_ENDPOINT};access-key-id=${env.MOTO_ACCESS_KEY_ID};secret-access-key=${env.MOTO_SECRET_ACCESS_KEY};import=none`;
      const plain = await migrate({ from: src, to, dryRun: true });
      assert.deepEqual(
        plain.refused.map((r) => r.name),
        ['plan-aes', 'plan-ec'],
      );
      for (const r of plain.refused) assert.match(r.reason, /imports no key material.*pass --rekey/);
      const rekey = await migrate({ from: src, to, dryRun: true, rekey: true });
      assert.deepEqual(rekey.strategies, { copy: 0, import: 0, rekey: 2 });
    } finally {
      process.env.KEYPORT_HOME = oldHome;
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('listKeys returns every key (> 100) without truncation', async () => {
    const made = new Set<string>();
    for (let i = 0; i < 120; i += 10) {
      const ids = await Promise.all(Array.from({ length: 10 }, () => d.generateSymmetricKey()));
      for (const id of ids) made.add(id);
    }
    const seen = new Set<string>();
    for await (const k of d.listKeys!()) {
      assert.ok(!seen.has(k.keyId), 'no key listed twice');
      seen.add(k.keyId);
    }
    for (const id of made) assert.ok(seen.has(id), `key ${id} listed`);
    assert.ok(seen.size >= 120);
  });
});

describe('awskms driver: unreachable endpoints (no emulator)', () => {
  let silent: Server;
  let silentPort = 0;
  let closedPort = 0;
  before(async () => {
    // a port nobody listens on: bind, read the port, close
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    closedPort = (s.address() as { port: number }).port;
    await new Promise<void>((r) => s.close(() => r()));
    // a server that accepts connections and never answers
    silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    silentPort = (silent.address() as { port: number }).port;
  });
  after(() => {
    silent?.close();
  });

  const creds = { 'access-key-id': 'testing', 'secret-access-key': 'testing', region: 'us-east-1' };

  it('connection refused is UNAVAILABLE and retryable; health is failed and does not throw', async () => {
    const d = await factory({ ...creds, endpoint: `http://127.0.0.1:${closedPort}` }, 'awskms:');
    await rejectsCode(d.encryptSymmetric('alias/x', Buffer.from('x')), 'UNAVAILABLE', true);
    const h = await d.health();
    assert.equal(h.state, 'failed');
    await d.close?.();
  });

  it('a server that never answers is TIMEOUT (retryable) after timeout-ms', async () => {
    const d = await factory({ ...creds, endpoint: `http://127.0.0.1:${silentPort}`, 'timeout-ms': '300' }, 'awskms:');
    await rejectsCode(d.keyExistsAndIsActive('alias/x'), 'TIMEOUT', true);
    await d.close?.();
  });

  it('bad URI params are USAGE errors', async () => {
    await rejectsCode(factory({ endpoint: 'ftp://x', region: 'us-east-1' }, 'awskms:'), 'USAGE');
    await rejectsCode(factory({ 'access-key-id': 'a', region: 'us-east-1' }, 'awskms:'), 'USAGE');
    await rejectsCode(factory({ region: 'us-east-1', 'timeout-ms': '0' }, 'awskms:'), 'USAGE');
  });
});
