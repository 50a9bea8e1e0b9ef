/**
 * The awskms: driver against nsmithuk/local-kms (scripts/testbed/localkms.sh, a Go KMS emulator built
 * from the Go module proxy), for the checks local-kms really implements (read from its source,
 * src/handler and src/cmk of the pinned version):
 *  - RSAES_OAEP_SHA_256 Decrypt with Go's rsa.DecryptOAEP; a bad ciphertext is InvalidCiphertextException
 *  - ECDSA_SHA_256 / _384 Sign on ECC_NIST_P256, ECC_NIST_P384 and ECC_SECG_P256K1 (ASN.1 DER r,s);
 *    a key spec signs only with its own algorithm (InvalidKeyUsageException otherwise)
 *  - symmetric BYOK: CreateKey Origin=EXTERNAL (SYMMETRIC_DEFAULT only), GetParametersForImport
 *    (RSAES_OAEP_SHA_1 / _SHA_256 / RSAES_PKCS1_V1_5, RSA_2048 wrapping key), ImportKeyMaterial of
 *    exactly 32 bytes. No RSA_AES_KEY_WRAP_SHA_256 and no asymmetric EXTERNAL keys: no private-key import.
 *
 * Every result is checked with node:crypto, never with the driver or the emulator: RSA ciphertexts are
 * made locally from the SPKI, signatures verified locally, and an imported AES key is shown to be the one
 * local-kms really uses by opening local-kms's ciphertext blob locally with the imported bytes, and by
 * having local-kms decrypt a blob sealed locally with them (local-kms's own blob format, see below).
 * A separate file so that an unavailable local-kms hides neither the moto nor the LocalStack checks.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createCipheriv,
  createDecipheriv,
  createPublicKey,
  generateKeyPairSync,
  publicEncrypt,
  randomBytes,
  verify,
  constants as C,
} from 'node:crypto';
import { skipUnless, serviceEnv } from '../support/testbed.js';
import { factory } from '../../src/kms/aws/index.js';
import { runConformance, type CheckResult } from '../../src/kms/conformance.js';
import type { Driver } from '../../src/kms/driver.js';
import { rejectsCode } from '../support/rejects.js';
import { assertOnlyDeviations, type Deviation } from '../support/deviations.js';

const uniq = () => `lk${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;

/**
 * local-kms's (not AWS's) symmetric CiphertextBlob (src/cmk/aes_encryption.go EncryptAndPackage,
 * src/service/ciphertext.go UnpackCiphertextBlob): len(ARN) (1 byte) || key ARN || backing-key version
 * (uint32 little-endian) || nonce (12) || AES-256-GCM ciphertext || tag (16); the AAD is the encryption
 * context's sorted keys and values concatenated (none here). Only the part after the version is
 * authenticated.
 */
function openLocalKmsBlob(blob: Buffer, key: Buffer): { arn: string; version: number; plaintext: Buffer } {
  const n = blob[0]!;
  const arn = blob.subarray(1, 1 + n).toString('ascii');
  const version = blob.readUInt32LE(1 + n);
  const body = blob.subarray(1 + n + 4);
  const d = createDecipheriv('aes-256-gcm', key, body.subarray(0, 12));
  d.setAuthTag(body.subarray(body.length - 16));
  const plaintext = Buffer.concat([d.update(body.subarray(12, body.length - 16)), d.final()]);
  return { arn, version, plaintext };
}

/** a blob in local-kms's format sealed here with node:crypto (version 0: the imported material) */
function sealLocalKmsBlob(arn: string, key: Buffer, plaintext: Buffer): Buffer {
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, nonce);
  const ct = Buffer.concat([c.update(plaintext), c.final()]);
  const version = Buffer.alloc(4);
  version.writeUInt32LE(0);
  return Buffer.concat([Buffer.from([arn.length]), Buffer.from(arn, 'ascii'), version, nonce, ct, c.getAuthTag()]);
}

const EC: Record<'ec-p256' | 'ec-p384' | 'secp256k1', { curve: string; algo: 'ecdsa-sha256' | 'ecdsa-sha384'; hash: string }> = {
  'ec-p256': { curve: 'prime256v1', algo: 'ecdsa-sha256', hash: 'sha256' },
  'ec-p384': { curve: 'secp384r1', algo: 'ecdsa-sha384', hash: 'sha384' },
  secp256k1: { curve: 'secp256k1', algo: 'ecdsa-sha256', hash: 'sha256' },
};

describe('awskms driver on nsmithuk/local-kms', { skip: skipUnless('localkms') }, () => {
  let env: Record<string, string>;
  let d: Driver;
  const uri = () =>
    `awskms:region=${env.LOCALKMS_REGION};endpoint=${env.LOCALKMS_ENDPOINT};access-key-id=${env.LOCALKMS_ACCESS_KEY_ID};secret-access-key=${env.LOCALKMS_SECRET_ACCESS_KEY}`;
  const arnOf = (id: string) => `arn:aws:kms:${env.LOCALKMS_REGION}:${env.LOCALKMS_ACCOUNT_ID}:key/${id}`;
  const countKeys = async () => {
    let n = 0;
    for await (const _ of d.listKeys!()) n++;
    return n;
  };
  before(async () => {
    env = serviceEnv('localkms');
    d = await factory(
      {
        region: env.LOCALKMS_REGION!,
        endpoint: env.LOCALKMS_ENDPOINT!,
        'access-key-id': env.LOCALKMS_ACCESS_KEY_ID!,
        'secret-access-key': env.LOCALKMS_SECRET_ACCESS_KEY!,
      },
      'awskms:',
    );
  });
  after(async () => {
    await d?.close?.();
  });

  it('health is ok', async () => {
    assert.deepEqual(await d.health(), { state: 'ok' });
  });

  for (const spec of ['rsa-2048', 'rsa-3072'] as const) {
    it(`${spec}: a ciphertext made locally with RSA-OAEP-SHA-256 decrypts in KMS; a tampered one is INVALID_CIPHERTEXT`, async () => {
      const id = await d.generateEncryptionKeyPair(spec, uniq());
      const pub = await d.getPublicKey(id);
      assert.equal(pub.spec, spec);
      const key = createPublicKey({ key: pub.spki, format: 'der', type: 'spki' });
      assert.equal(key.asymmetricKeyType, 'rsa');
      assert.equal(key.asymmetricKeyDetails?.modulusLength, spec === 'rsa-2048' ? 2048 : 3072);
      for (const n of [1, 32, 190]) {
        const pt = randomBytes(n);
        const ct = publicEncrypt({ key, padding: C.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, pt);
        assert.deepEqual(await d.decryptAsymmetric(id, ct, 'rsa-oaep-sha256'), pt);
      }
      // local-kms answers a ciphertext that does not decrypt with InvalidCiphertextException, as AWS does
      const pt = randomBytes(32);
      const ct = publicEncrypt({ key, padding: C.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, pt);
      const sha1 = publicEncrypt({ key, padding: C.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, pt);
      for (const at of [0, 10, ct.length - 1]) {
        const bad = Buffer.from(ct);
        bad[at]! ^= 1;
        const e = await rejectsCode(d.decryptAsymmetric(id, bad, 'rsa-oaep-sha256'), 'INVALID_CIPHERTEXT');
        assert.ok(!e.message.includes(pt.toString('hex')));
      }
      await rejectsCode(d.decryptAsymmetric(id, sha1, 'rsa-oaep-sha256'), 'INVALID_CIPHERTEXT');
      // the untouched ciphertext still decrypts (the failures above were the tampering)
      assert.deepEqual(await d.decryptAsymmetric(id, ct, 'rsa-oaep-sha256'), pt);
      // refused by the driver before the call
      await rejectsCode(d.decryptAsymmetric(id, randomBytes(1024 * 1024), 'rsa-oaep-sha256'), 'INVALID_CIPHERTEXT');
      await rejectsCode(d.decryptAsymmetric(id, Buffer.alloc(0), 'rsa-oaep-sha256'), 'INVALID_CIPHERTEXT');
      await rejectsCode(d.decryptAsymmetric(id, ct, 'ecies-p256-hkdf-sha256-aes-gcm'), 'UNSUPPORTED');
      await rejectsCode(d.sign(id, Buffer.from('x'), 'rsa-pss-sha256'), 'KEY_USAGE');
      await d.deleteKey(id);
      await rejectsCode(d.decryptAsymmetric(id, ct, 'rsa-oaep-sha256'), 'KEY_DISABLED');
    });
  }

  it('symmetric BYOK (RSAES_OAEP_SHA_256): local-kms encrypts and decrypts with exactly the imported 32 bytes', async () => {
    const secret = randomBytes(32);
    const name = uniq();
    const a = await d.importKey!({ kind: 'symmetric', spec: 'aes256', secret }, name);
    await d.keyExistsAndIsActive(a);
    assert.equal(await d.resolveKeyId!(`alias/${name}`), a);
    const pt = Buffer.from('keyport byok check');
    const ct = await d.encryptSymmetric(a, pt);
    // opened locally with the imported bytes: the material local-kms encrypts with is what keyport sent
    const opened = openLocalKmsBlob(ct, secret);
    assert.equal(opened.arn, arnOf(a));
    assert.equal(opened.version, 0);
    assert.deepEqual(opened.plaintext, pt);
    assert.throws(() => openLocalKmsBlob(ct, randomBytes(32)), /authenticate/);
    // and the other way: a blob sealed here with the imported bytes decrypts in local-kms
    const mine = Buffer.from('sealed by node:crypto');
    assert.deepEqual(await d.decryptSymmetric(a, sealLocalKmsBlob(arnOf(a), secret, mine)), mine);
    await rejectsCode(d.decryptSymmetric(a, sealLocalKmsBlob(arnOf(a), randomBytes(32), mine)), 'INVALID_CIPHERTEXT');
    // a second key with the same bytes makes blobs under the same material; a key with other bytes
    // cannot read them
    const b = await d.importKey!({ kind: 'symmetric', spec: 'aes256', secret });
    const other = await d.importKey!({ kind: 'symmetric', spec: 'aes256', secret: randomBytes(32) });
    const ctB = await d.encryptSymmetric(b, pt);
    assert.equal(openLocalKmsBlob(ctB, secret).arn, arnOf(b));
    assert.deepEqual(openLocalKmsBlob(ctB, secret).plaintext, pt);
    await rejectsCode(d.decryptSymmetric(other, ctB), 'INVALID_CIPHERTEXT');
    for (const k of [a, b, other]) await d.deleteKey(k);
    await rejectsCode(d.keyExistsAndIsActive(a), 'KEY_DISABLED');
    await rejectsCode(d.decryptSymmetric(a, ct), 'KEY_DISABLED');
  });

  it('symmetric import refuses anything but 32 bytes, before calling KMS', async () => {
    const before = await countKeys();
    await rejectsCode(d.importKey!({ kind: 'symmetric', spec: 'aes256', secret: randomBytes(16) }), 'INVALID_INPUT');
    assert.equal(await countKeys(), before);
  });

  it('symmetric blob: the GCM part is authenticated; the ARN header is not (local-kms uses the KeyId keyport sends)', async () => {
    const id = await d.generateSymmetricKey();
    const pt = randomBytes(32);
    const ct = await d.encryptSymmetric(id, pt);
    const n = ct[0]!;
    assert.equal(ct.subarray(1, 1 + n).toString('ascii'), arnOf(id));
    for (const at of [1 + n + 4, 1 + n + 4 + 12, ct.length - 1]) {
      const bad = Buffer.from(ct);
      bad[at]! ^= 0x01;
      await rejectsCode(d.decryptSymmetric(id, bad), 'INVALID_CIPHERTEXT');
    }
    await rejectsCode(d.decryptSymmetric(id, ct.subarray(0, ct.length - 5)), 'INVALID_CIPHERTEXT');
    await rejectsCode(d.decryptSymmetric(id, randomBytes(6145)), 'INVALID_CIPHERTEXT');
    // the deviation in the conformance table below: with a KeyId, src/handler/decrypt.go ignores the
    // ARN in the blob, and the ARN is not in the GCM AAD, so a changed ARN byte still decrypts (AWS:
    // InvalidCiphertextException). Asserted as it is, so that a fixed local-kms shows up here.
    const arnByte = Buffer.from(ct);
    arnByte[n >> 1]! ^= 0x80;
    assert.deepEqual(await d.decryptSymmetric(id, arnByte), pt);
    await d.deleteKey(id);
  });

  for (const spec of ['ec-p256', 'rsa-2048'] as const) {
    it(`${spec} private key import fails with UNSUPPORTED naming the limitation, and leaves no key`, async () => {
      const kp =
        spec === 'ec-p256' ? generateKeyPairSync('ec', { namedCurve: 'prime256v1' }) : generateKeyPairSync('rsa', { modulusLength: 2048 });
      const pkcs8 = kp.privateKey.export({ type: 'pkcs8', format: 'der' }) as Buffer;
      const before = await countKeys();
      const e = await rejectsCode(
        d.importKey!({ kind: spec === 'ec-p256' ? 'signing' : 'encryption', spec, secret: pkcs8 }, uniq()),
        'UNSUPPORTED',
      );
      assert.match(e.message, new RegExp(`does not support ${spec} private key import`));
      assert.match(e.message, new RegExp(`Origin EXTERNAL and KeySpec ${spec === 'ec-p256' ? 'ECC_NIST_P256' : 'RSA_2048'}`));
      assert.match(e.message, /not supported for Origin EXTERNAL/);
      assert.ok(
        !e.message.includes(pkcs8.toString('hex').slice(-40)) && !e.message.includes(pkcs8.toString('base64').slice(-40)),
        'no key bytes',
      );
      assert.equal(await countKeys(), before);
    });
  }

  it('a private key that is not the declared spec is still refused as INVALID_INPUT before any KMS call', async () => {
    const before = await countKeys();
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey.export({ type: 'pkcs8', format: 'der' }) as Buffer;
    await rejectsCode(d.importKey!({ kind: 'signing', spec: 'ec-p256', secret: p384 }), 'INVALID_INPUT');
    await rejectsCode(d.importKey!({ kind: 'signing', spec: 'ec-p256', secret: randomBytes(100) }), 'INVALID_INPUT');
    assert.equal(await countKeys(), before);
  });

  for (const spec of Object.keys(EC) as (keyof typeof EC)[]) {
    it(`${spec}: ECDSA signatures by local-kms verify with node:crypto (RAW and, over 4096 bytes, DIGEST)`, async () => {
      const s = EC[spec];
      const id = await d.generateSigningKeyPair(spec, uniq());
      await d.keyExistsAndIsActive(id);
      const pub = await d.getPublicKey(id);
      assert.equal(pub.spec, spec);
      const key = createPublicKey({ key: pub.spki, format: 'der', type: 'spki' });
      assert.equal(key.asymmetricKeyType, 'ec');
      assert.equal(key.asymmetricKeyDetails?.namedCurve, s.curve);
      for (const msg of [randomBytes(1), randomBytes(200), randomBytes(4096), randomBytes(10_000)]) {
        const sig = await d.sign(id, msg, s.algo);
        assert.ok(verify(s.hash, msg, { key, dsaEncoding: 'der' }, sig), `${s.algo} over ${msg.length} bytes verifies`);
        assert.ok(!verify(s.hash, Buffer.concat([msg, Buffer.from('!')]), { key, dsaEncoding: 'der' }, sig));
      }
      // a key spec signs only with its own hash (local-kms: InvalidKeyUsageException, as AWS)
      await rejectsCode(d.sign(id, Buffer.from('x'), s.algo === 'ecdsa-sha256' ? 'ecdsa-sha384' : 'ecdsa-sha256'), 'KEY_USAGE');
      await rejectsCode(d.encryptSymmetric(id, Buffer.from('x')), 'KEY_USAGE');
      await d.deleteKey(id);
      await rejectsCode(d.sign(id, Buffer.from('x'), s.algo), 'KEY_DISABLED');
    });
  }

  it("rsa-2048 RSASSA_PSS_SHA_256: local-kms uses the largest PSS salt, not AWS's 32 bytes (a deviation, asserted as it is)", async () => {
    const id = await d.generateSigningKeyPair('rsa-2048', uniq());
    const key = createPublicKey({ key: (await d.getPublicKey(id)).spki, format: 'der', type: 'spki' });
    const msg = randomBytes(100);
    const sig = await d.sign(id, msg, 'rsa-pss-sha256');
    const pss = (saltLength: number) => verify('sha256', msg, { key, padding: C.RSA_PKCS1_PSS_PADDING, saltLength }, sig);
    // src/cmk/rsa_key.go: rsa.SignPSS(…, nil) = PSSSaltLengthAuto = modulus bytes - hash - 2 when signing
    assert.ok(pss(256 - 32 - 2), 'verifies with the maximum salt length (222)');
    assert.ok(!pss(32), 'does not verify with the 32-byte salt AWS KMS uses and keyport verifies with');
    await d.deleteKey(id);
  });

  /**
   * The conformance kit (what `keyport driver-test` runs). Every check passes except the ones local-kms
   * cannot answer truthfully, listed with the reason from its source; each must fail or skip for
   * exactly that reason, and the list is asserted whole, so a fixed local-kms or a new driver bug both
   * show up.
   */
  const LOCALKMS_UNTRUTHFUL: Deviation[] = [
    {
      check: 'symmetric.tampered-ciphertext',
      spec: 'aes256',
      outcome: 'fail',
      detail: /^decryptSymmetric of a ciphertext with the middle byte flipped succeeded/,
      why: "the middle of local-kms's blob is the key ARN header, which is not authenticated (not GCM AAD, src/cmk/aes_encryption.go) and is ignored when a KeyId is given (src/handler/decrypt.go); AWS refuses any changed byte. The flipped last byte and the truncation are refused",
    },
    ...(['rsa-2048', 'rsa-3072'] as const).map((spec) => ({
      check: 'signing.sign-verify',
      spec,
      outcome: 'fail' as const,
      detail: /^the rsa-pss-sha256 signature does not verify locally/,
      why: "local-kms signs RSASSA_PSS_* with Go's rsa.SignPSS(…, nil opts) (src/cmk/rsa_key.go), i.e. the largest salt; AWS KMS uses a salt as long as the digest (32 bytes), which keyport verifies",
    })),
    {
      check: 'import.ec-p256',
      spec: 'ec-p256',
      outcome: 'skip',
      detail:
        /^importKey: this AWS KMS endpoint does not support ec-p256 private key import .*KeySpec ECC_NIST_P256 is not supported for Origin EXTERNAL/,
      why: 'local-kms makes Origin EXTERNAL keys only of SYMMETRIC_DEFAULT (src/handler/create_key.go) and has no RSA_AES_KEY_WRAP_SHA_256 (src/handler/get_parameters_for_import.go): no private-key import',
    },
    {
      check: 'bad-credentials',
      outcome: 'skip',
      detail: /accepted wrong credentials/,
      why: 'local-kms does not verify SigV4: any access key and secret are accepted (src/server.go reads only X-Amz-Target)',
    },
  ];

  it('conformance kit: no failure but the listed local-kms deviations', async () => {
    const results: CheckResult[] = await runConformance(d, { uri: uri(), callTimeoutMs: 30_000 });
    const passed = assertOnlyDeviations(results, LOCALKMS_UNTRUTHFUL);
    for (const c of [
      'encryption.decrypt[rsa-2048]',
      'encryption.decrypt[rsa-3072]',
      'signing.sign-verify[ec-p256]',
      'signing.sign-verify[ec-p384]',
      'signing.sign-verify[secp256k1]',
      'wrong-usage.sign-algorithm[ec-p256]',
      'import.aes256[aes256]',
      'unknown-key',
      'unreachable',
      'list-keys',
    ]) {
      assert.ok(passed.includes(c), `${c} passes`);
    }
    assert.ok(passed.length >= 50, `${passed.length} checks passed`);
  });
});
