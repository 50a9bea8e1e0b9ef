/**
 * The conformance kit (`keyport driver-test`) against every KMS emulator that really runs here: each
 * driver must pass every check its emulator can answer. A check an emulator cannot answer truthfully
 * is listed below with the reason, and asserted to be exactly that set (so a fixed emulator or a new
 * driver bug both show up).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { openDriver } from '../../src/kms/registry.js';
import { runConformance, type CheckResult } from '../../src/kms/conformance.js';
import { skipUnless, serviceEnv } from '../support/testbed.js';

async function kit(uri: string, extra: { badCredentialsUri?: string } = {}): Promise<CheckResult[]> {
  const d = await openDriver(uri);
  try {
    return await runConformance(d, { uri, ...extra, callTimeoutMs: 30_000 });
  } finally {
    await d.close?.();
  }
}

const failures = (r: CheckResult[]) =>
  r.filter((x) => x.outcome === 'fail').map((x) => `${x.check}${x.spec ? `[${x.spec}]` : ''}: ${x.detail ?? ''}`);

describe('conformance kit: kmip on PyKMIP', { skip: skipUnless('pykmip') }, () => {
  test('every check passes', async () => {
    const e = serviceEnv('pykmip');
    const uri = `kmip:host=${e['KMIP_HOST']};port=${e['KMIP_PORT']};cert=${e['KMIP_CERT']};key=${e['KMIP_KEY']};ca=${e['KMIP_CA']}`;
    const r = await kit(uri, {
      badCredentialsUri: `kmip:host=${e['KMIP_HOST']};port=${e['KMIP_PORT']};cert=${e['KMIP_ROGUE_CERT']};key=${e['KMIP_ROGUE_KEY']};ca=${e['KMIP_CA']}`,
    });
    assert.deepEqual(failures(r), []);
    assert.ok(r.filter((x) => x.outcome === 'pass').length >= 10);
  });
});

describe('conformance kit: pkcs11 on SoftHSM2', { skip: skipUnless('softhsm') }, () => {
  test('every check passes', async () => {
    const e = serviceEnv('softhsm');
    process.env['SOFTHSM2_CONF'] = e['SOFTHSM2_CONF'];
    const r = await kit(`pkcs11:module-path=${e['PKCS11_MODULE']};token=${e['PKCS11_TOKEN']}?pin-value=${e['PKCS11_PIN']}`);
    assert.deepEqual(failures(r), []);
    assert.ok(r.filter((x) => x.outcome === 'pass').length >= 30);
  });
});
