/**
 * The conformance kit against real drivers: local: (the dev KMS, files in a temp dir) and the example
 * third-party module through the driver: loader. Also the loader's module shapes and its errors.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { openDriver } from '../../src/kms/registry.js';
import { runConformance, summarize, deriveUnreachableUri, deriveBadCredentialsUri, type CheckResult } from '../../src/kms/conformance.js';
import { isKeyportError } from '../../src/errors.js';
import { ROOT } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';

function assertAllPass(results: CheckResult[], allowedSkips: RegExp) {
  const failed = results.filter((r) => r.outcome === 'fail');
  assert.deepEqual(failed, [], `failed checks:\n${failed.map((r) => `${r.check} ${r.spec ?? ''}: ${r.detail}`).join('\n')}`);
  for (const r of results.filter((x) => x.outcome === 'skip'))
    assert.match(r.check, allowedSkips, `unexpected skip ${r.check}: ${r.detail}`);
}

describe('conformance kit', () => {
  test('local: passes every check and leaves no key behind', async () => {
    const dir = tempDir();
    const uri = `local:${dir}/`;
    const driver = await openDriver(uri);
    const seen: string[] = [];
    const results = await runConformance(driver, { uri, onResult: (r) => seen.push(r.check) });
    assert.deepEqual(
      seen,
      results.map((r) => r.check),
    );
    // local: has no network endpoint nor credentials, and does not bind a key to one usage
    assertAllPass(results, /^(unreachable|bad-credentials|wrong-usage\.sign-with-encryption-key)$/);
    const checks = new Set(results.map((r) => r.check));
    for (const c of [
      'health',
      'supported-specs',
      'symmetric.round-trip',
      'symmetric.tampered-ciphertext',
      'signing.sign-verify',
      'encryption.decrypt',
      'unknown-key',
      'wrong-usage.sign-algorithm',
      'oversize.symmetric-1mib',
      'import.aes256',
      'import.ec-p256',
      'signing.delete',
    ]) {
      assert.ok(checks.has(c), `check ${c} ran`);
    }
    // every signing and encryption spec was exercised
    assert.equal(results.filter((r) => r.check === 'signing.sign-verify' && r.outcome === 'pass').length, 6);
    assert.equal(results.filter((r) => r.check === 'encryption.decrypt' && r.outcome === 'pass').length, 3);
    assert.deepEqual(readdirSync(dir), [], 'every keyport-conformance-* key was deleted');
  });

  test('local: --keep leaves the keys, named keyport-conformance-*', async () => {
    const dir = tempDir();
    const results = await runConformance(await openDriver(`local:${dir}/`), {
      specs: { signing: ['ed25519'], encryption: [] },
      cleanup: false,
    });
    assert.equal(summarize(results).failed, 0);
    const files = readdirSync(dir);
    assert.ok(files.length >= 2);
    assert.ok(
      files.every((f) => f.startsWith('keyport-conformance-')),
      files.join(' '),
    );
  });

  test('driver:./examples/driver-example (the example third-party module) passes every check', async () => {
    const prev = process.cwd();
    process.chdir(ROOT); // MODULE paths are relative to the current directory
    try {
      const uri = 'driver:./examples/driver-example;max-plaintext=2000000';
      const driver = await openDriver(uri);
      assert.equal(driver.name, 'driver-example');
      const results = await runConformance(driver, { uri });
      assertAllPass(results, /^(unreachable|bad-credentials)$/);
      // the example enforces key usage, unlike local:
      assert.equal(results.find((r) => r.check === 'wrong-usage.sign-with-encryption-key')!.outcome, 'pass');
      // with its default 64 KiB limit, 1 MiB is refused cleanly: still a pass
      const small = await runConformance(await openDriver('driver:./examples/driver-example'), { specs: { signing: [], encryption: [] } });
      const over = small.find((r) => r.check === 'oversize.symmetric-1mib')!;
      assert.equal(over.outcome, 'pass');
      assert.match(over.detail!, /rejected: INVALID_INPUT/);
    } finally {
      process.chdir(prev);
    }
  });

  test('a broken driver fails the checks it breaks, and the kit does not crash', async () => {
    const dir = tempDir();
    const real = await openDriver(`local:${dir}/`);
    // a driver that signs the wrong data and throws raw errors for unknown keys
    const broken = Object.assign(Object.create(null), real, {
      name: 'broken',
      health: () => real.health(),
      supportedSigningKeySpecs: () => ['ec-p256'],
      supportedSigningAlgoSpecs: () => ['ecdsa-sha256'],
      supportedEncryptionKeySpecs: () => [],
      supportedEncryptionAlgoSpecs: () => [],
      generateSigningKeyPair: (s: 'ec-p256', n?: string) => real.generateSigningKeyPair(s, n),
      generateSymmetricKey: (n?: string) => real.generateSymmetricKey(n),
      getPublicKey: (id: string) => real.getPublicKey(id),
      sign: (id: string, data: Buffer, a: 'ecdsa-sha256') => real.sign(id, Buffer.concat([data, Buffer.from('x')]), a),
      encryptSymmetric: (id: string, pt: Buffer) => real.encryptSymmetric(id, pt),
      decryptSymmetric: (id: string, ct: Buffer) => real.decryptSymmetric(id, ct),
      keyExistsAndIsActive: async (id: string) => {
        try {
          await real.keyExistsAndIsActive(id);
        } catch {
          throw new Error('ENOENT raw error');
        }
      },
      deleteKey: (id: string) => real.deleteKey(id),
      decryptAsymmetric: (id: string, c: Buffer, a: 'rsa-oaep-sha256') => real.decryptAsymmetric(id, c, a),
    });
    const results = await runConformance(broken, { healthWaitMs: 1000 });
    const byCheck = (c: string) => results.filter((r) => r.check === c);
    assert.equal(byCheck('signing.sign-verify')[0]!.outcome, 'fail');
    assert.match(byCheck('signing.sign-verify')[0]!.detail!, /does not verify/);
    assert.equal(byCheck('unknown-key')[0]!.outcome, 'fail');
    assert.match(byCheck('unknown-key')[0]!.detail!, /non-keyport error/);
    assert.ok(
      byCheck('symmetric.delete').every((r) => r.outcome === 'fail'),
      'deleted key check sees the raw error',
    );
    assert.ok(summarize(results).failed >= 3);
  });

  test('a driver whose health never gets ok fails health and skips the rest', async () => {
    const real = await openDriver(`local:${tempDir()}/`);
    const results = await runConformance(
      { ...real, name: 'sick', health: async () => ({ state: 'failed', reason: 'down' }) } as typeof real,
      { healthWaitMs: 1500 },
    );
    assert.deepEqual(
      results.map((r) => [r.check, r.outcome]),
      [
        ['health', 'fail'],
        ['remaining checks', 'skip'],
      ],
    );
    assert.match(results[0]!.detail!, /failed: down/);
  });

  test('unreachable and bad-credentials URIs are derived from endpoint, host/port and credential attributes', () => {
    assert.equal(
      deriveUnreachableUri('awskms:region=us-east-1;endpoint=http://127.0.0.1:5000')?.toString(),
      'awskms:region=us-east-1;endpoint=http://127.0.0.1:1',
    );
    assert.equal(deriveUnreachableUri('kmip:host=kms.example;port=5696;cert=c.pem')?.toString(), 'kmip:host=127.0.0.1;port=1;cert=c.pem');
    assert.equal(deriveUnreachableUri('azurekv:vault=https://myvault.vault.azure.net/')?.toString(), 'azurekv:vault=https://127.0.0.1:1');
    assert.equal(deriveUnreachableUri('local:/tmp/x/'), undefined);
    assert.equal(deriveUnreachableUri('pkcs11:module-path=/usr/lib/softhsm.so;token=t?pin-value=1234'), undefined);
    const bad = deriveBadCredentialsUri('pkcs11:module-path=/m.so;token=t?pin-value=1234');
    assert.deepEqual(bad?.driverParams(), { 'module-path': '/m.so', token: 't', 'pin-value': '000000' });
    assert.equal(bad?.toString(), 'pkcs11:module-path=/m.so;token=t;pin-value=***', 'a typed address prints redacted');
    assert.equal(deriveBadCredentialsUri('awskms:region=r;endpoint=http://h:1'), undefined);
  });
});

describe('driver: loader', () => {
  const dir = tempDir();
  const example = pathToFileURL(join(ROOT, 'examples', 'driver-example', 'index.js')).href;

  test('accepts export default factory and export function createDriver(params)', async () => {
    writeFileSync(join(dir, 'default.mjs'), `import { factory } from '${example}';\nexport default factory;\n`);
    writeFileSync(
      join(dir, 'create.mjs'),
      `import { factory } from '${example}';\nexport function createDriver(params) { return factory(params, ''); }\n`,
    );
    for (const f of ['default.mjs', 'create.mjs']) {
      const d = await openDriver(`driver:${join(dir, f)};max-plaintext=10`);
      const id = await d.generateSymmetricKey('x');
      assert.ok((await d.decryptSymmetric(id, await d.encryptSymmetric(id, Buffer.from('hi')))).equals(Buffer.from('hi')));
      // params arrive: max-plaintext=10
      await assert.rejects(d.encryptSymmetric(id, Buffer.alloc(11)), (e) => isKeyportError(e, 'INVALID_INPUT'));
      // the module's coded errors become KeyportErrors with that code
      await assert.rejects(d.keyExistsAndIsActive('nope'), (e) => isKeyportError(e, 'NOT_FOUND'));
    }
  });

  test('a module that is not a driver gets one error naming what is missing', async () => {
    writeFileSync(
      join(dir, 'half.mjs'),
      `export const factory = async () => ({ name: 'half', health: async () => ({ state: 'ok' }), sign: async () => Buffer.alloc(0) });\n`,
    );
    await assert.rejects(openDriver(`driver:${join(dir, 'half.mjs')}`), (e) => {
      assert.ok(isKeyportError(e, 'INVALID_INPUT'));
      assert.match((e as Error).message, /missing supportedSigningKeySpecs, .*deleteKey/);
      assert.doesNotMatch((e as Error).message, /\n/);
      return true;
    });
    writeFileSync(join(dir, 'nothing.mjs'), `export const x = 1;\n`);
    await assert.rejects(openDriver(`driver:${join(dir, 'nothing.mjs')}`), /exports no driver factory/);
    await assert.rejects(openDriver(`driver:${join(dir, 'absent.mjs')}`), (e) => isKeyportError(e, 'USAGE'));
    await assert.rejects(
      openDriver('driver:keyport-no-such-driver-package'),
      (e) => isKeyportError(e, 'USAGE') && /not found/.test((e as Error).message),
    );
  });

  test('raw errors thrown by a module become one-line INTERNAL errors naming it', async () => {
    writeFileSync(
      join(dir, 'raw.mjs'),
      `import { factory as f } from '${example}';\nexport const factory = async (p, u) => { const d = await f(p, u); d.sign = async () => { throw new RangeError('bad\\nthings'); }; return d; };\n`,
    );
    const d = await openDriver(`driver:${join(dir, 'raw.mjs')}`);
    await assert.rejects(
      d.sign('k', Buffer.from('x'), 'ed25519'),
      (e) => isKeyportError(e, 'INTERNAL') && !/\n/.test((e as Error).message) && /raw\.mjs/.test((e as Error).message),
    );
  });
});
