/**
 * The azurekv: driver.
 *
 * Part 1 (always runs, no emulator): the driver's own checks and the real SDK against a closed port
 * (connection refused -> UNAVAILABLE), node:crypto round trips of the conversions the driver does, and
 * the error mapping of the SDK's own RestError class.
 *
 * Part 2 (lowkey-vault, scripts/testbed/lowkeyvault.sh): every supported spec against a real Key Vault
 * emulator with node:crypto as the independent checker. The lowkey-vault-app jar is NOT served by the
 * registry proxy of this machine kind, so part 2 runs only where the jar can be had (LOWKEY_VAULT_JAR or
 * a cached download); otherwise it is skipped and listed loudly at the end of the run — see
 * lowkeyGate() for the one line to change once the jar is reachable in CI.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  constants,
  createHash,
  createPublicKey,
  generateKeyPairSync,
  publicEncrypt,
  randomBytes,
  sign as nodeSign,
  verify as nodeVerify,
  type KeyObject,
} from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import * as net from 'node:net';
import { RestError } from '@azure/core-rest-pipeline';
import { skipUnless, serviceEnv, TESTBED_STATE } from '../support/testbed.js';
import type { Driver, SigningAlgoSpec, SigningKeySpec } from '../../src/kms/driver.js';
import { factory, jwkForImport, mapAzureError, spkiOf } from '../../src/kms/azure/index.js';
import { rejectsKeyport as failure } from '../support/rejects.js';

const uniq = (p: string) => `${p}-${randomBytes(5).toString('hex')}`;

async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const pkcs8 = (k: KeyObject) => k.export({ format: 'der', type: 'pkcs8' });

// ------------------------------------------------------------------ part 1

describe('azurekv driver without a vault', () => {
  it('refuses bad URIs with USAGE', async () => {
    assert.equal((await failure(factory({}, 'azurekv:'))).code, 'USAGE');
    assert.equal((await failure(factory({ vault: 'not a url' }, 'azurekv:vault=not a url'))).code, 'USAGE');
    assert.equal((await failure(factory({ vault: 'http://127.0.0.1:1' }, 'azurekv:vault=http://127.0.0.1:1'))).code, 'USAGE');
    assert.equal((await failure(factory({ vault: 'https://x.vault.azure.net', 'dev-token': 'maybe' }, 'u'))).code, 'USAGE');
    assert.equal(
      (await failure(factory({ vault: 'https://x.vault.azure.net', ca: '/nonexistent.pem', 'dev-token': 'true' }, 'u'))).code,
      'USAGE',
    );
  });

  it('without any credential says AUTH and how to fix it (no @azure/identity installed)', async () => {
    const saved = process.env['AZURE_ACCESS_TOKEN'];
    delete process.env['AZURE_ACCESS_TOKEN'];
    try {
      const e = await failure(factory({ vault: 'https://x.vault.azure.net' }, 'azurekv:vault=https://x.vault.azure.net'));
      assert.equal(e.code, 'AUTH');
      assert.match(e.message, /AZURE_ACCESS_TOKEN/);
    } finally {
      if (saved !== undefined) process.env['AZURE_ACCESS_TOKEN'] = saved;
    }
  });

  it('connection refused -> UNAVAILABLE (retryable); health reports failed and never throws', async () => {
    const port = await closedPort();
    const d = await factory({ vault: `https://127.0.0.1:${port}`, 'dev-token': 'true', retries: '0' }, 'azurekv:…');
    const e = await failure(d.keyExistsAndIsActive('some-key'));
    assert.equal(e.code, 'UNAVAILABLE');
    assert.equal(e.retryable, true);
    const h = await d.health();
    assert.equal(h.state, 'failed');
    await d.close?.();
  });

  it('checks names, key ids and ciphertexts before any request', async () => {
    const port = await closedPort();
    const d = await factory({ vault: `https://127.0.0.1:${port}`, 'dev-token': 'true', retries: '0' }, 'azurekv:…');
    assert.equal((await failure(d.generateSigningKeyPair('ec-p256', 'has_underscore'))).code, 'INVALID_NAME');
    assert.equal((await failure(d.generateSigningKeyPair('ed25519', 'k'))).code, 'UNSUPPORTED');
    assert.equal((await failure(d.generateEncryptionKeyPair('ec-p256', 'k'))).code, 'UNSUPPORTED');
    assert.equal((await failure(d.getPublicKey('a/b/c'))).code, 'INVALID_INPUT');
    assert.equal((await failure(d.getPublicKey('https://other.vault.azure.net/keys/k'))).code, 'INVALID_INPUT');
    assert.equal((await failure(d.decryptSymmetric('k', Buffer.from('garbage')))).code, 'INVALID_CIPHERTEXT');
    assert.equal((await failure(d.decryptAsymmetric('k', Buffer.alloc(256), 'ecies-p256-hkdf-sha256-aes-gcm'))).code, 'UNSUPPORTED');
    assert.equal(await d.resolveKeyId!(`https://127.0.0.1:${port}/keys/wrapper/0123abcd`), 'wrapper/0123abcd');
    assert.equal(await d.resolveKeyId!('wrapper'), 'wrapper');
    // import: material checked against the spec, ed25519 and symmetric refused
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    assert.equal(
      (await failure(d.importKey!({ kind: 'signing', spec: 'ec-p384', secret: pkcs8(ec.privateKey) }, 'k'))).code,
      'INVALID_INPUT',
    );
    const ed = generateKeyPairSync('ed25519');
    assert.equal(
      (await failure(d.importKey!({ kind: 'signing', spec: 'ed25519', secret: pkcs8(ed.privateKey) }, 'k'))).code,
      'UNSUPPORTED',
    );
    assert.equal((await failure(d.importKey!({ kind: 'symmetric', spec: 'aes256', secret: randomBytes(32) }, 'k'))).code, 'UNSUPPORTED');
    assert.equal(
      (await failure(d.importKey!({ kind: 'signing', spec: 'ec-p256', secret: Buffer.from('not der') }, 'k'))).code,
      'INVALID_INPUT',
    );
    await d.close?.();
  });

  it('PKCS#8 -> Azure import JWK -> SPKI gives back the same public key (node:crypto on both ends)', () => {
    const cases: [SigningKeySpec, () => { privateKey: KeyObject; publicKey: KeyObject }][] = [
      ['ec-p256', () => generateKeyPairSync('ec', { namedCurve: 'P-256' })],
      ['ec-p384', () => generateKeyPairSync('ec', { namedCurve: 'P-384' })],
      ['secp256k1', () => generateKeyPairSync('ec', { namedCurve: 'secp256k1' })],
      ['rsa-2048', () => generateKeyPairSync('rsa', { modulusLength: 2048 })],
      ['rsa-3072', () => generateKeyPairSync('rsa', { modulusLength: 3072 })],
    ];
    for (const [spec, gen] of cases) {
      const kp = gen();
      const { jwk } = jwkForImport({ kind: 'signing', spec, secret: pkcs8(kp.privateKey) });
      if (spec === 'secp256k1') assert.equal(jwk.crv, 'P-256K');
      assert.ok(jwk.d && jwk.d.length > 0, 'private part present for the import');
      const publicOnly = { ...jwk, d: undefined, p: undefined, q: undefined, dp: undefined, dq: undefined, qi: undefined };
      assert.deepEqual(spkiOf(publicOnly), kp.publicKey.export({ format: 'der', type: 'spki' }), spec);
    }
  });

  it('maps the SDK RestError by status and code', () => {
    const m = (status: number | undefined, code: string | undefined, message = 'x') =>
      mapAzureError(new RestError(message, { ...(status ? { statusCode: status } : {}), ...(code ? { code } : {}) }), 'op', 'https://v')
        .code;
    assert.equal(m(401, 'Unauthorized'), 'AUTH');
    assert.equal(m(403, 'Forbidden', 'Caller is not authorized to perform action on resource.'), 'PERMISSION');
    assert.equal(m(403, 'Forbidden', 'Operation "sign" is not allowed on a disabled key.'), 'KEY_DISABLED');
    assert.equal(m(404, 'KeyNotFound'), 'NOT_FOUND');
    assert.equal(m(409, 'Conflict', 'Key k is currently in a deleted but recoverable state'), 'EXISTS');
    assert.equal(m(429, 'Throttled'), 'THROTTLED');
    assert.equal(m(503, undefined), 'UNAVAILABLE');
    assert.equal(m(undefined, 'ECONNREFUSED'), 'UNAVAILABLE');
    assert.equal(m(undefined, 'ETIMEDOUT'), 'TIMEOUT');
    assert.equal(m(undefined, 'DEPTH_ZERO_SELF_SIGNED_CERT'), 'UNAVAILABLE');
    const multi = mapAzureError(new RestError('line one\nline two', { statusCode: 500 }), 'op', 'https://v');
    assert.ok(!multi.message.includes('\n'));
  });
});

// ------------------------------------------------------------------ part 2

/** lowkey-vault runs where its jar can be had; elsewhere the block is skipped and listed loudly */
function lowkeyGate(): false | string {
  const cached = join(process.env['KEYPORT_CACHE'] ?? join(homedir(), '.cache', 'keyport-testbed'), 'lowkey-vault');
  const haveJar = !!process.env['LOWKEY_VAULT_JAR'] || (existsSync(cached) && readdirSync(cached).some((f) => f.endsWith('.jar')));
  if (haveJar) return skipUnless('lowkeyvault');
  const reason =
    "lowkeyvault: the lowkey-vault-app jar is not served by this machine's Maven Central proxy; set LOWKEY_VAULT_JAR=/path/to/lowkey-vault-app.jar";
  mkdirSync(TESTBED_STATE, { recursive: true });
  appendFileSync(join(TESTBED_STATE, 'skipped.txt'), `${reason}\n`);
  return `SKIPPED (service unavailable): ${reason}`;
}

describe('azurekv driver against lowkey-vault', { skip: lowkeyGate() }, () => {
  let d: Driver;
  let vault: string;
  const made: string[] = [];

  before(async () => {
    const env = serviceEnv('lowkeyvault');
    vault = env['AZURE_VAULT_URL']!;
    d = await factory({ vault, ca: env['LOWKEY_VAULT_CA']!, 'dev-token': 'true', purge: 'true' }, `azurekv:vault=${vault}`);
  });
  after(async () => {
    for (const k of made) await d.deleteKey(k).catch(() => undefined);
    await d.close?.();
  });

  it('health is ok', async () => {
    assert.deepEqual(await d.health(), { state: 'ok' });
  });

  const signing: [SigningKeySpec, SigningAlgoSpec, string][] = [
    ['ec-p256', 'ecdsa-sha256', 'sha256'],
    ['ec-p384', 'ecdsa-sha384', 'sha384'],
    ['secp256k1', 'ecdsa-sha256', 'sha256'],
    ['rsa-2048', 'rsa-pss-sha256', 'sha256'],
    ['rsa-3072', 'rsa-pss-sha256', 'sha256'],
  ];
  for (const [spec, algo, hash] of signing) {
    it(`${spec}: generate, exists, sign in the vault, verify with node:crypto`, async () => {
      const id = await d.generateSigningKeyPair(spec, uniq(`sig-${spec}`));
      made.push(id);
      await d.keyExistsAndIsActive(id);
      const pub = await d.getPublicKey(id);
      assert.equal(pub.spec, spec);
      const key = createPublicKey({ key: pub.spki, format: 'der', type: 'spki' });
      const data = randomBytes(1000);
      const sig = await d.sign(id, data, algo);
      const ok = spec.startsWith('rsa')
        ? nodeVerify(hash, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, sig)
        : nodeVerify(hash, data, { key, dsaEncoding: 'der' }, sig);
      assert.ok(ok, `${spec} signature verifies`);
      assert.ok(
        !nodeVerify(
          hash,
          Buffer.concat([data, Buffer.from('x')]),
          spec.startsWith('rsa') ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } : key,
          sig,
        ),
      );
      assert.equal((await failure(d.sign(id, data, spec === 'ec-p384' ? 'ecdsa-sha256' : 'ecdsa-sha384'))).code, 'KEY_USAGE');
    });
  }

  for (const spec of ['rsa-2048', 'rsa-3072'] as const) {
    it(`${spec}: RSA-OAEP-256 encrypt with node:crypto, decrypt in the vault`, async () => {
      const id = await d.generateEncryptionKeyPair(spec, uniq(`enc-${spec}`));
      made.push(id);
      const pub = await d.getPublicKey(id);
      const msg = randomBytes(100);
      const ct = publicEncrypt(
        {
          key: createPublicKey({ key: pub.spki, format: 'der', type: 'spki' }),
          padding: constants.RSA_PKCS1_OAEP_PADDING,
          oaepHash: 'sha256',
        },
        msg,
      );
      assert.deepEqual(await d.decryptAsymmetric(id, ct, 'rsa-oaep-sha256'), msg);
      const bad = Buffer.from(ct);
      bad[10]! ^= 1;
      assert.equal((await failure(d.decryptAsymmetric(id, bad, 'rsa-oaep-sha256'))).code, 'INVALID_CIPHERTEXT');
    });
  }

  it('symmetric wrapper (RSA-3072 wrapKey/unwrapKey + local AES-GCM): round trip of small and large secrets, tampering detected', async () => {
    const id = await d.generateSymmetricKey(uniq('wrap'));
    made.push(id);
    for (const n of [0, 32, 5000]) {
      const pt = randomBytes(n);
      const ct = await d.encryptSymmetric(id, pt);
      assert.deepEqual(await d.decryptSymmetric(id, ct), pt);
    }
    const ct = await d.encryptSymmetric(id, Buffer.from('secret'));
    const bad = Buffer.from(ct);
    bad[bad.length - 1]! ^= 1;
    assert.equal((await failure(d.decryptSymmetric(id, bad))).code, 'INVALID_CIPHERTEXT');
    // another wrapper key cannot open it
    const other = await d.generateSymmetricKey(uniq('wrap'));
    made.push(other);
    assert.equal((await failure(d.decryptSymmetric(other, ct))).code, 'INVALID_CIPHERTEXT');
  });

  it('import EC and RSA keys, sign in the vault, verify with the locally known public key', async () => {
    for (const [spec, gen, algo, hash] of [
      ['ec-p256', () => generateKeyPairSync('ec', { namedCurve: 'P-256' }), 'ecdsa-sha256', 'sha256'],
      ['secp256k1', () => generateKeyPairSync('ec', { namedCurve: 'secp256k1' }), 'ecdsa-sha256', 'sha256'],
      ['rsa-2048', () => generateKeyPairSync('rsa', { modulusLength: 2048 }), 'rsa-pss-sha256', 'sha256'],
    ] as const) {
      const kp = gen();
      const id = await d.importKey!({ kind: 'signing', spec, secret: pkcs8(kp.privateKey) }, uniq(`imp-${spec}`));
      made.push(id);
      const pub = await d.getPublicKey(id);
      assert.deepEqual(pub.spki, kp.publicKey.export({ format: 'der', type: 'spki' }), 'the vault holds the imported key');
      const data = randomBytes(64);
      const sig = await d.sign(id, data, algo);
      const opts = spec.startsWith('rsa')
        ? { key: kp.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }
        : { key: kp.publicKey, dsaEncoding: 'der' as const };
      assert.ok(nodeVerify(hash, data, opts, sig), `imported ${spec} signs`);
    }
    // a local signature of the same digest verifies the same way (sanity of our DER conversion path)
    const kp = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const data = randomBytes(10);
    assert.ok(nodeVerify('sha384', data, kp.publicKey, nodeSign('sha384', data, kp.privateKey)));
    assert.ok(createHash('sha384').update(data).digest().length === 48);
  });

  it('lists keys over all pages with kind and spec tags', async () => {
    const id = await d.generateSigningKeyPair('ec-p256', uniq('list'));
    made.push(id);
    const seen = new Map<string, { kind?: string; spec?: string }>();
    for await (const k of d.listKeys!()) seen.set(k.keyId, k);
    assert.equal(seen.get(id)?.kind, 'signing');
    assert.equal(seen.get(id)?.spec, 'ec-p256');
  });

  it('an existing name is EXISTS, not a silent new version', async () => {
    const name = uniq('dup');
    made.push(await d.generateSigningKeyPair('ec-p256', name));
    assert.equal((await failure(d.generateSigningKeyPair('ec-p256', name))).code, 'EXISTS');
  });

  it('delete -> NOT_FOUND', async () => {
    const id = await d.generateSigningKeyPair('ec-p256', uniq('del'));
    await d.deleteKey(id);
    assert.equal((await failure(d.keyExistsAndIsActive(id))).code, 'NOT_FOUND');
    assert.equal((await failure(d.getPublicKey(id))).code, 'NOT_FOUND');
    assert.equal((await failure(d.sign(id, Buffer.from('x'), 'ecdsa-sha256'))).code, 'NOT_FOUND');
    assert.equal((await failure(d.deleteKey(id))).code, 'NOT_FOUND');
  });

  it('an unknown key is NOT_FOUND; a wrong CA fails the TLS check', async () => {
    assert.equal((await failure(d.keyExistsAndIsActive(uniq('never')))).code, 'NOT_FOUND');
    const noCa = await factory({ vault, 'dev-token': 'true', retries: '0' }, `azurekv:vault=${vault}`);
    const e = await failure(noCa.keyExistsAndIsActive('x'));
    assert.equal(e.code, 'UNAVAILABLE');
    assert.match(e.message, /ca=/);
    await noCa.close?.();
  });
});
