/**
 * The pkcs11: driver against kryoptic (scripts/testbed/kryoptic.sh: the Rust PKCS#11 soft token by Simo
 * Sorce, crate 1.5.4 built with kryoptic-lib's `minimal` + `dynamic` features on the system OpenSSL, one
 * sqlite slot, its own KRYOPTIC_CONF, token 'keyport'): a second PKCS#11 implementation, written
 * independently of SoftHSM2, and one that does what SoftHSM2 2.6 cannot — RSA-OAEP with SHA-256 and the
 * PKCS#11 3.0 CKM_AES_KEY_WRAP_KWP.
 *
 * node:crypto is the independent checker: signatures made in the token are verified with the SPKI the
 * driver reads (and, for imported keys, with the public key derived locally); OAEP ciphertexts are made
 * locally with the SPKI; AES-GCM output of imported keys is opened locally with the known key bytes.
 * Key attributes are read back with a raw pkcs11js session; which mechanism an import used is seen by
 * spying on the binding's C_UnwrapKey / C_CreateObject calls.
 *
 * What this build does not have (so the driver must not claim it):
 *  - Ed25519: kryoptic-lib's `eddsa` feature requires `ossl/ossl320` (OpenSSL >= 3.2, Cargo.toml), and
 *    Debian 12 has OpenSSL 3.0, so the module is built without it.
 *  - secp256k1: kryoptic's ECDSA knows only prime256v1, secp384r1 and secp521r1 (src/ec/mod.rs
 *    name_to_oid / oid_to_bits), so generating or importing a secp256k1 key is refused.
 */
import { describe, it, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  createCipheriv,
  createDecipheriv,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  verify as nodeVerify,
  constants,
  publicEncrypt,
} from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { skipUnless, serviceEnv } from '../support/testbed.js';
import type { Driver, EncryptionKeySpec, SigningAlgoSpec, SigningKeySpec } from '../../src/kms/driver.js';
import { factory, MECHANISMS } from '../../src/kms/pkcs11/index.js';
import { openDriver } from '../../src/kms/registry.js';
import { runConformance, type CheckResult } from '../../src/kms/conformance.js';
import { assertOnlyDeviations, type Deviation } from '../support/deviations.js';
import { rejectsKeyport as rejects } from '../support/rejects.js';

const SERVICE = 'kryoptic';
const AAD = Buffer.from('keyport-pkcs11-wrap-v1');
const uniq = (p: string) => `${p}-${randomBytes(5).toString('hex')}`;

/** what kryoptic 1.5.4 (minimal features, OpenSSL 3.0) can do, and the one algorithm of each */
const SIGNING: Array<[SigningKeySpec, SigningAlgoSpec]> = [
  ['ec-p256', 'ecdsa-sha256'],
  ['ec-p384', 'ecdsa-sha384'],
  ['rsa-2048', 'rsa-pss-sha256'],
  ['rsa-3072', 'rsa-pss-sha256'],
];
const OAEP: Array<[EncryptionKeySpec, number]> = [
  ['rsa-2048', 256],
  ['rsa-3072', 384],
];

function verifyLocally(spki: Buffer, algo: SigningAlgoSpec, data: Buffer, sig: Buffer): boolean {
  const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  switch (algo) {
    case 'ecdsa-sha256':
      return nodeVerify('sha256', data, { key, dsaEncoding: 'der' }, sig);
    case 'ecdsa-sha384':
      return nodeVerify('sha384', data, { key, dsaEncoding: 'der' }, sig);
    case 'ed25519':
      return nodeVerify(null, data, key, sig);
    case 'rsa-pss-sha256':
      return nodeVerify('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, sig);
  }
}

const oaepEncrypt = (spki: Buffer | KeyObject, pt: Buffer) =>
  publicEncrypt(
    {
      key: Buffer.isBuffer(spki) ? createPublicKey({ key: spki, format: 'der', type: 'spki' }) : spki,
      padding: constants.RSA_PKCS1_OAEP_PADDING,
      oaepHash: 'sha256',
    },
    pt,
  );

function useEnv(): Record<string, string> {
  const env = serviceEnv(SERVICE);
  process.env['KRYOPTIC_CONF'] = env.KRYOPTIC_CONF; // kryoptic reads it at C_Initialize
  return env;
}

describe('pkcs11: driver against kryoptic', { skip: skipUnless(SERVICE) }, () => {
  let env: Record<string, string>;
  let params: Record<string, string>;
  let d: Driver;
  const made: string[] = [];

  before(async () => {
    env = useEnv();
    params = { 'module-path': env.PKCS11_MODULE!, token: env.PKCS11_TOKEN!, 'pin-value': env.PKCS11_PIN! };
    d = await factory(params, 'pkcs11:test');
  });
  after(async () => {
    for (const id of made) await d.deleteKey(id).catch(() => undefined);
    await d?.close?.();
  });

  /** read attributes of the key objects labelled `label` with a raw pkcs11js session */
  function rawAttrs(label: string): Array<Record<string, boolean | number>> {
    const p = createRequire(import.meta.url)('pkcs11js');
    const m = new p.PKCS11();
    m.load(env.PKCS11_MODULE);
    try {
      m.C_Initialize();
    } catch (e) {
      if (!/ALREADY_INITIALIZED/.test(String(e))) throw e;
    }
    const slot = m.C_GetSlotList(true).find((s: Buffer) => m.C_GetTokenInfo(s).label.trim() === env.PKCS11_TOKEN);
    const s = m.C_OpenSession(slot, p.CKF_SERIAL_SESSION);
    try {
      m.C_FindObjectsInit(s, [{ type: p.CKA_LABEL, value: label }]);
      const hs: Buffer[] = m.C_FindObjects(s, 10);
      m.C_FindObjectsFinal(s);
      return hs.map((h) => {
        const [cls] = m.C_GetAttributeValue(s, h, [{ type: p.CKA_CLASS }]);
        const c = Number(cls.value.readBigUInt64LE(0));
        const out: Record<string, boolean | number> = { class: c };
        const want = c === p.CKO_PUBLIC_KEY ? ['CKA_TOKEN'] : ['CKA_TOKEN', 'CKA_SENSITIVE', 'CKA_EXTRACTABLE', 'CKA_PRIVATE'];
        for (const n of want) out[n] = m.C_GetAttributeValue(s, h, [{ type: p[n] }])[0].value[0] === 1;
        return out;
      });
    } finally {
      m.C_CloseSession(s); // the module stays initialised: the driver shares it
    }
  }

  /**
   * record which mechanism C_UnwrapKey was called with, and the classes C_CreateObject made, while `fn`
   * runs (the driver's binding instance is shared by every driver on the token)
   */
  async function spyImport<T>(fn: () => Promise<T>): Promise<{ value: T; unwrapMechs: number[]; created: number[] }> {
    const p11 = (d as unknown as { p11: Record<string, (...a: unknown[]) => unknown> }).p11;
    const unwrapMechs: number[] = [];
    const created: number[] = [];
    const origUnwrap = p11['C_UnwrapKeyAsync']!;
    const origCreate = p11['C_CreateObject']!;
    p11['C_UnwrapKeyAsync'] = function (this: unknown, ...a: unknown[]) {
      unwrapMechs.push((a[1] as { mechanism: number }).mechanism);
      return origUnwrap.apply(this, a);
    };
    p11['C_CreateObject'] = function (this: unknown, ...a: unknown[]) {
      const cls = (a[1] as Array<{ type: number; value: unknown }>).find((x) => x.type === 0 /* CKA_CLASS */);
      created.push(Number(cls?.value));
      return origCreate.apply(this, a);
    };
    try {
      return { value: await fn(), unwrapMechs, created };
    } finally {
      p11['C_UnwrapKeyAsync'] = origUnwrap;
      p11['C_CreateObject'] = origCreate;
    }
  }
  const CKO_PUBLIC_KEY = 2;
  const CKO_SECRET_KEY = 4;

  it('health is ok', async () => {
    assert.deepEqual(await d.health(), { state: 'ok' });
  });

  it('claims exactly what this kryoptic build does: rsa-oaep-sha256 yes; Ed25519 and secp256k1 no', () => {
    assert.deepEqual([...d.supportedSigningKeySpecs()].sort(), ['ec-p256', 'ec-p384', 'rsa-2048', 'rsa-3072']);
    assert.deepEqual([...d.supportedSigningAlgoSpecs()].sort(), ['ecdsa-sha256', 'ecdsa-sha384', 'rsa-pss-sha256']);
    // the OAEP probe (a throw-away key decrypting a node:crypto OAEP-SHA-256 ciphertext) succeeds here
    assert.deepEqual([...d.supportedEncryptionKeySpecs()].sort(), ['rsa-2048', 'rsa-3072']);
    assert.deepEqual(d.supportedEncryptionAlgoSpecs(), ['rsa-oaep-sha256']);
  });

  describe('signing keys: generated in the token, signatures verified by node:crypto', () => {
    for (const [spec, algo] of SIGNING) {
      it(`${spec}: generate, exists, getPublicKey, sign ${algo}, verify`, async () => {
        const name = uniq(`sig-${spec}`);
        const id = await d.generateSigningKeyPair(spec, name);
        made.push(id);
        assert.equal(id, name, 'the key id is the label');
        await d.keyExistsAndIsActive(id);
        const pub = await d.getPublicKey(id);
        assert.equal(pub.spec, spec);
        const ko = createPublicKey({ key: pub.spki, format: 'der', type: 'spki' });
        assert.equal(ko.asymmetricKeyType, spec.startsWith('rsa') ? 'rsa' : 'ec');
        if (spec.startsWith('rsa')) assert.equal(ko.asymmetricKeyDetails?.modulusLength, spec === 'rsa-2048' ? 2048 : 3072);
        else assert.equal(ko.asymmetricKeyDetails?.namedCurve, spec === 'ec-p256' ? 'prime256v1' : 'secp384r1');
        for (const data of [randomBytes(1000), Buffer.alloc(0), randomBytes(70_000)]) {
          const sig = await d.sign(id, data, algo);
          assert.ok(verifyLocally(pub.spki, algo, data, sig), `${algo} signature over ${data.length} bytes verifies`);
          const other = Buffer.concat([data, Buffer.from([1])]);
          assert.ok(!verifyLocally(pub.spki, algo, other, sig), `${algo} signature does not verify other data`);
        }
        if (spec === 'ec-p256' || spec === 'ec-p384') {
          const wrong = spec === 'ec-p256' ? 'ecdsa-sha384' : 'ecdsa-sha256';
          assert.equal((await rejects(d.sign(id, randomBytes(10), wrong))).code, 'KEY_USAGE');
        }
        // the private half is a sensitive, non-extractable, private token object
        const objs = rawAttrs(name);
        assert.equal(objs.length, 2);
        const priv = objs.find((o) => o['CKA_SENSITIVE'] !== undefined)!;
        assert.deepEqual(
          { t: priv['CKA_TOKEN'], s: priv['CKA_SENSITIVE'], x: priv['CKA_EXTRACTABLE'], p: priv['CKA_PRIVATE'] },
          { t: true, s: true, x: false, p: true },
        );
        assert.equal(objs.find((o) => o['CKA_SENSITIVE'] === undefined)?.['CKA_TOKEN'], true);
      });
    }

    it('Ed25519 and secp256k1 keys are UNSUPPORTED (not made, not imported)', async () => {
      for (const spec of ['ed25519', 'secp256k1'] as const) {
        const e = await rejects(d.generateSigningKeyPair(spec, uniq('no')));
        assert.equal(e.code, 'UNSUPPORTED');
        assert.match(e.message, new RegExp(spec));
      }
      const ed = generateKeyPairSync('ed25519').privateKey.export({ format: 'der', type: 'pkcs8' });
      const k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).privateKey.export({ format: 'der', type: 'pkcs8' });
      assert.equal((await rejects(d.importKey!({ kind: 'signing', spec: 'ed25519', secret: ed }, uniq('no')))).code, 'UNSUPPORTED');
      assert.equal((await rejects(d.importKey!({ kind: 'signing', spec: 'secp256k1', secret: k1 }, uniq('no')))).code, 'UNSUPPORTED');
    });

    it('concurrent signatures over a pool of 4 sessions all verify', async () => {
      const id = await d.generateSigningKeyPair('ec-p256', uniq('conc'));
      made.push(id);
      const { spki } = await d.getPublicKey(id);
      const msgs = Array.from({ length: 24 }, () => randomBytes(64));
      const sigs = await Promise.all(msgs.map((m) => d.sign(id, m, 'ecdsa-sha256')));
      sigs.forEach((s, i) => assert.ok(verifyLocally(spki, 'ecdsa-sha256', msgs[i]!, s)));
    });

    it('a key used for the wrong algorithm is KEY_USAGE; an existing name is EXISTS', async () => {
      const id = await d.generateSigningKeyPair('ec-p256', uniq('usage'));
      made.push(id);
      assert.equal((await rejects(d.sign(id, Buffer.from('x'), 'rsa-pss-sha256'))).code, 'KEY_USAGE');
      assert.equal((await rejects(d.sign(id, Buffer.from('x'), 'ed25519'))).code, 'KEY_USAGE');
      assert.equal((await rejects(d.encryptSymmetric(id, Buffer.from('x')))).code, 'KEY_USAGE');
      assert.equal((await rejects(d.decryptAsymmetric(id, randomBytes(256), 'rsa-oaep-sha256'))).code, 'KEY_USAGE');
      assert.equal((await rejects(d.generateSigningKeyPair('ec-p256', id))).code, 'EXISTS');
    });
  });

  describe('AES-256-GCM', () => {
    it('generated key: round trip, fresh IV each time, tampering and the wrong key are INVALID_CIPHERTEXT', async () => {
      const id = await d.generateSymmetricKey(uniq('aes'));
      made.push(id);
      const other = await d.generateSymmetricKey(uniq('aes-other'));
      made.push(other);
      for (const n of [1, 100, 65_537]) {
        const pt = randomBytes(n);
        const c1 = await d.encryptSymmetric(id, pt);
        const c2 = await d.encryptSymmetric(id, pt);
        assert.equal(c1.length, 12 + pt.length + 16, 'iv ‖ ciphertext ‖ tag');
        assert.notDeepEqual(c1.subarray(0, 12), c2.subarray(0, 12), 'a fresh IV');
        assert.deepEqual(await d.decryptSymmetric(id, c1), pt);
        assert.deepEqual(await d.decryptSymmetric(id, c2), pt);
      }
      const pt = randomBytes(100);
      const c1 = await d.encryptSymmetric(id, pt);
      for (const at of [0, 20, c1.length - 1]) {
        const bad = Buffer.from(c1);
        bad[at]! ^= 1;
        assert.equal((await rejects(d.decryptSymmetric(id, bad))).code, 'INVALID_CIPHERTEXT', `byte ${at} flipped`);
      }
      assert.equal((await rejects(d.decryptSymmetric(other, c1))).code, 'INVALID_CIPHERTEXT');
      assert.equal((await rejects(d.decryptSymmetric(id, Buffer.alloc(10)))).code, 'INVALID_CIPHERTEXT');
      // an empty plaintext is refused up front (pkcs11js passes the token no data pointer for 0 bytes,
      // which kryoptic answers with CKR_ARGUMENTS_BAD)
      assert.equal((await rejects(d.encryptSymmetric(id, Buffer.alloc(0)))).code, 'INVALID_INPUT');
      // still usable after the failures (broken sessions are replaced)
      assert.deepEqual(await d.decryptSymmetric(id, c1), pt);
      assert.equal((await rejects(d.sign(id, pt, 'ecdsa-sha256'))).code, 'KEY_USAGE');
      assert.equal((await rejects(d.getPublicKey(id))).code, 'KEY_USAGE');
      assert.deepEqual(
        rawAttrs(id).map((o) => [o['CKA_TOKEN'], o['CKA_SENSITIVE'], o['CKA_EXTRACTABLE']]),
        [[true, true, false]],
      );
    });
  });

  describe('RSA-OAEP-SHA256 (what SoftHSM2 2.6 cannot do)', () => {
    for (const [spec, bytes] of OAEP) {
      it(`${spec}: the token decrypts what node:crypto encrypted with the SPKI the driver reads`, async () => {
        const id = await d.generateEncryptionKeyPair(spec, uniq(`oaep-${spec}`));
        made.push(id);
        await d.keyExistsAndIsActive(id);
        const { spki, spec: got } = await d.getPublicKey(id);
        assert.equal(got, spec);
        assert.equal(createPublicKey({ key: spki, format: 'der', type: 'spki' }).asymmetricKeyDetails?.modulusLength, bytes * 8);
        // 0 bytes, 1 byte, a 32-byte key, and the OAEP-SHA-256 maximum (k - 2·32 - 2)
        for (const n of [0, 1, 32, bytes - 66]) {
          const pt = randomBytes(n);
          assert.deepEqual(await d.decryptAsymmetric(id, oaepEncrypt(spki, pt), 'rsa-oaep-sha256'), pt, `${n} bytes`);
        }
        // an encryption key does not sign (CKA_SIGN false): the token refuses
        assert.equal((await rejects(d.sign(id, Buffer.from('x'), 'rsa-pss-sha256'))).code, 'KEY_USAGE');
        const priv = rawAttrs(id).find((o) => o['CKA_SENSITIVE'] !== undefined)!;
        assert.deepEqual(
          [priv['CKA_TOKEN'], priv['CKA_SENSITIVE'], priv['CKA_EXTRACTABLE'], priv['CKA_PRIVATE']],
          [true, true, false, true],
        );
      });
    }

    it('a tampered or foreign ciphertext fails without crashing (kryoptic says CKR_DEVICE_ERROR: UNAVAILABLE)', async () => {
      const id = await d.generateEncryptionKeyPair('rsa-2048', uniq('oaep-bad'));
      const other = await d.generateEncryptionKeyPair('rsa-2048', uniq('oaep-other'));
      made.push(id, other);
      const { spki } = await d.getPublicKey(id);
      const ct = oaepEncrypt(spki, randomBytes(32));
      const bad = Buffer.from(ct);
      bad[bad.length - 1]! ^= 1;
      // kryoptic maps every OpenSSL failure but a few to CKR_DEVICE_ERROR (kryoptic-lib src/error.rs,
      // From<ossl::Error>), OAEP padding failures included; see the conformance deviation below
      // one call at a time: a second promise made up front could reject before it is awaited (unhandled)
      for (const [what, call] of [
        ['tampered', () => d.decryptAsymmetric(id, bad, 'rsa-oaep-sha256')],
        ['other key', () => d.decryptAsymmetric(other, ct, 'rsa-oaep-sha256')],
      ] as const) {
        const e = await rejects(call());
        assert.equal(e.code, 'UNAVAILABLE', what);
        assert.match(e.message, /CKR_DEVICE_ERROR/, what);
      }
      // a ciphertext that is not as long as the modulus is refused by the driver before the token sees it
      // (kryoptic said CKR_BUFFER_TOO_SMALL for a short one: INTERNAL before the driver checked)
      for (const wrong of [ct.subarray(1), Buffer.concat([ct, Buffer.alloc(1)]), Buffer.alloc(0), randomBytes(1 << 20)]) {
        const e = await rejects(d.decryptAsymmetric(id, wrong, 'rsa-oaep-sha256'));
        assert.equal(e.code, 'INVALID_CIPHERTEXT', `${wrong.length} bytes: ${e.message}`);
        assert.match(e.message, /is 256 bytes, not/);
      }
      // and the key still works afterwards
      const pt = randomBytes(20);
      assert.deepEqual(await d.decryptAsymmetric(id, oaepEncrypt(spki, pt), 'rsa-oaep-sha256'), pt);
    });
  });

  describe('import (BYOK): C_UnwrapKey with CKM_AES_KEY_WRAP_KWP', () => {
    it("the driver found kryoptic's AES-KWP under its PKCS#11 3.0 number (0x210b; kryoptic has no 0x210a)", () => {
      const p = createRequire(import.meta.url)('pkcs11js');
      const m = new p.PKCS11();
      m.load(env.PKCS11_MODULE);
      try {
        m.C_Initialize();
      } catch (e) {
        if (!/ALREADY_INITIALIZED/.test(String(e))) throw e;
      }
      const slot = m.C_GetSlotList(true).find((s: Buffer) => m.C_GetTokenInfo(s).label.trim() === env.PKCS11_TOKEN);
      const mechs: number[] = m.C_GetMechanismList(slot);
      assert.ok(mechs.includes(MECHANISMS.CKM_AES_KEY_WRAP_KWP));
      assert.ok(!mechs.includes(MECHANISMS.CKM_AES_KEY_WRAP_PAD));
    });

    it('AES key: unwrapped into the token; its GCM output opens with the known key in node:crypto, and back', async () => {
      const key = randomBytes(32);
      const {
        value: id,
        unwrapMechs,
        created,
      } = await spyImport(() => d.importKey!({ kind: 'symmetric', spec: 'aes256', secret: key }, uniq('imp-aes')));
      made.push(id);
      assert.deepEqual(unwrapMechs, [MECHANISMS.CKM_AES_KEY_WRAP_KWP], 'one C_UnwrapKey with AES-KWP');
      assert.deepEqual(created, [CKO_SECRET_KEY], 'C_CreateObject only for the transient wrapping key');
      const pt = randomBytes(77);
      const ct = await d.encryptSymmetric(id, pt);
      const dc = createDecipheriv('aes-256-gcm', key, ct.subarray(0, 12));
      dc.setAAD(AAD);
      dc.setAuthTag(ct.subarray(-16));
      assert.deepEqual(Buffer.concat([dc.update(ct.subarray(12, -16)), dc.final()]), pt);
      assert.deepEqual(await d.decryptSymmetric(id, ct), pt);
      const iv = randomBytes(12);
      const c = createCipheriv('aes-256-gcm', key, iv);
      c.setAAD(AAD);
      const local = Buffer.concat([iv, c.update(pt), c.final(), c.getAuthTag()]);
      assert.deepEqual(await d.decryptSymmetric(id, local), pt);
      assert.deepEqual(
        rawAttrs(id).map((o) => [o['CKA_TOKEN'], o['CKA_SENSITIVE'], o['CKA_EXTRACTABLE']]),
        [[true, true, false]],
      );
    });

    const kinds: Array<[SigningKeySpec, SigningAlgoSpec, () => { privateKey: KeyObject; publicKey: KeyObject }]> = [
      ['ec-p256', 'ecdsa-sha256', () => generateKeyPairSync('ec', { namedCurve: 'P-256' })],
      ['ec-p384', 'ecdsa-sha384', () => generateKeyPairSync('ec', { namedCurve: 'P-384' })],
      ['rsa-2048', 'rsa-pss-sha256', () => generateKeyPairSync('rsa', { modulusLength: 2048 })],
      ['rsa-3072', 'rsa-pss-sha256', () => generateKeyPairSync('rsa', { modulusLength: 3072 })],
    ];
    for (const [spec, algo, gen] of kinds) {
      it(`${spec} signing key: PKCS#8 unwrapped, signed in the token, verified with the locally derived public key`, async () => {
        const kp = gen();
        const secret = kp.privateKey.export({ format: 'der', type: 'pkcs8' });
        const {
          value: id,
          unwrapMechs,
          created,
        } = await spyImport(() => d.importKey!({ kind: 'signing', spec, secret }, uniq(`imp-${spec}`)));
        made.push(id);
        assert.deepEqual(unwrapMechs, [MECHANISMS.CKM_AES_KEY_WRAP_KWP], 'the private key went in through C_UnwrapKey');
        assert.deepEqual(created, [CKO_SECRET_KEY, CKO_PUBLIC_KEY], 'C_CreateObject: the transient KEK, then the public half');
        const localSpki = kp.publicKey.export({ format: 'der', type: 'spki' });
        assert.deepEqual((await d.getPublicKey(id)).spki, localSpki);
        const data = randomBytes(300);
        assert.ok(verifyLocally(localSpki, algo, data, await d.sign(id, data, algo)));
        const objs = rawAttrs(id);
        assert.equal(objs.length, 2, 'private and public halves');
        const priv = objs.find((o) => o['CKA_SENSITIVE'] !== undefined)!;
        assert.deepEqual(
          [priv['CKA_TOKEN'], priv['CKA_SENSITIVE'], priv['CKA_EXTRACTABLE'], priv['CKA_PRIVATE']],
          [true, true, false, true],
        );
      });
    }

    it('rsa-2048 encryption key: imported, then decrypts an OAEP-SHA-256 ciphertext made with the local public key', async () => {
      const kp = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const secret = kp.privateKey.export({ format: 'der', type: 'pkcs8' });
      const { value: id, unwrapMechs } = await spyImport(() =>
        d.importKey!({ kind: 'encryption', spec: 'rsa-2048', secret }, uniq('imp-oaep')),
      );
      made.push(id);
      assert.deepEqual(unwrapMechs, [MECHANISMS.CKM_AES_KEY_WRAP_KWP]);
      assert.deepEqual((await d.getPublicKey(id)).spki, kp.publicKey.export({ format: 'der', type: 'spki' }));
      const pt = randomBytes(32);
      assert.deepEqual(await d.decryptAsymmetric(id, oaepEncrypt(kp.publicKey, pt), 'rsa-oaep-sha256'), pt);
      assert.equal((await rejects(d.sign(id, pt, 'rsa-pss-sha256'))).code, 'KEY_USAGE');
    });

    it('material that does not match its spec is INVALID_INPUT; nothing is left behind', async () => {
      const kp = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const secret = kp.privateKey.export({ format: 'der', type: 'pkcs8' });
      const names = [uniq('bad'), uniq('bad'), uniq('bad')];
      assert.equal((await rejects(d.importKey!({ kind: 'signing', spec: 'ec-p384', secret }, names[0]))).code, 'INVALID_INPUT');
      assert.equal(
        (await rejects(d.importKey!({ kind: 'signing', spec: 'ec-p256', secret: randomBytes(40) }, names[1]))).code,
        'INVALID_INPUT',
      );
      assert.equal(
        (await rejects(d.importKey!({ kind: 'symmetric', spec: 'aes256', secret: randomBytes(16) }, names[2]))).code,
        'INVALID_INPUT',
      );
      for (const n of names) assert.equal(rawAttrs(n).length, 0);
    });
  });

  describe('references, listing, deletion', () => {
    it('object=LABEL, a pkcs11: URI and id=HEX name the same key; listKeys finds keys with kind and spec', async () => {
      const ec = await d.generateSigningKeyPair('ec-p384', uniq('list-ec'));
      const enc = await d.generateEncryptionKeyPair('rsa-2048', uniq('list-enc'));
      const aes = await d.generateSymmetricKey(uniq('list-aes'));
      made.push(ec, enc, aes);
      assert.equal(await d.resolveKeyId!(`object=${ec}`), ec);
      assert.equal(await d.resolveKeyId!(`pkcs11:token=${env.PKCS11_TOKEN};object=${ec}`), ec);
      const found = new Map<string, { kind?: string; spec?: string }>();
      for await (const k of d.listKeys!()) found.set(k.keyId, k);
      assert.deepEqual([found.get(ec)?.kind, found.get(ec)?.spec], ['signing', 'ec-p384']);
      assert.deepEqual([found.get(enc)?.kind, found.get(enc)?.spec], ['encryption', 'rsa-2048']);
      assert.deepEqual([found.get(aes)?.kind, found.get(aes)?.spec], ['symmetric', 'aes256']);
      await d.keyExistsAndIsActive(`object=${aes}`);
    });

    it('delete removes both halves; then every use is NOT_FOUND', async () => {
      const id = await d.generateSigningKeyPair('ec-p256', uniq('del'));
      assert.equal(rawAttrs(id).length, 2);
      await d.deleteKey(id);
      assert.equal(rawAttrs(id).length, 0, 'no object with the label is left');
      for (const p of [
        d.keyExistsAndIsActive(id),
        d.sign(id, Buffer.from('x'), 'ecdsa-sha256'),
        d.getPublicKey(id),
        d.deleteKey(id),
        d.encryptSymmetric(id, Buffer.from('x')),
      ]) {
        assert.equal((await rejects(p)).code, 'NOT_FOUND');
      }
      let listed = false;
      for await (const k of d.listKeys!()) if (k.keyId === id) listed = true;
      assert.ok(!listed);
    });
  });

  describe('opening: PIN sources, errors', () => {
    it('a wrong PIN is AUTH (not retryable) and the message holds no PIN', async () => {
      const e = await rejects(factory({ ...params, 'pin-value': 'not-the-pin-9876' }, 'pkcs11:test'));
      assert.equal(e.code, 'AUTH');
      assert.equal(e.retryable, false);
      assert.ok(!e.message.includes('not-the-pin-9876') && !e.message.includes(env.PKCS11_PIN!));
    });

    it('pin-source=file:… and KEYPORT_PKCS11_PIN open the token', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'kp-pin-'));
      writeFileSync(join(dir, 'pin'), `${env.PKCS11_PIN}\n`, { mode: 0o600 });
      const { 'pin-value': _, ...noPin } = params;
      const d1 = await factory({ ...noPin, 'pin-source': `file:${join(dir, 'pin')}` }, 'pkcs11:test');
      assert.deepEqual(await d1.health(), { state: 'ok' });
      await d1.close?.();
      process.env['KEYPORT_PKCS11_PIN'] = env.PKCS11_PIN;
      try {
        const d2 = await factory(noPin, 'pkcs11:test');
        assert.deepEqual(await d2.health(), { state: 'ok' });
        await d2.close?.();
      } finally {
        delete process.env['KEYPORT_PKCS11_PIN'];
      }
      assert.equal((await rejects(factory(noPin, 'pkcs11:test'))).code, 'AUTH', 'no PIN at all');
    });

    it('an unknown token is UNAVAILABLE; slot-id= selects the configured slot', async () => {
      assert.equal((await rejects(factory({ ...params, token: 'no-such-token' }, 'pkcs11:test'))).code, 'UNAVAILABLE');
      const { token: _, ...noToken } = params;
      const d3 = await factory({ ...noToken, 'slot-id': '7' }, 'pkcs11:test'); // scripts/testbed/kryoptic.sh: slot = 7
      assert.deepEqual(await d3.health(), { state: 'ok' });
      await d3.close?.();
    });
  });
});

describe('pkcs11 on kryoptic: a wrong PIN on a fresh login', { skip: skipUnless(SERVICE) }, () => {
  // the first describe's after() closed its driver: the token is not logged in and C_Login really checks
  // (kryoptic locks the user PIN after 10 failures in a row, storage/aci.rs; a good login resets the count)
  it('C_Login with a wrong PIN is AUTH; the right PIN then works', async () => {
    const env = useEnv();
    const params = { 'module-path': env.PKCS11_MODULE!, token: env.PKCS11_TOKEN! };
    const e = await rejects(factory({ ...params, 'pin-value': 'wrong-pin-1111' }, 'pkcs11:test'));
    assert.equal(e.code, 'AUTH');
    assert.equal(e.retryable, false);
    assert.match(e.message, /CKR_PIN_INCORRECT/);
    assert.ok(!e.message.includes('wrong-pin-1111'));
    const d = await factory({ ...params, 'pin-value': env.PKCS11_PIN! }, 'pkcs11:test');
    assert.deepEqual(await d.health(), { state: 'ok' });
    await d.close?.();
  });
});

describe('conformance kit: pkcs11 on kryoptic', { skip: skipUnless(SERVICE) }, () => {
  /**
   * Checks kryoptic cannot answer as the kit wants, each with the reason in kryoptic's source. Asserted to
   * be exactly these (a fixed kryoptic or a new driver bug both show up).
   */
  const KRYOPTIC_DEVIATIONS: Deviation[] = [
    ...(['rsa-2048', 'rsa-3072'] as const).map((spec) => ({
      check: 'encryption.decrypt',
      spec,
      outcome: 'fail' as const,
      detail: /^decryptAsymmetric of a tampered ciphertext failed with UNAVAILABLE instead of INVALID_CIPHERTEXT: .*\(CKR_DEVICE_ERROR\)$/,
      why: 'kryoptic answers a bad OAEP ciphertext with CKR_DEVICE_ERROR, not CKR_ENCRYPTED_DATA_INVALID: RsaPKCSOperation::decrypt (kryoptic-lib src/ossl/rsa.rs) propagates the OpenSSL failure with ?, and From<ossl::Error> (src/error.rs) turns every OpenSSL error but KeyError/WrapperError/VerifyFailed into CKR_DEVICE_ERROR, which the driver must treat as a device fault (UNAVAILABLE). The round trips of 1, 32 and 190 bytes before it pass',
    })),
  ];
  /** not kryoptic's doing: the kit cannot derive an unreachable pkcs11: URI (no network endpoint) */
  const NOT_APPLICABLE = [{ check: 'unreachable', outcome: 'skip' as const, detail: /names no network endpoint/ }];

  test('no failure but the listed kryoptic deviations', async () => {
    const e = useEnv();
    const uri = `pkcs11:module-path=${e['PKCS11_MODULE']};token=${e['PKCS11_TOKEN']}?pin-value=${e['PKCS11_PIN']}`;
    const drv = await openDriver(uri);
    let results: CheckResult[];
    try {
      results = await runConformance(drv, { uri, callTimeoutMs: 30_000 });
    } finally {
      await drv.close?.();
    }
    const passed = assertOnlyDeviations(results, [...KRYOPTIC_DEVIATIONS, ...NOT_APPLICABLE]);
    for (const c of [
      'supported-specs',
      'signing.sign-verify[ec-p256]',
      'signing.sign-verify[ec-p384]',
      'signing.sign-verify[rsa-2048]',
      'signing.sign-verify[rsa-3072]',
      'encryption.public-key[rsa-2048]',
      'encryption.public-key[rsa-3072]',
      'wrong-usage.sign-with-encryption-key[rsa-2048]',
      'symmetric.round-trip[aes256]',
      'symmetric.tampered-ciphertext[aes256]',
      'import.aes256[aes256]',
      'import.ec-p256[ec-p256]',
      'list-keys',
      'bad-credentials',
      'encryption.delete[rsa-3072]',
    ]) {
      assert.ok(passed.includes(c), `${c} passes`);
    }
    assert.ok(passed.length >= 45, `${passed.length} checks passed`);
  });
});
