/** openssl as the independent peer: it verifies keyport's signatures and encrypts to keyport's RSA keys. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openKeyring } from '../../src/keys/open.js';
import { toPem } from '../../src/crypto/keys.js';
import { tempDir } from '../support/tmp.js';

const dir = tempDir();
const openssl = (args: string[], input?: Buffer) => execFileSync('openssl', args, { input, stdio: ['pipe', 'pipe', 'pipe'] });

test('openssl verifies keyport signatures of every signing type', async () => {
  const kr = await openKeyring(`sqlite:${join(dir, 'k.db')}`);
  try {
    const data = join(dir, 'data');
    writeFileSync(data, 'the quick brown fox');
    for (const type of ['ec-p256', 'ec-p384', 'secp256k1', 'ed25519', 'rsa-2048', 'rsa-3072'] as const) {
      const name = `sig-${type}`;
      await kr.create(name, { type, purpose: 'signing' });
      const pub = join(dir, `${name}.pem`);
      writeFileSync(pub, toPem(await kr.publicKey(name), 'PUBLIC KEY'));
      const sig = join(dir, `${name}.sig`);
      writeFileSync(sig, await kr.sign(name, readFileSync(data)));
      let out: string;
      if (type === 'ed25519')
        out = openssl(['pkeyutl', '-verify', '-pubin', '-inkey', pub, '-rawin', '-in', data, '-sigfile', sig]).toString();
      else if (type.startsWith('rsa'))
        out = openssl([
          'dgst',
          '-sha256',
          '-verify',
          pub,
          '-sigopt',
          'rsa_padding_mode:pss',
          '-sigopt',
          'rsa_pss_saltlen:32',
          '-sigopt',
          'rsa_mgf1_md:sha256',
          '-signature',
          sig,
          data,
        ]).toString();
      else out = openssl(['dgst', type === 'ec-p384' ? '-sha384' : '-sha256', '-verify', pub, '-signature', sig, data]).toString();
      assert.match(out, /Verified OK|Signature Verified Successfully/, type);
    }
  } finally {
    await kr.close();
  }
});

test('data openssl encrypts to a keyport RSA key (OAEP-SHA256) decrypts with keyport', async () => {
  const kr = await openKeyring(`sqlite:${join(dir, 'k2.db')}`);
  try {
    for (const type of ['rsa-2048', 'rsa-3072'] as const) {
      await kr.create(`enc-${type}`, { type });
      const pub = join(dir, `enc-${type}.pem`);
      writeFileSync(pub, toPem(await kr.publicKey(`enc-${type}`), 'PUBLIC KEY'));
      const secret = Buffer.from(`secret for ${type}`);
      const ct = openssl(
        [
          'pkeyutl',
          '-encrypt',
          '-pubin',
          '-inkey',
          pub,
          '-pkeyopt',
          'rsa_padding_mode:oaep',
          '-pkeyopt',
          'rsa_oaep_md:sha256',
          '-pkeyopt',
          'rsa_mgf1_md:sha256',
        ],
        secret,
      );
      assert.deepEqual(await kr.decrypt(`enc-${type}`, ct), secret);
    }
  } finally {
    await kr.close();
  }
});

test('keys openssl generates import with the right type, and keyport signs with them', async () => {
  const kr = await openKeyring(`sqlite:${join(dir, 'k3.db')}`);
  try {
    const cases = [
      ['ec-p256', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']],
      ['ed25519', ['genpkey', '-algorithm', 'ED25519']],
      ['rsa-2048', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048']],
    ] as const;
    for (const [type, args] of cases) {
      const pem = openssl([...args]);
      const info = await kr.import(`o-${type}`, pem, { purpose: 'signing' });
      assert.equal(info.type, type);
      const pubFromOpenssl = openssl(['pkey', '-pubout', '-outform', 'DER'], pem);
      assert.deepEqual(await kr.publicKey(`o-${type}`), pubFromOpenssl);
    }
  } finally {
    await kr.close();
  }
});
