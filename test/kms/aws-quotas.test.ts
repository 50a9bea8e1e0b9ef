/**
 * AWS KMS's request quotas as keyport names them (src/kms/aws/quotas.ts): which quota a request draws on,
 * the documented default it starts at, and when the defaults apply (the `quotas=` setting).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { quotaMode, quotaOf } from '../../src/kms/aws/quotas.js';
import { isKeyportError } from '../../src/errors.js';
import { KmsAddress } from '../../src/kms/address.js';

describe('AWS KMS quotas', () => {
  it("defaults follow the endpoint: AWS's own → aws, anything else → learn", () => {
    assert.equal(quotaMode(undefined, undefined), 'aws');
    assert.equal(quotaMode(undefined, 'https://kms.eu-west-1.amazonaws.com'), 'aws');
    assert.equal(quotaMode(undefined, 'https://kms-fips.us-gov-west-1.amazonaws.com'), 'aws');
    assert.equal(quotaMode(undefined, 'https://kms.cn-north-1.amazonaws.com.cn'), 'aws');
    assert.equal(quotaMode(undefined, 'https://kms.us-east-1.api.aws'), 'aws');
    assert.equal(quotaMode(undefined, 'http://127.0.0.1:4566'), 'learn');
    assert.equal(quotaMode(undefined, 'https://amazonaws.com.evil.example'), 'learn');
    assert.equal(quotaMode('aws', 'http://127.0.0.1:4566'), 'aws');
    assert.equal(quotaMode('learn', undefined), 'learn');
    assert.throws(
      () => quotaMode('fast', undefined),
      (e: unknown) => isKeyportError(e) && e.code === 'USAGE',
    );
  });

  it('cryptographic operations draw on the shared quota of the key type; others on their own', () => {
    assert.deepEqual(quotaOf('Sign', 'ecc', 'aws'), { name: 'crypto:ecc', seed: 300 });
    assert.deepEqual(quotaOf('Decrypt', 'rsa', 'aws'), { name: 'crypto:rsa', seed: 500 });
    assert.deepEqual(quotaOf('Encrypt', 'symmetric', 'aws'), quotaOf('Decrypt', 'symmetric', 'aws'));
    assert.deepEqual(quotaOf('CreateKey', undefined, 'aws'), { name: 'CreateKey', seed: 5 });
    assert.deepEqual(quotaOf('GetParametersForImport', undefined, 'aws'), { name: 'GetParametersForImport', seed: 0.25 });
    assert.deepEqual(quotaOf('CreateKey', undefined, 'learn'), { name: 'CreateKey', seed: undefined });
    assert.deepEqual(quotaOf('Sign', 'ecc', 'learn'), { name: 'crypto:ecc', seed: undefined });
  });

  it('the connection setting is validated where the URI is parsed', () => {
    assert.doesNotThrow(() => KmsAddress.parse('awskms:region=eu-west-1;quotas=learn'));
    assert.throws(
      () => KmsAddress.parse('awskms:region=eu-west-1;quotas=fast'),
      (e: unknown) => isKeyportError(e) && e.code === 'USAGE' && /quotas/.test(e.message),
    );
  });
});
