/**
 * External keys in AWS KMS (moto) through the CLI, as an operator uses them: create in the KMS, sign
 * there, `keyport key public --pem` and openssl verifies; register a pre-generated KMS key by alias.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { ROOT, skipUnless, serviceEnv } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';

describe('external AWS KMS keys through the CLI (moto)', { skip: skipUnless('moto') }, () => {
  const env = serviceEnv('moto');
  const dir = tempDir();
  const kms = `awskms:region=${env['MOTO_REGION']};endpoint=${env['MOTO_ENDPOINT']};access-key-id=${env['MOTO_ACCESS_KEY_ID']};secret-access-key=${env['MOTO_SECRET_ACCESS_KEY']}`;
  const kp = (args: string[]) =>
    new Promise<{ code: number; out: string; err: string }>((resolve) =>
      execFile(
        process.execPath,
        [join(ROOT, 'bin/keyport.js'), ...args],
        { cwd: dir, env: { ...process.env, KEYPORT_HOME: join(dir, 'home'), KEYPORT_STORE: '' } },
        (e, out, err) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err }),
      ),
    );
  const run = randomBytes(3).toString('hex');

  test('a signature made inside AWS KMS verifies with openssl using keyport key public', async () => {
    const name = `ext-p256-${run}`;
    let r = await kp(['key', 'create', name, '--type', 'ec-p256', '--store', kms, '--json']);
    assert.equal(r.code, 0, r.err);
    assert.equal(JSON.parse(r.out).protection, 'external');
    writeFileSync(join(dir, 'data'), 'signed inside the KMS');
    r = await kp(['key', 'sign', name, '--store', kms, '--in', 'data', '--out', 'data.sig']);
    assert.equal(r.code, 0, r.err);
    r = await kp(['key', 'public', name, '--store', kms, '--pem', '--out', 'pub.pem']);
    assert.equal(r.code, 0, r.err);
    const out = execFileSync('openssl', [
      'dgst',
      '-sha256',
      '-verify',
      join(dir, 'pub.pem'),
      '-signature',
      join(dir, 'data.sig'),
      join(dir, 'data'),
    ]).toString();
    assert.match(out, /Verified OK/);
    r = await kp(['key', 'export', name, '--store', kms, '--out', 'x']);
    assert.equal(r.code, 1);
    assert.match(r.err, /cannot be exported/);
  });

  test('a pre-generated KMS key is registered by alias and used', async () => {
    const { factory } = await import('../../src/kms/aws/index.js');
    const d = await factory(
      {
        region: env['MOTO_REGION']!,
        endpoint: env['MOTO_ENDPOINT']!,
        'access-key-id': env['MOTO_ACCESS_KEY_ID']!,
        'secret-access-key': env['MOTO_SECRET_ACCESS_KEY']!,
      },
      'awskms:',
    );
    await d.generateSigningKeyPair('ec-p384', `pregen-${run}`);
    const r = await kp([
      'key',
      'register',
      `adopted-${run}`,
      '--store',
      kms,
      '--key-id',
      `alias/pregen-${run}`,
      '--usage',
      'namespace',
      '--json',
    ]);
    assert.equal(r.code, 0, r.err);
    const info = JSON.parse(r.out) as { type: string; usage: string[]; fingerprint: string };
    assert.equal(info.type, 'ec-p384');
    assert.deepEqual(info.usage, ['namespace']);
    assert.ok(info.fingerprint.startsWith('1220'));
    writeFileSync(join(dir, 'm'), 'x');
    const s = await kp(['key', 'sign', `adopted-${run}`, '--store', kms, '--usage', 'namespace', '--in', 'm', '--out', 'm.sig']);
    assert.equal(s.code, 0, s.err);
    const v = await kp(['key', 'verify', `adopted-${run}`, '--store', kms, '--in', 'm', '--sig', 'm.sig']);
    assert.equal(v.code, 0, v.err);
  });
});
