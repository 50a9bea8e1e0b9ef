/**
 * Independent test vectors (Project Wycheproof, ../shared/testdata/wycheproof): every `valid` case must
 * be accepted and every `invalid` case rejected by keyport's own crypto functions. `acceptable` cases
 * (legacy encodings, weak parameters) may go either way.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { createPrivateKey } from 'node:crypto';
import { ROOT } from '../support/testbed.js';
import { gcmOpen, gcmSeal } from '../../src/crypto/aead.js';
import { aesKeyUnwrap, aesKeyWrap } from '../../src/crypto/keywrap.js';
import { verifyData } from '../../src/crypto/sign.js';
import { publicKeyObject } from '../../src/crypto/keys.js';
import { hkdfSha256, hmacSha256 } from '../../src/crypto/mac.js';
import { rsaOaepDecrypt } from '../../src/crypto/asym.js';
import type { KeyType } from '../../src/crypto/keytypes.js';

// a copy of ../shared/testdata/wycheproof (Apache-2.0, see LICENSE there) so a clean clone tests itself
const DIR = process.env.KEYPORT_WYCHEPROOF ?? join(ROOT, 'test', 'vectors', 'wycheproof');
const hex = (s: string) => Buffer.from(s, 'hex');

interface Case {
  tcId: number;
  result: 'valid' | 'invalid' | 'acceptable';
  [k: string]: any;
}
interface Group {
  tests: Case[];
  [k: string]: any;
}

function load(file: string): Group[] {
  return JSON.parse(readFileSync(join(DIR, file), 'utf8')).testGroups;
}

/** run fn for each case; fn returns true when keyport accepted it */
function check(file: string, fn: (g: Group, c: Case) => boolean, applicable: (g: Group, c: Case) => boolean = () => true) {
  test(`wycheproof ${file}`, () => {
    assert.ok(existsSync(join(DIR, file)), `missing ${DIR}/${file}`);
    let n = 0;
    const bad: string[] = [];
    for (const g of load(file)) {
      for (const c of g.tests) {
        if (!applicable(g, c)) continue;
        let ok: boolean;
        try {
          ok = fn(g, c);
        } catch {
          ok = false;
        }
        n++;
        if (c.result === 'valid' && !ok) bad.push(`#${c.tcId} valid but rejected (${c.comment})`);
        if (c.result === 'invalid' && ok) bad.push(`#${c.tcId} invalid but accepted (${c.comment})`);
      }
    }
    assert.ok(n > 0, 'no test cases');
    assert.deepEqual(bad, []);
  });
}

check(
  'aes_gcm_test.json',
  (g, c) => {
    if (g.ivSize === 0 || c.iv === '') return false; // an empty nonce is never valid
    const tagLen = g.tagSize / 8;
    const ct = Buffer.concat([hex(c.ct), hex(c.tag)]);
    const pt = gcmOpen(hex(c.key), hex(c.iv), ct, hex(c.aad), tagLen);
    if (!pt.equals(hex(c.msg))) return false;
    // and encryption reproduces the vector
    return gcmSeal(hex(c.key), hex(c.iv), hex(c.msg), hex(c.aad), tagLen).equals(ct);
  },
  (_g, c) => c.iv.length / 2 <= 256,
); // keyport only uses 12-byte nonces; OpenSSL caps GCM IVs at 256 bytes

for (const [file, pad] of [
  ['aes_wrap_test.json', false],
  ['aes_kwp_test.json', true],
] as const) {
  check(file, (_g, c) => {
    const pt = aesKeyUnwrap(hex(c.key), hex(c.ct), pad);
    if (!pt.equals(hex(c.msg))) return false;
    return aesKeyWrap(hex(c.key), hex(c.msg), pad).equals(hex(c.ct));
  });
}

const ECDSA: [string, KeyType, 'der' | 'raw'][] = [
  ['ecdsa_secp256r1_sha256_test.json', 'ec-p256', 'der'],
  ['ecdsa_secp256r1_sha256_p1363_test.json', 'ec-p256', 'raw'],
  ['ecdsa_secp384r1_sha384_test.json', 'ec-p384', 'der'],
  ['ecdsa_secp256k1_sha256_test.json', 'secp256k1', 'der'],
];
for (const [file, type, format] of ECDSA) {
  check(file, (g, c) => verifyData(type, publicKeyObject(hex(g.publicKeyDer)), hex(c.msg), hex(c.sig), format));
}

check('ed25519_test.json', (g, c) => verifyData('ed25519', publicKeyObject(hex(g.publicKeyDer)), hex(c.msg), hex(c.sig)));

check('rsa_pss_2048_sha256_mgf1_32_test.json', (g, c) => {
  assert.equal(g.sLen, 32);
  return verifyData('rsa-2048', publicKeyObject(hex(g.publicKeyDer)), hex(c.msg), hex(c.sig));
});

check('rsa_oaep_2048_sha256_mgf1sha256_test.json', (g, c) => {
  const key = createPrivateKey({ key: hex(g.privateKeyPkcs8), format: 'der', type: 'pkcs8' });
  return rsaOaepDecrypt(key, hex(c.ct), c.label ? hex(c.label) : undefined).equals(hex(c.msg));
});

check('hkdf_sha256_test.json', (_g, c) => hkdfSha256(hex(c.ikm), hex(c.salt), hex(c.info), c.size).equals(hex(c.okm)));

check('hmac_sha256_test.json', (g, c) =>
  hmacSha256(hex(c.key), hex(c.msg))
    .subarray(0, g.tagSize / 8)
    .equals(hex(c.tag)),
);
