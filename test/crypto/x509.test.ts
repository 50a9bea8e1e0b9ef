/**
 * Self-signed certificates (the --dev server, API-key client certificates): every one must parse with
 * OpenSSL (node:crypto X509Certificate), whatever the random serial. Serials that started with a zero
 * byte used to be encoded non-minimally ("illegal padding"), about one certificate in 256, when a
 * hand-written DER builder made them; @peculiar/x509 does now, and this still holds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { selfSignedCertificate } from '../../src/crypto/x509.js';

test('2000 certificates (ECDSA P-256 and Ed25519) all parse, verify under their own key and carry the SANs', async () => {
  const keys = [generateKeyPairSync('ec', { namedCurve: 'prime256v1' }), generateKeyPairSync('ed25519')];
  for (let i = 0; i < 2000; i++) {
    const k = keys[i % 2]!;
    const der = await selfSignedCertificate(k.privateKey, { commonName: `c${i}`, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    const c = new X509Certificate(der);
    assert.ok(c.verify(k.publicKey), `certificate ${i} verifies`);
    assert.match(c.subjectAltName ?? '', /DNS:localhost/);
    assert.ok(/^[0-9A-F]+$/.test(c.serialNumber) && c.serialNumber.length === 32, c.serialNumber);
  }
});
