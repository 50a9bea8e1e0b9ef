/**
 * The pkcs11: driver against a real SoftHSM2 token (scripts/testbed/softhsm.sh: Debian softhsm2, its own
 * SOFTHSM2_CONF and token 'keyport'), with node:crypto as the independent checker: signatures made in
 * the token are verified with the SPKI the driver reads (and, for imported keys, with the public key
 * derived locally from the imported private key); AES-GCM output of imported keys is decrypted locally
 * with the known key bytes. Key attributes are read back with a raw pkcs11js session.
 */
import { describe, it, before, after } from 'node:test';
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
import type { Driver, SigningAlgoSpec, SigningKeySpec } from '../../src/kms/driver.js';
import { factory } from '../../src/kms/pkcs11/index.js';
import { rejectsKeyport as rejects } from '../support/rejects.js';

const AAD = Buffer.from('keyport-pkcs11-wrap-v1');
const uniq = (p: string) => `${p}-${randomBytes(5).toString('hex')}`;

const ALGOS: Record<SigningKeySpec, SigningAlgoSpec[]> = {
  'ec-p256': ['ecdsa-sha256'],
  'ec-p384': ['ecdsa-sha384'],
  secp256k1: ['ecdsa-sha256'],
  ed25519: ['ed25519'],
  'rsa-2048': ['rsa-pss-sha256'],
  'rsa-3072': ['rsa-pss-sha256'],
};

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

describe('pkcs11: driver against SoftHSM2', { skip: skipUnless('softhsm') }, () => {
  let env: Record<string, string>;
  let params: Record<string, string>;
  let d: Driver;
  const made: string[] = [];

  before(async () => {
    env = serviceEnv('softhsm');
    process.env['SOFTHSM2_CONF'] = env.SOFTHSM2_CONF; // SoftHSM reads it at C_Initialize
    params = { 'module-path': env.PKCS11_MODULE!, token: env.PKCS11_TOKEN!, 'pin-value': env.PKCS11_PIN! };
    d = await factory(params, 'pkcs11:test');
  });
  after(async () => {
    for (const id of made) await d.deleteKey(id).catch(() => undefined);
    await d?.close?.();
  });

  /** read attributes of a key object with a raw pkcs11js session (the independent view of the token) */
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

  it('health is ok', async () => {
    assert.deepEqual(await d.health(), { state: 'ok' });
  });

  it('claims what SoftHSM2 does, and not rsa-oaep-sha256 unless the token decrypts it', () => {
    const specs = d.supportedSigningKeySpecs();
    for (const s of ['ec-p256', 'ec-p384', 'ed25519', 'rsa-2048', 'rsa-3072'] as const) assert.ok(specs.includes(s), `${s} claimed`);
    assert.deepEqual([...d.supportedSigningAlgoSpecs()].sort(), ['ecdsa-sha256', 'ecdsa-sha384', 'ed25519', 'rsa-pss-sha256']);
    // the claim follows the probe: both lists are empty or both name rsa
    const enc = d.supportedEncryptionAlgoSpecs();
    assert.equal(enc.length === 0, d.supportedEncryptionKeySpecs().length === 0);
  });

  describe('signing keys: generated in the token, signatures verified by node:crypto', () => {
    for (const spec of Object.keys(ALGOS) as SigningKeySpec[]) {
      it(`${spec}: generate, exists, getPublicKey, sign, verify`, async (t) => {
        if (!d.supportedSigningKeySpecs().includes(spec)) {
          t.skip(`${spec} not supported by this SoftHSM build`);
          return;
        }
        const name = uniq(`sig-${spec}`);
        const id = await d.generateSigningKeyPair(spec, name);
        made.push(id);
        assert.equal(id, name, 'the key id is the label');
        await d.keyExistsAndIsActive(id);
        const pub = await d.getPublicKey(id);
        assert.equal(pub.spec, spec);
        const ko = createPublicKey({ key: pub.spki, format: 'der', type: 'spki' });
        assert.equal(ko.asymmetricKeyType, spec === 'ed25519' ? 'ed25519' : spec.startsWith('rsa') ? 'rsa' : 'ec');
        const data = randomBytes(1000);
        for (const algo of ALGOS[spec]) {
          const sig = await d.sign(id, data, algo);
          assert.ok(verifyLocally(pub.spki, algo, data, sig), `${algo} signature verifies`);
          const other = Buffer.from(data);
          other[0]! ^= 1;
          assert.ok(!verifyLocally(pub.spki, algo, other, sig), `${algo} signature does not verify other data`);
        }
        // an EC key signs only with its curve's hash (Canton's signing specs)
        if (spec === 'ec-p256' || spec === 'ec-p384') {
          const wrong = spec === 'ec-p256' ? 'ecdsa-sha384' : 'ecdsa-sha256';
          assert.equal((await rejects(d.sign(id, data, wrong))).code, 'KEY_USAGE');
        }
        // the private half is a sensitive, non-extractable token object; the public half a token object
        const objs = rawAttrs(name);
        assert.equal(objs.length, 2);
        const priv = objs.find((o) => o['CKA_SENSITIVE'] !== undefined)!;
        assert.deepEqual(
          { t: priv['CKA_TOKEN'], s: priv['CKA_SENSITIVE'], x: priv['CKA_EXTRACTABLE'], p: priv['CKA_PRIVATE'] },
          { t: true, s: true, x: false, p: true },
        );
      });
    }

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
      assert.equal((await rejects(d.sign(id, Buffer.from('x'), 'ed25519'))).code, 'KEY_USAGE');
      assert.equal((await rejects(d.sign(id, Buffer.from('x'), 'rsa-pss-sha256'))).code, 'KEY_USAGE');
      assert.equal((await rejects(d.encryptSymmetric(id, Buffer.from('x')))).code, 'KEY_USAGE');
      assert.equal((await rejects(d.generateSigningKeyPair('ec-p256', id))).code, 'EXISTS');
    });
  });

  describe('AES-256-GCM', () => {
    it('generated key: round trip, fresh IV each time, tampering and the wrong key are INVALID_CIPHERTEXT', async () => {
      const id = await d.generateSymmetricKey(uniq('aes'));
      made.push(id);
      const other = await d.generateSymmetricKey(uniq('aes-other'));
      made.push(other);
      const pt = randomBytes(100);
      const c1 = await d.encryptSymmetric(id, pt);
      const c2 = await d.encryptSymmetric(id, pt);
      assert.equal(c1.length, 12 + pt.length + 16, 'iv ‖ ciphertext ‖ tag');
      assert.notDeepEqual(c1, c2);
      assert.deepEqual(await d.decryptSymmetric(id, c1), pt);
      assert.deepEqual(await d.decryptSymmetric(id, c2), pt);
      const bad = Buffer.from(c1);
      bad[20]! ^= 1;
      assert.equal((await rejects(d.decryptSymmetric(id, bad))).code, 'INVALID_CIPHERTEXT');
      assert.equal((await rejects(d.decryptSymmetric(other, c1))).code, 'INVALID_CIPHERTEXT');
      assert.equal((await rejects(d.decryptSymmetric(id, Buffer.alloc(10)))).code, 'INVALID_CIPHERTEXT');
      // still usable after the failures (broken sessions are replaced)
      assert.deepEqual(await d.decryptSymmetric(id, c2), pt);
      assert.equal((await rejects(d.sign(id, pt, 'ecdsa-sha256'))).code, 'KEY_USAGE');
      assert.equal((await rejects(d.getPublicKey(id))).code, 'KEY_USAGE');
      const objs = rawAttrs(id);
      assert.deepEqual(
        objs.map((o) => [o['CKA_TOKEN'], o['CKA_SENSITIVE'], o['CKA_EXTRACTABLE']]),
        [[true, true, false]],
      );
    });
  });

  describe('RSA-OAEP', () => {
    it('decryptAsymmetric works if claimed, else fails UNSUPPORTED naming the OAEP limitation', async () => {
      if (d.supportedEncryptionAlgoSpecs().includes('rsa-oaep-sha256')) {
        const id = await d.generateEncryptionKeyPair('rsa-2048', uniq('oaep'));
        made.push(id);
        const { spki } = await d.getPublicKey(id);
        const pt = randomBytes(32);
        const ct = publicEncrypt(
          {
            key: createPublicKey({ key: spki, format: 'der', type: 'spki' }),
            padding: constants.RSA_PKCS1_OAEP_PADDING,
            oaepHash: 'sha256',
          },
          pt,
        );
        assert.deepEqual(await d.decryptAsymmetric(id, ct, 'rsa-oaep-sha256'), pt);
        return;
      }
      const e = await rejects(d.decryptAsymmetric('anything', Buffer.alloc(256), 'rsa-oaep-sha256'));
      assert.equal(e.code, 'UNSUPPORTED');
      assert.match(e.message, /OAEP/);
      assert.match(e.message, /SHA-256/);
      assert.equal((await rejects(d.generateEncryptionKeyPair('rsa-2048', uniq('oaep')))).code, 'UNSUPPORTED');
    });
  });

  describe('import (BYOK)', () => {
    it('AES key: encrypted in the token, decrypted by node:crypto with the known key, and back', async () => {
      const key = randomBytes(32);
      const id = await d.importKey!({ kind: 'symmetric', spec: 'aes256', secret: key }, uniq('imp-aes'));
      made.push(id);
      const pt = randomBytes(77);
      const ct = await d.encryptSymmetric(id, pt);
      const dc = createDecipheriv('aes-256-gcm', key, ct.subarray(0, 12));
      dc.setAAD(AAD);
      dc.setAuthTag(ct.subarray(-16));
      assert.deepEqual(Buffer.concat([dc.update(ct.subarray(12, -16)), dc.final()]), pt);
      assert.deepEqual(await d.decryptSymmetric(id, ct), pt);
      // and a ciphertext made locally decrypts in the token
      const iv = randomBytes(12);
      const c = createCipheriv('aes-256-gcm', key, iv);
      c.setAAD(AAD);
      const local = Buffer.concat([iv, c.update(pt), c.final(), c.getAuthTag()]);
      assert.deepEqual(await d.decryptSymmetric(id, local), pt);
      assert.deepEqual(
        rawAttrs(id).map((o) => [o['CKA_SENSITIVE'], o['CKA_EXTRACTABLE']]),
        [[true, false]],
      );
    });

    const kinds: Array<[SigningKeySpec, () => { privateKey: KeyObject; publicKey: KeyObject }]> = [
      ['ec-p256', () => generateKeyPairSync('ec', { namedCurve: 'P-256' })],
      ['ec-p384', () => generateKeyPairSync('ec', { namedCurve: 'P-384' })],
      ['secp256k1', () => generateKeyPairSync('ec', { namedCurve: 'secp256k1' })],
      ['ed25519', () => generateKeyPairSync('ed25519')],
      ['rsa-2048', () => generateKeyPairSync('rsa', { modulusLength: 2048 })],
    ];
    for (const [spec, gen] of kinds) {
      it(`${spec} private key: signed in the token, verified against the locally derived public key`, async (t) => {
        if (!d.supportedSigningKeySpecs().includes(spec)) {
          t.skip(`${spec} not supported`);
          return;
        }
        const kp = gen();
        const secret = kp.privateKey.export({ format: 'der', type: 'pkcs8' });
        const id = await d.importKey!({ kind: 'signing', spec, secret }, uniq(`imp-${spec}`));
        made.push(id);
        const localSpki = kp.publicKey.export({ format: 'der', type: 'spki' });
        assert.deepEqual((await d.getPublicKey(id)).spki, localSpki);
        const data = randomBytes(300);
        const algo = ALGOS[spec][0]!;
        const sig = await d.sign(id, data, algo);
        assert.ok(verifyLocally(localSpki, algo, data, sig));
        const objs = rawAttrs(id);
        assert.equal(objs.length, 2, 'private and public halves');
        const priv = objs.find((o) => o['CKA_SENSITIVE'] !== undefined)!;
        assert.deepEqual([priv['CKA_TOKEN'], priv['CKA_SENSITIVE'], priv['CKA_EXTRACTABLE']], [true, true, false]);
      });
    }

    it('material that does not match its spec is INVALID_INPUT', async () => {
      const kp = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const secret = kp.privateKey.export({ format: 'der', type: 'pkcs8' });
      assert.equal((await rejects(d.importKey!({ kind: 'signing', spec: 'ec-p384', secret }, uniq('bad')))).code, 'INVALID_INPUT');
      assert.equal(
        (await rejects(d.importKey!({ kind: 'signing', spec: 'ec-p256', secret: randomBytes(40) }, uniq('bad')))).code,
        'INVALID_INPUT',
      );
      assert.equal(
        (await rejects(d.importKey!({ kind: 'symmetric', spec: 'aes256', secret: randomBytes(16) }, uniq('bad')))).code,
        'INVALID_INPUT',
      );
    });
  });

  describe('references, listing, deletion', () => {
    it('object=LABEL and id=HEX name the same key; listKeys finds keys with kind and spec', async () => {
      const ec = await d.generateSigningKeyPair('ec-p384', uniq('list-ec'));
      const aes = await d.generateSymmetricKey(uniq('list-aes'));
      made.push(ec, aes);
      assert.equal(await d.resolveKeyId!(`object=${ec}`), ec);
      assert.equal(await d.resolveKeyId!(`pkcs11:token=${env.PKCS11_TOKEN};object=${ec}`), ec);
      const found = new Map<string, { kind?: string; spec?: string }>();
      for await (const k of d.listKeys!()) found.set(k.keyId, k);
      assert.deepEqual([found.get(ec)?.kind, found.get(ec)?.spec], ['signing', 'ec-p384']);
      assert.deepEqual([found.get(aes)?.kind, found.get(aes)?.spec], ['symmetric', 'aes256']);
      await d.keyExistsAndIsActive(`object=${aes}`);
    });

    it('delete removes both halves; then every use is NOT_FOUND', async () => {
      const id = await d.generateSigningKeyPair('ed25519', uniq('del'));
      assert.equal(rawAttrs(id).length, 2);
      await d.deleteKey(id);
      assert.equal(rawAttrs(id).length, 0, 'no object with the label is left');
      for (const p of [
        d.keyExistsAndIsActive(id),
        d.sign(id, Buffer.from('x'), 'ed25519'),
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
      assert.match(
        e.message,
        /differs from the one this process is logged in with/,
        'the token is logged in already: the PIN guard answers',
      );
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

    it('a missing module is UNAVAILABLE (one line); an unknown token is UNAVAILABLE', async () => {
      const e = await rejects(factory({ ...params, 'module-path': '/nonexistent/libnothing.so' }, 'pkcs11:test'));
      assert.equal(e.code, 'UNAVAILABLE');
      assert.match(e.message, /libnothing\.so/);
      assert.equal((await rejects(factory({ ...params, token: 'no-such-token' }, 'pkcs11:test'))).code, 'UNAVAILABLE');
    });
  });
});

describe('pkcs11: a wrong PIN on a fresh login', { skip: skipUnless('softhsm') }, () => {
  // run in this file after the shared driver is closed? node:test runs describes in order, but the first
  // describe's after() closes its driver, so here the token is not logged in and C_Login really checks.
  it('C_Login with a wrong PIN is AUTH; the right PIN then works', async () => {
    const env = serviceEnv('softhsm');
    process.env['SOFTHSM2_CONF'] = env.SOFTHSM2_CONF;
    const params = { 'module-path': env.PKCS11_MODULE!, token: env.PKCS11_TOKEN! };
    const e = await rejects(factory({ ...params, 'pin-value': 'wrong-pin-1111' }, 'pkcs11:test'));
    assert.equal(e.code, 'AUTH');
    assert.match(e.message, /CKR_PIN_INCORRECT/);
    assert.ok(!e.message.includes('wrong-pin-1111'));
    const d = await factory({ ...params, 'pin-value': env.PKCS11_PIN! }, 'pkcs11:test');
    assert.deepEqual(await d.health(), { state: 'ok' });
    await d.close?.();
  });
});
