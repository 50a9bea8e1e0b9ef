/**
 * The one AES-KWP home (src/crypto/keywrap.ts) that AWS, GCP and PKCS#11 imports use: rsaAesKeyWrap
 * unwrapped here independently (node:crypto RSA-OAEP-SHA-256, then openssl's id-aes256-wrap-pad).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, createDecipheriv, generateKeyPairSync, privateDecrypt, randomBytes } from 'node:crypto';
import { aesKeyUnwrap, aesKeyWrap, rsaAesKeyWrap } from '../../src/crypto/keywrap.js';

test('rsaAesKeyWrap = RSA-OAEP-SHA-256(AES key) ‖ AES-KWP(material), for a key object and a PEM', () => {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 3072 });
  for (const wrapping of [publicKey, publicKey.export({ type: 'spki', format: 'pem' }) as string]) {
    const material = randomBytes(121); // not a multiple of 8: padding is exercised
    const wrapped = rsaAesKeyWrap(wrapping, material);
    const aes = privateDecrypt(
      { key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
      wrapped.subarray(0, 384),
    );
    assert.equal(aes.length, 32);
    const d = createDecipheriv('id-aes256-wrap-pad', aes, Buffer.from('a65959a6', 'hex'));
    assert.deepEqual(Buffer.concat([d.update(wrapped.subarray(384)), d.final()]), material);
    assert.deepEqual(aesKeyUnwrap(aes, wrapped.subarray(384), true), material);
  }
});

test('aesKeyWrap with padding round-trips and refuses a wrong key', () => {
  const kek = randomBytes(32);
  const w = aesKeyWrap(kek, Buffer.from('secret'), true);
  assert.deepEqual(aesKeyUnwrap(kek, w, true), Buffer.from('secret'));
  assert.throws(() => aesKeyUnwrap(randomBytes(32), w, true), /unwrap failed/);
});
