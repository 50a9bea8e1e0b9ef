/**
 * The awssm: record store against moto's Secrets Manager (scripts/testbed/moto.sh). Every check reads
 * back through the store and, where the layout matters, through the plain SDK.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { SecretsManagerClient, GetSecretValueCommand, CreateSecretCommand, DescribeSecretCommand } from '@aws-sdk/client-secrets-manager';
import { skipUnless, serviceEnv } from '../support/testbed.js';
import { openAwsSmStore } from '../../src/store/awssm.js';
import { allNames, type KeyRecord, type RecordStore } from '../../src/store/types.js';
import { isKeyportError, type ErrorCode } from '../../src/errors.js';

async function rejectsCode(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.ok(isKeyportError(e), `expected KeyportError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return;
  }
  assert.fail(`expected ${code}`);
}

function rec(name: string, v = 1): KeyRecord {
  return {
    name,
    type: 'aes256',
    purpose: 'symmetric',
    usage: ['any'],
    state: 'active',
    createdAt: '2026-01-01T00:00:00Z',
    createdBy: 'test',
    meta: { note: `v${v}` },
    versions: [
      {
        version: v,
        createdAt: '2026-01-01T00:00:00Z',
        fingerprint: `kcv-${v}`,
        sealed: { wrapper: 'awskms:key-id=alias/w', blob: randomBytes(48).toString('base64') },
      },
    ],
  };
}

describe('awssm store on moto Secrets Manager', { skip: skipUnless('moto') }, () => {
  let env: Record<string, string>;
  let store: RecordStore;
  let raw: SecretsManagerClient;
  const prefix = `keyport-test/${randomBytes(4).toString('hex')}/`;
  const params = (extra: Record<string, string> = {}) => ({
    region: env.MOTO_REGION!,
    endpoint: env.MOTO_ENDPOINT!,
    'access-key-id': env.MOTO_ACCESS_KEY_ID!,
    'secret-access-key': env.MOTO_SECRET_ACCESS_KEY!,
    prefix,
    // these tests store full keyport records (sealed versions); the KES layout has its own test below
    layout: 'keyport',
    ...extra,
  });

  before(async () => {
    env = serviceEnv('moto');
    store = await openAwsSmStore(params(), 'awssm:region=us-east-1');
    raw = new SecretsManagerClient({
      region: env.MOTO_REGION!,
      endpoint: env.MOTO_ENDPOINT!,
      credentials: { accessKeyId: env.MOTO_ACCESS_KEY_ID!, secretAccessKey: env.MOTO_SECRET_ACCESS_KEY! },
    });
  });
  after(async () => {
    await store?.close();
    raw?.destroy();
  });

  it('create / get / replace / delete with EXISTS and NOT_FOUND; the secret holds the JSON record under prefix+name', async () => {
    const r = rec('alpha');
    await store.create(r);
    await rejectsCode(store.create(r), 'EXISTS');
    assert.deepEqual(await store.get('alpha'), r);
    const sv = await raw.send(new GetSecretValueCommand({ SecretId: `${prefix}alpha` }));
    assert.deepEqual(JSON.parse(sv.SecretString!), r);
    const r2 = rec('alpha', 2);
    await store.replace(r2);
    assert.deepEqual(await store.get('alpha'), r2);
    await rejectsCode(store.replace(rec('nope')), 'NOT_FOUND');
    await rejectsCode(store.get('nope'), 'NOT_FOUND');
    await store.delete('alpha');
    await rejectsCode(store.get('alpha'), 'NOT_FOUND');
    await rejectsCode(store.delete('alpha'), 'NOT_FOUND');
    await store.create(rec('alpha', 3)); // the name is free again right away (forced delete)
    assert.equal((await store.get('alpha')).versions[0]!.version, 3);
  });

  it('list pages through > 100 secrets, byte order, prefix filter is case-sensitive, pages never truncate', async () => {
    const s = await openAwsSmStore(params({ prefix: `${prefix}many/` }), 'awssm:');
    const names: string[] = [];
    for (let i = 0; i < 130; i++) names.push(`k${String(i).padStart(3, '0')}`);
    names.push('A-upper', 'Z_last', 'k-dash', 'K100');
    for (let i = 0; i < names.length; i += 15) await Promise.all(names.slice(i, i + 15).map((n) => s.create(rec(n))));
    const expected = [...names].sort();
    assert.deepEqual(expected.slice(0, 3), ['A-upper', 'K100', 'Z_last'], 'byte order puts upper case first');
    const all: string[] = [];
    for await (const n of allNames(s, undefined, 40)) all.push(n);
    assert.deepEqual(all, expected);
    const page = await s.list({ prefix: 'k1', limit: 5 });
    assert.deepEqual(page.names, ['k100', 'k101', 'k102', 'k103', 'k104']);
    assert.equal(page.next, 'k104');
    const ks = (await s.list({ prefix: 'K' })).names;
    assert.deepEqual(ks, ['K100'], 'AWS name filter ignores case; the store does not');
    await s.setMeta('protection', 'on');
    assert.ok(!(await s.list()).names.includes('.keyport-meta'));
    await s.close();
  });

  it('putMany creates and replaces each record; meta lives in prefix.keyport-meta and is not listed', async () => {
    const s = await openAwsSmStore(params({ prefix: `${prefix}pm/` }), 'awssm:');
    await s.create(rec('one'));
    await s.putMany([rec('one', 5), rec('two', 6)], { wrapper: 'awskms:key-id=alias/w' });
    assert.equal((await s.get('one')).versions[0]!.version, 5);
    assert.equal((await s.get('two')).versions[0]!.version, 6);
    assert.equal(await s.getMeta('wrapper'), 'awskms:key-id=alias/w');
    assert.equal(await s.getMeta('other'), undefined);
    await s.setMeta('other', 'x');
    await s.setMeta('wrapper', undefined);
    assert.equal(await s.getMeta('wrapper'), undefined);
    assert.equal(await s.getMeta('other'), 'x');
    const d = await raw.send(new DescribeSecretCommand({ SecretId: `${prefix}pm/.keyport-meta` }));
    assert.equal(d.Name, `${prefix}pm/.keyport-meta`);
    assert.deepEqual((await s.list()).names, ['one', 'two']);
    await s.close();
  });

  it('a secret that is not a keyport record is INVALID_INPUT, not a crash; bad prefixes are USAGE', async () => {
    await raw.send(new CreateSecretCommand({ Name: `${prefix}garbage`, SecretString: '{"bytes":"abc"}' }));
    await rejectsCode(store.get('garbage'), 'INVALID_INPUT');
    await rejectsCode(openAwsSmStore(params({ prefix: 'bad prefix!' }), 'awssm:'), 'USAGE');
  });

  it('an unreachable endpoint is UNAVAILABLE (retryable)', async () => {
    const s = await openAwsSmStore(
      { region: 'us-east-1', endpoint: 'http://127.0.0.1:1', 'access-key-id': 'a', 'secret-access-key': 'b' },
      'awssm:',
    );
    try {
      await s.get('x');
      assert.fail('expected an error');
    } catch (e) {
      assert.ok(isKeyportError(e, 'UNAVAILABLE'), String(e));
      assert.equal(e.retryable, true);
    }
    await s.close();
  });

  it('layout=kes (the default): the secret is the KES stored key format, as KES writes it', async () => {
    const { kesKeyToRecord } = await import('../../src/store/kes-fs.js');
    const { decodeKesKey, encodeKesKey } = await import('../../src/store/kes-format.js');
    const kesPrefix = `${prefix}kes/`;
    const s = await openAwsSmStore(params({ prefix: kesPrefix, layout: 'kes' }), 'awssm:');
    assert.equal(s.capabilities.kesOnly, true);
    const secret = randomBytes(32);
    const hmacKey = randomBytes(32);
    const rec = kesKeyToRecord('minio-key', { secret, hmacKey, algorithm: 'AES256', createdAt: '2026-01-01T00:00:00Z', createdBy: 'test' });
    await s.create(rec);
    const out = await raw.send(new GetSecretValueCommand({ SecretId: `${kesPrefix}minio-key` }));
    const k = decodeKesKey(Buffer.from(out.SecretString!, 'latin1'));
    assert.deepEqual(k.secret, secret);
    assert.deepEqual(k.hmacKey, hmacKey);
    // a secret written the way KES writes it reads as a key
    await raw.send(
      new CreateSecretCommand({
        Name: `${kesPrefix}from-kes`,
        SecretString: encodeKesKey({ secret, algorithm: 'AES256', createdAt: '2026-01-01T00:00:00Z', createdBy: 'kes' }).toString('latin1'),
      }),
    );
    const got = await s.get('from-kes');
    assert.equal(got.type, 'aes256');
    assert.deepEqual((await s.list()).names, ['from-kes', 'minio-key']);
    await s.close();
  });
});

// moto with IAM authentication on (scripts/testbed/motoauth.sh): Secrets Manager refusals arrive as XML
describe('awssm store on a moto that checks credentials and IAM policies', { skip: skipUnless('motoauth') }, () => {
  it('a wrong secret is AUTH and a user without secretsmanager permissions is PERMISSION, one line each', async () => {
    const env = serviceEnv('motoauth');
    const base = { region: env.MOTOAUTH_REGION!, endpoint: env.MOTOAUTH_ENDPOINT!, prefix: 'keyport-auth/', layout: 'keyport' };
    const wrong = await openAwsSmStore(
      { ...base, 'access-key-id': env.MOTOAUTH_ADMIN_ACCESS_KEY_ID!, 'secret-access-key': 'not-the-secret' },
      'awssm:wrong',
    );
    await rejectsCode(wrong.list(), 'AUTH');
    // both test users hold kms:* permissions at most: Secrets Manager is denied by IAM
    const denied = await openAwsSmStore(
      { ...base, 'access-key-id': env.MOTOAUTH_RESTRICTED_ACCESS_KEY_ID!, 'secret-access-key': env.MOTOAUTH_RESTRICTED_SECRET_ACCESS_KEY! },
      'awssm:restricted',
    );
    try {
      await denied.list();
      assert.fail('expected PERMISSION');
    } catch (e) {
      assert.ok(isKeyportError(e, 'PERMISSION'), String(e));
      assert.ok(!e.message.includes('\n'));
    }
    await wrong.close();
    await denied.close();
  });
});
