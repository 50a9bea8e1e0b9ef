/**
 * The kmip: driver against a real PyKMIP 0.11 server (scripts/testbed/pykmip.sh), with node:crypto as
 * the independent checker (it decrypts the server's AES-GCM output with the key fetched from the
 * server, verifies the server's RSA-PSS signatures with the SPKI, and encrypts/signs with imported
 * keys it knows).
 *
 * What PyKMIP 0.11 really implements, as these tests show: Create (symmetric only), CreateKeyPair (RSA
 * only), Register, Get (no format conversion), GetAttributes, Locate (by Name, Object Type, Object
 * Group, ...), Activate, Revoke, Destroy, Query; Encrypt/Decrypt with SYMMETRIC keys only (AES-GCM
 * needs KMIP 1.4 for its tag fields; CBC/ECB/CTR/... also exist); Sign with RSA only (PSS with the
 * maximum salt length, or PKCS#1 v1.5). No EC key generation, no ECDSA, no RSA decryption.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  createDecipheriv,
  createCipheriv,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign as nodeSign,
  verify as nodeVerify,
  constants,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { dirname, join } from 'node:path';
import { skipUnless, serviceEnv } from '../support/testbed.js';
import type { Driver } from '../../src/kms/driver.js';
import { factory, PSS_SALT_IS_KEYPORTS } from '../../src/kms/kmip/index.js';
import { KmipClient } from '../../src/kms/kmip/client.js';
import {
  CryptographicAlgorithm,
  ObjectType,
  Operation,
  PaddingMethod,
  HashingAlgorithm,
  Tag,
  UsageMask,
  BlockCipherMode,
} from '../../src/kms/kmip/tags.js';
import { byteString, decodeTtlv, encodeTtlv, enumeration, find, integer, need, structure, textString } from '../../src/kms/kmip/ttlv.js';
import { rejectsKeyport as code } from '../support/rejects.js';

const AAD = Buffer.from('keyport-kmip-wrap-v1');
const hex = (s: string) => Buffer.from(s.replace(/\s/g, ''), 'hex');
const uniq = (p: string) => `${p}-${randomBytes(5).toString('hex')}`;

const attr = (name: string, value: ReturnType<typeof integer>) =>
  structure(Tag.Attribute, [textString(Tag.AttributeName, name), { ...value, tag: Tag.AttributeValue }]);

describe('kmip: driver against PyKMIP', { skip: skipUnless('pykmip') }, () => {
  let env: Record<string, string>;
  let params: Record<string, string>;
  let d: Driver;
  let raw: KmipClient;

  before(async () => {
    env = serviceEnv('pykmip');
    params = { host: env.KMIP_HOST!, port: env.KMIP_PORT!, cert: env.KMIP_CERT!, key: env.KMIP_KEY!, ca: env.KMIP_CA! };
    d = await factory(params, 'kmip:test');
    raw = new KmipClient({
      host: env.KMIP_HOST!,
      port: Number(env.KMIP_PORT),
      cert: readFileSync(env.KMIP_CERT!),
      key: readFileSync(env.KMIP_KEY!),
      ca: readFileSync(env.KMIP_CA!),
    });
  });
  after(async () => {
    await d?.close?.();
    await raw?.close();
  });

  /** fetch a symmetric key's bytes with Get (PyKMIP lets the owner read them): the independent check */
  async function keyBytes(id: string): Promise<Buffer> {
    const p = await raw.call(Operation.Get, [textString(Tag.UniqueIdentifier, id)]);
    const block = need(need(p, Tag.SymmetricKey, 'Structure'), Tag.KeyBlock, 'Structure');
    return need(need(block, Tag.KeyValue, 'Structure'), Tag.KeyMaterial, 'ByteString').value;
  }

  it('health is ok (Query)', async () => {
    assert.deepEqual(await d.health(), { state: 'ok' });
  });

  it('claims exactly what PyKMIP does', () => {
    assert.deepEqual(d.supportedEncryptionKeySpecs(), []);
    assert.deepEqual(d.supportedEncryptionAlgoSpecs(), []);
    assert.deepEqual(d.supportedSigningAlgoSpecs(), PSS_SALT_IS_KEYPORTS ? ['rsa-pss-sha256'] : []);
  });

  it('AES-256-GCM round trip, checked by node:crypto with the key read from the server', async () => {
    const name = uniq('wrap');
    const id = await d.generateSymmetricKey(name);
    await d.keyExistsAndIsActive(id);
    assert.equal(await d.resolveKeyId!(name), id);
    const pt = randomBytes(100);
    const ct = await d.encryptSymmetric(id, pt);
    assert.equal(ct.length, 12 + pt.length + 16);
    assert.deepEqual(await d.decryptSymmetric(id, ct), pt);
    assert.deepEqual(await d.decryptSymmetric(id, await d.encryptSymmetric(id, Buffer.alloc(0))), Buffer.alloc(0));
    // independent: iv || ct || tag is real AES-256-GCM with the fixed AAD
    const key = await keyBytes(id);
    assert.equal(key.length, 32);
    const dec = createDecipheriv('aes-256-gcm', key, ct.subarray(0, 12));
    dec.setAAD(AAD);
    dec.setAuthTag(ct.subarray(ct.length - 16));
    assert.deepEqual(Buffer.concat([dec.update(ct.subarray(12, ct.length - 16)), dec.final()]), pt);
    // two encryptions never share an IV
    assert.notDeepEqual((await d.encryptSymmetric(id, pt)).subarray(0, 12), ct.subarray(0, 12));
    // tampering anywhere is INVALID_CIPHERTEXT
    for (const at of [0, 20, ct.length - 1]) {
      const bad = Buffer.from(ct);
      bad[at] ^= 1;
      assert.equal((await code(d.decryptSymmetric(id, bad))).code, 'INVALID_CIPHERTEXT');
    }
    assert.equal((await code(d.decryptSymmetric(id, ct.subarray(0, 20)))).code, 'INVALID_CIPHERTEXT');
    // a second key cannot decrypt
    const other = await d.generateSymmetricKey();
    assert.equal((await code(d.decryptSymmetric(other, ct))).code, 'INVALID_CIPHERTEXT');
    // names are unique through keyport
    assert.equal((await code(d.generateSymmetricKey(name))).code, 'EXISTS');
    await d.deleteKey(other);
  });

  it('concurrent calls share one queued connection', async () => {
    const id = await d.generateSymmetricKey();
    const pts = Array.from({ length: 25 }, (_, i) => Buffer.from(`message ${i}`));
    const cts = await Promise.all(pts.map((p) => d.encryptSymmetric(id, p)));
    const back = await Promise.all(cts.map((c) => d.decryptSymmetric(id, c)));
    assert.deepEqual(back, pts);
    await d.deleteKey(id);
  });

  for (const spec of ['rsa-2048', 'rsa-3072'] as const) {
    it(`${spec}: sign on the server, verify locally with the SPKI from getPublicKey`, async () => {
      const id = await d.generateSigningKeyPair(spec, uniq('sig'));
      await d.keyExistsAndIsActive(id);
      const pub = await d.getPublicKey(id);
      assert.equal(pub.spec, spec);
      const key = createPublicKey({ key: pub.spki, format: 'der', type: 'spki' });
      assert.equal(key.asymmetricKeyDetails?.modulusLength, spec === 'rsa-2048' ? 2048 : 3072);
      const data = randomBytes(333);
      const sig = await d.sign(id, data, 'rsa-pss-sha256');
      const maxSalt = key.asymmetricKeyDetails!.modulusLength! / 8 - 32 - 2;
      const v = (salt: number) => nodeVerify('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: salt }, sig);
      // PyKMIP signs RSASSA-PSS SHA-256 / MGF1-SHA-256 with the maximum salt length
      assert.equal(v(maxSalt), true);
      assert.equal(v(constants.RSA_PSS_SALTLEN_AUTO), true);
      // ... which is why rsa-pss-sha256 (32-byte salt, strictly checked) is not claimed
      assert.equal(v(32), PSS_SALT_IS_KEYPORTS);
      assert.equal(
        nodeVerify(
          'sha256',
          Buffer.concat([data, Buffer.from('x')]),
          { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: maxSalt },
          sig,
        ),
        false,
      );
      assert.equal((await code(d.sign(id, data, 'ecdsa-sha256'))).code, 'UNSUPPORTED');
      await d.deleteKey(id);
      assert.equal((await code(d.getPublicKey(id))).code, 'NOT_FOUND');
    });
  }

  it('EC keys and RSA decryption are not there: the driver says UNSUPPORTED, and the server really refuses', async () => {
    assert.equal((await code(d.generateSigningKeyPair('ec-p256'))).code, 'UNSUPPORTED');
    assert.equal((await code(d.generateEncryptionKeyPair('rsa-2048'))).code, 'UNSUPPORTED');
    assert.equal((await code(d.decryptAsymmetric('1', Buffer.alloc(256), 'rsa-oaep-sha256'))).code, 'UNSUPPORTED');
    // the server itself: CreateKeyPair with EC fails
    const ec = await code(
      raw.call(Operation.CreateKeyPair, [
        structure(Tag.CommonTemplateAttribute, [
          attr('Cryptographic Algorithm', enumeration(0, CryptographicAlgorithm.EC)),
          attr('Cryptographic Length', integer(0, 256)),
          attr('Cryptographic Usage Mask', integer(0, UsageMask.Sign | UsageMask.Verify)),
        ]),
      ]),
    );
    assert.notEqual(ec.code, 'UNAVAILABLE');
    // the server itself: Decrypt with an RSA private key (OAEP SHA-256) is refused
    const p = await raw.call(Operation.CreateKeyPair, [
      structure(Tag.CommonTemplateAttribute, [
        attr('Cryptographic Algorithm', enumeration(0, CryptographicAlgorithm.RSA)),
        attr('Cryptographic Length', integer(0, 2048)),
      ]),
      structure(Tag.PrivateKeyTemplateAttribute, [attr('Cryptographic Usage Mask', integer(0, UsageMask.Decrypt))]),
      structure(Tag.PublicKeyTemplateAttribute, [attr('Cryptographic Usage Mask', integer(0, UsageMask.Encrypt))]),
    ]);
    const priv = need(p, Tag.PrivateKeyUniqueIdentifier, 'TextString').value;
    await raw.call(Operation.Activate, [textString(Tag.UniqueIdentifier, priv)]);
    const dec = await code(
      raw.call(Operation.Decrypt, [
        textString(Tag.UniqueIdentifier, priv),
        structure(Tag.CryptographicParameters, [
          enumeration(Tag.PaddingMethod, PaddingMethod.OAEP),
          enumeration(Tag.HashingAlgorithm, HashingAlgorithm.SHA256),
          enumeration(Tag.CryptographicAlgorithm, CryptographicAlgorithm.RSA),
        ]),
        byteString(Tag.Data, randomBytes(256)),
      ]),
    );
    assert.equal(dec.code, 'KEY_USAGE');
    assert.match(dec.message, /symmetric/);
    await d.deleteKey(priv);
  });

  it('import (Register) an AES key, then use it: node:crypto decrypts with the key it imported', async () => {
    const secret = randomBytes(32);
    const name = uniq('byok');
    const id = await d.importKey!({ kind: 'symmetric', spec: 'aes256', secret }, name);
    await d.keyExistsAndIsActive(id);
    const pt = Buffer.from('bring your own key');
    const ct = await d.encryptSymmetric(id, pt);
    const dec = createDecipheriv('aes-256-gcm', secret, ct.subarray(0, 12));
    dec.setAAD(AAD);
    dec.setAuthTag(ct.subarray(ct.length - 16));
    assert.deepEqual(Buffer.concat([dec.update(ct.subarray(12, ct.length - 16)), dec.final()]), pt);
    // and the other way: node:crypto encrypts, the server decrypts
    const iv = randomBytes(12);
    const enc = createCipheriv('aes-256-gcm', secret, iv);
    enc.setAAD(AAD);
    const body = Buffer.concat([enc.update(pt), enc.final()]);
    assert.deepEqual(await d.decryptSymmetric(id, Buffer.concat([iv, body, enc.getAuthTag()])), pt);
    assert.equal((await code(d.importKey!({ kind: 'symmetric', spec: 'aes256', secret: randomBytes(16) }))).code, 'INVALID_INPUT');
    await d.deleteKey(id);
  });

  it('import (Register) an RSA private key, sign on the server, verify with the local public key', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
    const id = await d.importKey!({ kind: 'signing', spec: 'rsa-2048', secret: pkcs8 }, uniq('byok-rsa'));
    const pub = await d.getPublicKey(id);
    assert.deepEqual(pub.spki, publicKey.export({ format: 'der', type: 'spki' }));
    const data = Buffer.from('signed by an imported key');
    const sig = await d.sign(id, data, 'rsa-pss-sha256');
    assert.equal(
      nodeVerify(
        'sha256',
        data,
        { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO },
        sig,
      ),
      true,
    );
    // a signature node makes with the same key is different (random salt) but both verify
    const own = nodeSign('sha256', data, { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
    assert.notDeepEqual(own, sig);
    assert.equal((await code(d.importKey!({ kind: 'signing', spec: 'rsa-3072', secret: pkcs8 }))).code, 'INVALID_INPUT');
    assert.equal((await code(d.importKey!({ kind: 'signing', spec: 'ec-p256', secret: pkcs8 }))).code, 'UNSUPPORTED');
    await d.deleteKey(id);
  });

  it('delete (Revoke + Destroy) then every use is NOT_FOUND', async () => {
    const id = await d.generateSymmetricKey(uniq('gone'));
    const ct = await d.encryptSymmetric(id, Buffer.from('x'));
    await d.deleteKey(id);
    assert.equal((await code(d.keyExistsAndIsActive(id))).code, 'NOT_FOUND');
    assert.equal((await code(d.encryptSymmetric(id, Buffer.from('x')))).code, 'NOT_FOUND');
    assert.equal((await code(d.decryptSymmetric(id, ct))).code, 'NOT_FOUND');
    assert.equal((await code(d.deleteKey(id))).code, 'NOT_FOUND');
    assert.equal((await code(d.resolveKeyId!('no-such-key-' + id))).code, 'NOT_FOUND');
    // a key pair goes away whole: no public half is left behind
    const pair = await d.generateSigningKeyPair('rsa-2048');
    const ids = new Set<string>();
    for await (const k of d.listKeys!()) ids.add(k.keyId);
    assert.ok(ids.has(pair));
    await d.deleteKey(pair);
    const after: string[] = [];
    for await (const k of d.listKeys!()) after.push(k.keyId);
    assert.ok(!after.includes(pair));
  });

  it('a key that is not Active is KEY_DISABLED', async () => {
    const p = await raw.call(Operation.Create, [
      enumeration(Tag.ObjectType, ObjectType.SymmetricKey),
      structure(Tag.TemplateAttribute, [
        attr('Cryptographic Algorithm', enumeration(0, CryptographicAlgorithm.AES)),
        attr('Cryptographic Length', integer(0, 256)),
        attr('Cryptographic Usage Mask', integer(0, UsageMask.Encrypt | UsageMask.Decrypt)),
      ]),
    ]);
    const id = need(p, Tag.UniqueIdentifier, 'TextString').value;
    assert.equal((await code(d.keyExistsAndIsActive(id))).code, 'KEY_DISABLED');
    assert.equal((await code(d.encryptSymmetric(id, Buffer.from('x')))).code, 'KEY_DISABLED');
    await d.deleteKey(id); // pre-active: Destroy without Revoke
    assert.equal((await code(d.keyExistsAndIsActive(id))).code, 'NOT_FOUND');
  });

  it('listKeys (Locate) shows names, kinds, specs and states', async () => {
    const name = uniq('listed');
    const id = await d.generateSymmetricKey(name);
    const found: Record<string, unknown>[] = [];
    for await (const k of d.listKeys!()) found.push(k as unknown as Record<string, unknown>);
    const mine = found.find((k) => k.keyId === id);
    assert.deepEqual(mine, { keyId: id, name, kind: 'symmetric', spec: 'aes256', state: 'enabled' });
    await d.deleteKey(id);
  });

  it('a client certificate the server does not trust -> AUTH/UNAVAILABLE, one line', async () => {
    const rogue = await factory({ ...params, cert: env.KMIP_ROGUE_CERT!, key: env.KMIP_ROGUE_KEY! }, 'kmip:rogue');
    const e = await code(rogue.generateSymmetricKey());
    // TLS 1.2: PyKMIP's handshake answers an untrusted client certificate with an unknown_ca alert
    assert.equal(e.code, 'AUTH', e.message);
    assert.match(e.message, /client certificate/);
    const h = await rogue.health();
    assert.notEqual(h.state, 'ok');
    await rogue.close?.();
  });

  it('a server certificate that does not chain to ca= -> AUTH', async () => {
    // the rogue certificate as the "CA": the real server certificate does not chain to it
    const wrongCa = await factory({ ...params, ca: env.KMIP_ROGUE_CERT! }, 'kmip:wrong-ca');
    const e = await code(wrongCa.generateSymmetricKey());
    assert.equal(e.code, 'AUTH');
    await wrongCa.close?.();
    const wrongName = await factory({ ...params, 'server-name': 'kmip.example.com' }, 'kmip:wrong-name');
    assert.equal((await code(wrongName.generateSymmetricKey())).code, 'AUTH');
    await wrongName.close?.();
  });

  it('a closed port -> UNAVAILABLE, retryable', async () => {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    const closed = await factory({ ...params, port: String(port) }, 'kmip:closed');
    const e = await code(closed.generateSymmetricKey());
    assert.equal(e.code, 'UNAVAILABLE');
    assert.equal(e.retryable, true);
    assert.equal((await closed.health()).state, 'failed');
    await closed.close?.();
  });

  it('a silent peer -> TIMEOUT; a dropped connection is reconnected', async () => {
    const held: net.Socket[] = [];
    const silent = net.createServer((s) => held.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const sp = (silent.address() as net.AddressInfo).port;
    const slow = await factory({ ...params, port: String(sp), timeout: '300ms' }, 'kmip:silent');
    const e = await code(slow.generateSymmetricKey());
    assert.equal(e.code, 'TIMEOUT');
    assert.equal(e.retryable, true);
    await slow.close?.();
    held.forEach((s) => s.destroy());
    await new Promise<void>((r) => silent.close(() => r()));

    // a TCP relay in front of the real server whose connections we can cut
    const links: net.Socket[] = [];
    const relay = net.createServer((c) => {
      const up = net.connect(Number(env.KMIP_PORT), '127.0.0.1');
      links.push(c, up);
      c.pipe(up).pipe(c);
      c.on('error', () => up.destroy());
      up.on('error', () => c.destroy());
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    const rp = (relay.address() as net.AddressInfo).port;
    const viaRelay = await factory({ ...params, port: String(rp) }, 'kmip:relay');
    const id = await viaRelay.generateSymmetricKey();
    const ct = await viaRelay.encryptSymmetric(id, Buffer.from('before'));
    links.splice(0).forEach((s) => s.destroy());
    await new Promise((r) => setTimeout(r, 50));
    // the next calls open a fresh connection
    assert.deepEqual(await viaRelay.decryptSymmetric(id, ct), Buffer.from('before'));
    await viaRelay.deleteKey(id);
    await viaRelay.close?.();
    links.forEach((s) => s.destroy());
    await new Promise<void>((r) => relay.close(() => r()));
  });

  it('a peer answering garbage over TLS gets INVALID_INPUT / UNAVAILABLE, never a crash', async () => {
    // not a KMIP server: a TLS endpoint with the testbed's server certificate that answers nonsense
    const pki = dirname(env.KMIP_CA!);
    const answers = [
      Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'), // not a Response Message
      hex('42007b 01 7fffffff'), // a Response Message claiming 2 GiB
      hex('42007b 01 00000010 42007a 01 00000008 0000'), // a truncated frame, then the peer closes
      Buffer.concat([hex('42007b 01 00000008'), hex('42007a 02 00000004 0000000100000000')]), // header length lies about its child
    ];
    let n = 0;
    const srv = tls.createServer({ cert: readFileSync(join(pki, 'server.crt')), key: readFileSync(join(pki, 'server.key')) }, (s) => {
      const a = answers[n++ % answers.length]!;
      s.once('data', () => (n % answers.length === 3 ? s.end(a) : s.write(a)));
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = String((srv.address() as net.AddressInfo).port);
    const codes: string[] = [];
    for (let i = 0; i < answers.length; i++) {
      const g = await factory({ ...params, port, timeout: '2s' }, 'kmip:garbage');
      codes.push((await code(g.generateSymmetricKey())).code);
      await g.close?.();
    }
    srv.close();
    assert.deepEqual(codes, ['INVALID_INPUT', 'INVALID_INPUT', 'UNAVAILABLE', 'INVALID_INPUT']);
  });

  it("PyKMIP's own encoder and ours agree byte for byte", () => {
    const py = env.KMIP_PYTHON;
    assert.ok(py, 'the testbed names the PyKMIP python');
    const script = `
import sys
from kmip.core import enums, utils, attributes, objects as cobjects
from kmip.core.factories import attributes as af
from kmip.core.messages import contents, messages, payloads
f = af.AttributeFactory()
ta = cobjects.TemplateAttribute(attributes=[
  f.create_attribute(enums.AttributeType.CRYPTOGRAPHIC_ALGORITHM, enums.CryptographicAlgorithm.AES),
  f.create_attribute(enums.AttributeType.CRYPTOGRAPHIC_LENGTH, 256),
  f.create_attribute(enums.AttributeType.CRYPTOGRAPHIC_USAGE_MASK, [enums.CryptographicUsageMask.ENCRYPT, enums.CryptographicUsageMask.DECRYPT]),
  f.create_attribute(enums.AttributeType.NAME, attributes.Name.create('kmip-interop', enums.NameType.UNINTERPRETED_TEXT_STRING)),
])
pl = payloads.CreateRequestPayload(object_type=enums.ObjectType.SYMMETRIC_KEY, template_attribute=ta)
hdr = messages.RequestHeader(protocol_version=contents.ProtocolVersion(1, 4), batch_count=contents.BatchCount(1))
bi = messages.RequestBatchItem(operation=contents.Operation(enums.Operation.CREATE), request_payload=pl)
m = messages.RequestMessage(request_header=hdr, batch_items=[bi])
s = utils.BytearrayStream()
m.write(s, kmip_version=enums.KMIPVersion.KMIP_1_4)
sys.stdout.write(bytes(s.buffer).hex())
`;
    const r = spawnSync(py!, ['-c', script], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const theirs = Buffer.from(r.stdout.trim(), 'hex');
    const decoded = decodeTtlv(theirs);
    assert.deepEqual(encodeTtlv(decoded), theirs);
    // and it is the request keyport itself builds for Create
    const ours = encodeTtlv(
      structure(Tag.RequestMessage, [
        structure(Tag.RequestHeader, [
          structure(Tag.ProtocolVersion, [integer(Tag.ProtocolVersionMajor, 1), integer(Tag.ProtocolVersionMinor, 4)]),
          integer(Tag.BatchCount, 1),
        ]),
        structure(Tag.BatchItem, [
          enumeration(Tag.Operation, Operation.Create),
          structure(Tag.RequestPayload, [
            enumeration(Tag.ObjectType, ObjectType.SymmetricKey),
            structure(Tag.TemplateAttribute, [
              attr('Cryptographic Algorithm', enumeration(0, CryptographicAlgorithm.AES)),
              attr('Cryptographic Length', integer(0, 256)),
              attr('Cryptographic Usage Mask', integer(0, UsageMask.Encrypt | UsageMask.Decrypt)),
              structure(Tag.Attribute, [
                textString(Tag.AttributeName, 'Name'),
                structure(Tag.AttributeValue, [textString(Tag.NameValue, 'kmip-interop'), enumeration(Tag.NameType, 1)]),
              ]),
            ]),
          ]),
        ]),
      ]),
    );
    assert.equal(ours.toString('hex'), theirs.toString('hex'));
    assert.ok(find(decoded, Tag.RequestHeader, 'Structure'));
    void BlockCipherMode;
  });
});
