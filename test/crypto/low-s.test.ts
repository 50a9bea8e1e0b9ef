/**
 * ECDSA signatures are low-S (issue 9 item 11): 13 of 20 P-256 signatures had s > n/2 and (r, n − s)
 * verified too. Every signature keyport makes, locally or through a KMS, has s ≤ n/2; a strict verify
 * rejects the high twin. The curve orders here are written out independently of src/.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createPublicKey, randomBytes, verify as nodeVerify } from 'node:crypto';
import { openKeyring } from '../../src/keys/open.js';
import { tempDir } from '../support/tmp.js';
import { skipUnless, serviceEnv } from '../support/testbed.js';
import type { Keyring } from '../../src/keys/types.js';

const N: Record<string, { n: bigint; size: number; hash: string }> = {
  // SEC 2 / FIPS 186-4 group orders
  'ec-p256': { n: BigInt('0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551'), size: 32, hash: 'sha256' },
  'ec-p384': {
    n: BigInt('0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973'),
    size: 48,
    hash: 'sha384',
  },
  secp256k1: { n: BigInt('0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141'), size: 32, hash: 'sha256' },
};

/** r, s of a DER or raw signature, parsed here (not with src/) */
function rs(sig: Buffer, format: 'der' | 'raw', size: number): [bigint, bigint] {
  const big = (b: Buffer) => BigInt(`0x${b.toString('hex')}`);
  if (format === 'raw') return [big(sig.subarray(0, size)), big(sig.subarray(size))];
  let o = 2;
  if (sig[1]! & 0x80) o += sig[1]! & 0x7f;
  const rl = sig[o + 1]!;
  const r = sig.subarray(o + 2, o + 2 + rl);
  o += 2 + rl;
  const s = sig.subarray(o + 2, o + 2 + sig[o + 1]!);
  return [big(r), big(s)];
}

function twin(sig: Buffer, format: 'der' | 'raw', type: string): Buffer {
  const { n, size } = N[type]!;
  const [r, s] = rs(sig, format, size);
  const hex = (v: bigint) => v.toString(16).padStart(size * 2, '0');
  const raw = Buffer.from(hex(r) + hex(n - s), 'hex');
  if (format === 'raw') return raw;
  const int = (b: Buffer) => {
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    const v = b[i]! & 0x80 ? Buffer.concat([Buffer.from([0]), b.subarray(i)]) : b.subarray(i);
    return Buffer.concat([Buffer.from([2, v.length]), v]);
  };
  const body = Buffer.concat([int(raw.subarray(0, size)), int(raw.subarray(size))]);
  return Buffer.concat([Buffer.from(body.length < 128 ? [0x30, body.length] : [0x30, 0x81, body.length]), body]);
}

/** sign `count` messages with each key and check every signature: valid, low S, twin refused when strict */
async function check(kr: Keyring, keys: Record<string, string>, count: number) {
  for (const [type, name] of Object.entries(keys)) {
    const { n, size, hash } = N[type]!;
    const pub = createPublicKey({ key: await kr.publicKey(name), format: 'der', type: 'spki' });
    let twinsAccepted = 0;
    for (let i = 0; i < count; i++) {
      const format = i % 2 ? 'raw' : 'der';
      const data = randomBytes(1 + (i % 64));
      const sig = await kr.sign(name, data, { format });
      const [, s] = rs(sig, format, size);
      assert.ok(s <= n >> 1n, `${type} ${format} signature ${i} has high S`);
      const dsaEncoding = format === 'raw' ? 'ieee-p1363' : 'der';
      assert.ok(nodeVerify(hash, data, { key: pub, dsaEncoding }, sig), `${type} ${format} signature ${i} verifies (node:crypto)`);
      assert.equal(await kr.verify(name, data, sig, { format, strict: true }), true);
      const t = twin(sig, format, type);
      // the curve's equation accepts the twin; the strict verify does not
      if (nodeVerify(hash, data, { key: pub, dsaEncoding }, t)) twinsAccepted++;
      assert.equal(await kr.verify(name, data, t, { format }), true, 'a plain verify is the curve equation');
      assert.equal(await kr.verify(name, data, t, { format, strict: true }), false, `${type} ${format}: strict refuses high S`);
    }
    assert.equal(twinsAccepted, count, 'every twin is a valid signature by the curve equation: the test really makes high S');
  }
}

test('1000 signatures per curve (P-256, P-384, secp256k1; DER and raw) are low-S; strict verify rejects the high twin', async () => {
  const kr = await openKeyring(`sqlite:${join(tempDir(), 'lows.db')}`);
  try {
    const keys: Record<string, string> = {};
    for (const type of Object.keys(N)) {
      keys[type] = `k-${type}`;
      await kr.create(keys[type]!, { type: type as never });
    }
    await check(kr, keys, 1000);
  } finally {
    await kr.close();
  }
});

describe('signatures made inside a KMS are low-S too (AWS KMS on moto)', { skip: skipUnless('moto') }, () => {
  test('100 per curve, DER and raw', async () => {
    const env = serviceEnv('moto');
    const kms = `awskms:region=${env['MOTO_REGION']};endpoint=${env['MOTO_ENDPOINT']};access-key-id=${env['MOTO_ACCESS_KEY_ID']};secret-access-key=${env['MOTO_SECRET_ACCESS_KEY']}`;
    const kr = await openKeyring({ store: `sqlite:${join(tempDir(), 'catalog.db')}`, external: { kms } });
    try {
      const run = randomBytes(3).toString('hex');
      const keys: Record<string, string> = {};
      for (const type of Object.keys(N)) {
        keys[type] = `kms-${type}-${run}`;
        await kr.create(keys[type]!, { type: type as never });
      }
      await check(kr, keys, 100);
    } finally {
      await kr.close();
    }
  });
});
