/**
 * Operating Canton nodes (issue 11 items 5-7) through the CLI: `node rotate` (new keys, or a pre-generated
 * KMS key, and OwnerToKeyMapping serial + 1, `node verify` after every step, old versions still verifying
 * and decrypting), `node canton-config`, `node iam-policy`, `node compat`, the migrate plan's Canton-node
 * check, and a node run by an IAM identity with exactly Canton's six AWS actions (moto with IAM enforced),
 * with `doctor` showing no problem. Pre-generated KMS keys are made with the AWS CLI, not keyport.
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { writeFileSync, readdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { ROOT, skipUnless, serviceEnv, awsCliTarget, awsCreateKey, awsKms } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';
import { startInjector } from '../support/kms-injector.js';

type Run = { code: number; out: string; err: string };
function cli(dir: string, extraEnv: Record<string, string> = {}) {
  return (args: string[]) =>
    new Promise<Run>((resolve) =>
      execFile(
        process.execPath,
        [join(ROOT, 'bin/keyport.js'), ...args],
        { cwd: dir, env: { ...process.env, KEYPORT_HOME: join(dir, 'home'), KEYPORT_STORE: '', ...extraEnv }, maxBuffer: 16 << 20 },
        (e, out, err) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err }),
      ),
    );
}
const ok = (r: Run, what = '') => assert.equal(r.code, 0, `${what}: ${r.err}${r.out}`);

/** export the node's certificates into a fresh directory and verify them there */
async function exportAndVerify(kp: (a: string[]) => Promise<Run>, dir: string, store: string, node: string, step: string) {
  const out = `certs-${step}`;
  ok(await kp(['node', 'export', node, '--store', store, '--out', out]), `export ${step}`);
  const v = await kp(['node', 'verify', out]);
  ok(v, `verify after ${step}`);
  return readdirSync(join(dir, out)).filter((f) => f.endsWith('.cert'));
}

describe('node rotate, canton-config and compat on a local store', () => {
  const dir = tempDir();
  const kp = cli(dir);
  const store = `sqlite:${join(dir, 'nodes.db')}`;

  test('rotation keeps old versions usable; node verify passes after every step; serials go up', async () => {
    ok(await kp(['node', 'init', 'p1', '--profile', 'participant', '--store', store]), 'init');
    let certs = await exportAndVerify(kp, dir, store, 'p1', 'init');
    assert.equal(certs.length, 2);
    // a signature and a ciphertext made with the first versions
    writeFileSync(join(dir, 'm'), 'signed before rotation');
    writeFileSync(join(dir, 'secret'), 'encrypted before rotation');
    ok(await kp(['key', 'sign', 'p1-protocol', '--store', store, '--usage', 'protocol', '--in', 'm', '--out', 'm.sig']));
    ok(await kp(['key', 'encrypt', 'p1-encryption', '--store', store, '--in', 'secret', '--out', 'secret.enc']));

    let r = await kp(['node', 'rotate', 'p1', '--role', 'signing', '--store', store, '--json']);
    ok(r, 'rotate signing');
    let j = JSON.parse(r.out) as { rotated: { role: string; toVersion: number }[]; ownerToKeyMappingSerial: number };
    assert.deepEqual(j.rotated.map((x) => x.role).sort(), ['protocol', 'sequencer-auth']);
    assert.equal(j.ownerToKeyMappingSerial, 2);
    certs = await exportAndVerify(kp, dir, store, 'p1', 'signing');
    assert.equal(certs.length, 3);

    r = await kp(['node', 'rotate', 'p1', '--role', 'encryption', '--store', store, '--json']);
    ok(r, 'rotate encryption');
    j = JSON.parse(r.out);
    assert.equal(j.ownerToKeyMappingSerial, 3);
    await exportAndVerify(kp, dir, store, 'p1', 'encryption');

    r = await kp(['node', 'rotate', 'p1', '--store', store, '--json']);
    ok(r, 'rotate all');
    j = JSON.parse(r.out);
    assert.equal(j.rotated.length, 3);
    assert.equal(j.ownerToKeyMappingSerial, 4);
    await exportAndVerify(kp, dir, store, 'p1', 'all');

    // the first versions still verify and decrypt
    ok(await kp(['key', 'verify', 'p1-protocol', '--store', store, '--in', 'm', '--sig', 'm.sig']), 'old signature');
    r = await kp(['key', 'decrypt', 'p1-encryption', '--store', store, '--in', 'secret.enc', '--out', '-']);
    ok(r, 'old ciphertext');
    assert.equal(r.out, 'encrypted before rotation');
    // new signatures come from the newest version
    const v = JSON.parse((await kp(['key', 'versions', 'p1-protocol', '--store', store, '--json'])).out) as unknown[];
    assert.equal(v.length, 3);

    // --to-key-id is for KMS-held keys
    r = await kp(['node', 'rotate', 'p1', '--role', 'protocol', '--to-key-id', 'x', '--store', store]);
    assert.equal(r.code, 1);
    assert.match(r.err, /held by the store, not a KMS/);
    // one key id for two roles is refused
    r = await kp(['node', 'rotate', 'p1', '--role', 'signing', '--to-key-id', 'x', '--store', store]);
    assert.equal(r.code, 2);
    assert.match(r.err, /pick one with --role/);
  });

  test('canton-config and compat of a node whose keys are in the store: jce, with a note', async () => {
    let r = await kp(['node', 'canton-config', 'p1', '--store', store]);
    ok(r);
    assert.match(r.out, /canton\.participants\.p1 \{/);
    assert.match(r.out, /crypto\.provider = jce/);
    assert.match(r.out, /identity\.type = manual/);
    assert.match(r.out, /init_id\(identifier = "p1"/);
    r = await kp(['node', 'compat', 'p1', '--store', store, '--json']);
    ok(r);
    const c = JSON.parse(r.out) as { ok: boolean; nodes: { provider: string }[]; jceConfig: { config: string }[] };
    assert.equal(c.ok, true);
    assert.equal(c.nodes[0]!.provider, 'jce');
    assert.match(c.jceConfig[0]!.config, /provider = jce/);
  });
});

describe('nodes in AWS KMS (moto): rotation to pre-generated keys, canton-config, iam-policy, compat, migrate plans', {
  skip: skipUnless('moto') || skipUnless('awscli'),
}, () => {
  const env = serviceEnv('moto');
  const dir = tempDir();
  const kp = cli(dir);
  const kms = `awskms:region=${env['MOTO_REGION']};endpoint=${env['MOTO_ENDPOINT']};access-key-id=${env['MOTO_ACCESS_KEY_ID']};secret-access-key=${env['MOTO_SECRET_ACCESS_KEY']}`;
  const mk = (spec: string, usage: string) => awsCreateKey(awsCliTarget(env, 'MOTO'), spec, usage, 'KeyMetadata.Arn');
  const name = `px${randomBytes(3).toString('hex')}`;

  test('manual init from AWS CLI keys; rotate to a pre-generated key; config, policy and compat', async () => {
    const ns = mk('ECC_NIST_P256', 'SIGN_VERIFY');
    const sg = mk('ECC_NIST_P256', 'SIGN_VERIFY');
    const en = mk('RSA_2048', 'ENCRYPT_DECRYPT');
    ok(
      await kp([
        'node',
        'init',
        name,
        '--profile',
        'participant',
        '--store',
        kms,
        '--namespace-key-id',
        ns,
        '--signing-key-id',
        sg,
        '--encryption-key-id',
        en,
      ]),
      'manual init',
    );
    await exportAndVerify(kp, dir, kms, name, 'init');

    // the policy: the key actions on exactly these three ARNs; nothing is created (all registered by ARN)
    let r = await kp(['node', 'iam-policy', name, '--store', kms]);
    ok(r, 'iam-policy');
    let policy = JSON.parse(r.out) as { Statement: { Action: string[]; Resource: string | string[] }[] };
    assert.equal(policy.Statement.length, 1);
    assert.deepEqual([...policy.Statement[0]!.Action].sort(), ['kms:Decrypt', 'kms:DescribeKey', 'kms:GetPublicKey', 'kms:Sign']);
    assert.deepEqual(policy.Statement[0]!.Resource, [ns, sg, en].sort());

    r = await kp(['node', 'canton-config', name, '--store', kms, '--cert-dir', 'certs']);
    ok(r, 'canton-config');
    assert.match(r.out, new RegExp(`canton\\.participants\\.${name} \\{`));
    assert.match(r.out, /crypto\.provider = kms/);
    assert.match(r.out, /type = aws/);
    assert.match(r.out, new RegExp(`region = "${env['MOTO_REGION']}"`));
    assert.match(r.out, /generate-topology-transactions-and-keys = false/);
    assert.match(r.out, new RegExp(`register_kms_signing_key\\("${ns}", SigningKeyUsage\\.NamespaceOnly`));
    assert.match(r.out, new RegExp(`register_kms_encryption_key\\("${en}"`));
    assert.doesNotMatch(r.out, /secret-access-key|MOTO|testing/i, 'no credentials in what the operator pastes');

    // the catalog keeps only which KMS: the region Canton needs comes from a configured connection, never guessed
    const { defaultCatalog } = await import('../../src/keys/open.js');
    const home = process.env['KEYPORT_HOME'];
    process.env['KEYPORT_HOME'] = join(dir, 'home');
    const catalog = defaultCatalog(kms);
    if (home === undefined) delete process.env['KEYPORT_HOME'];
    else process.env['KEYPORT_HOME'] = home;
    r = await kp(['node', 'canton-config', name, '--store', catalog]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /no connection to it is configured: .*--kms 'awskms:…'/);
    r = await kp(['node', 'canton-config', name, '--store', catalog, '--kms', kms]);
    ok(r, 'canton-config with --kms');
    assert.match(r.out, new RegExp(`region = "${env['MOTO_REGION']}"`));
    // doctor's node checks reach the node's keys through the same --kms connection as its store checks
    r = await kp(['doctor', catalog, '--kms', kms, '--json']);
    const nodeKeys = (JSON.parse(r.out) as { checks: { check: string; status: string; detail: string }[] }).checks.filter((c) =>
      c.check.startsWith(`node ${name} `),
    );
    assert.ok(nodeKeys.length >= 3, r.out);
    // every key was reached (none 'not-checked: no connection'); the signing keys probe clean (moto's RSA
    // decryption is its own format, so the encryption key's probe is not asserted here)
    for (const c of nodeKeys) assert.notEqual(c.status, 'not-checked', `${c.check}: ${c.detail}`);
    for (const c of nodeKeys.filter((k) => !k.check.endsWith(' encryption key'))) assert.equal(c.status, 'ok', `${c.check}: ${c.detail}`);

    // a signature by the first signing key, to check after the rotation
    const shown = JSON.parse((await kp(['node', 'show', name, '--store', kms, '--json'])).out) as { keys: { role: string; key: string }[] };
    const signingKey = shown.keys.find((k) => k.role === 'signing')!.key;
    writeFileSync(join(dir, 'before'), 'signed by the first signing key');
    ok(
      await kp(['key', 'sign', signingKey, '--store', kms, '--usage', 'protocol', '--in', 'before', '--out', 'before.sig']),
      'sign before',
    );

    // rotate the signing key to a pre-generated one; a wrong kind is refused and changes nothing
    const rsaSign = mk('RSA_2048', 'SIGN_VERIFY');
    r = await kp(['node', 'rotate', name, '--role', 'signing', '--to-key-id', rsaSign, '--store', kms]);
    assert.equal(r.code, 1);
    assert.match(r.err, /RSA_2048 with KeyUsage SIGN_VERIFY/);
    const next = mk('ECC_NIST_P256', 'SIGN_VERIFY');
    r = await kp(['node', 'rotate', name, '--role', 'signing', '--to-key-id', next, '--store', kms, '--json']);
    ok(r, 'rotate to pre-generated');
    assert.equal((JSON.parse(r.out) as { ownerToKeyMappingSerial: number }).ownerToKeyMappingSerial, 2);
    await exportAndVerify(kp, dir, kms, name, 'to-key-id');
    // the old signature still verifies (by keyport and by openssl with the first version's public key), and
    // new signatures come from the pre-generated key
    ok(await kp(['key', 'verify', signingKey, '--store', kms, '--in', 'before', '--sig', 'before.sig']), 'old signature after rotation');
    const versions = JSON.parse((await kp(['key', 'versions', signingKey, '--store', kms, '--json'])).out) as { publicKey: string }[];
    assert.equal(versions.length, 2);
    const pem = (b64: string) => `-----BEGIN PUBLIC KEY-----\n${b64.match(/.{1,64}/g)!.join('\n')}\n-----END PUBLIC KEY-----\n`;
    writeFileSync(join(dir, 'v1.pem'), pem(versions[0]!.publicKey));
    const o = spawnSync('openssl', ['dgst', '-sha256', '-verify', 'v1.pem', '-signature', 'before.sig', 'before'], {
      cwd: dir,
      encoding: 'utf8',
    });
    assert.match(o.stdout, /Verified OK/, o.stderr);
    const nextPub = awsKms(awsCliTarget(env, 'MOTO'), ['get-public-key', '--key-id', next, '--query', 'PublicKey']);
    assert.equal(versions[1]!.publicKey, nextPub, 'the new version is the pre-generated KMS key');
    // the policy follows the node's current keys
    policy = JSON.parse((await kp(['node', 'iam-policy', name, '--store', kms])).out);
    assert.ok((policy.Statement[0]!.Resource as string[]).includes(next));

    // a new encryption key made in the KMS: the policy now allows creating keys of the node's specs
    ok(await kp(['node', 'rotate', name, '--role', 'encryption', '--store', kms]), 'rotate encryption in the KMS');
    await exportAndVerify(kp, dir, kms, name, 'encryption');
    policy = JSON.parse((await kp(['node', 'iam-policy', name, '--store', kms])).out);
    assert.equal(policy.Statement.length, 2);
    assert.deepEqual(policy.Statement[1]!.Action, ['kms:CreateKey', 'kms:TagResource']);

    // compat: the KMS node against a local node that uses Ed25519 keys
    const local = `sqlite:${join(dir, 'local.db')}`;
    ok(await kp(['node', 'init', 'edp', '--profile', 'participant', '--signing-spec', 'ed25519', '--store', local]));
    ok(await kp(['node', 'init', 'okp', '--profile', 'mediator', '--store', `sqlite:${join(dir, 'local2.db')}`]));
    r = await kp(['node', 'compat', name, '--store', kms, '--peer', local, '--json']);
    assert.equal(r.code, 1);
    const c = JSON.parse(r.out) as { ok: boolean; problems: string[]; nodes: { node: string; provider: string }[] };
    assert.equal(c.ok, false);
    assert.match(c.problems.join('\n'), /edp \(jce\) uses ed25519 signing/);
    assert.equal(c.nodes.find((n) => n.node === name)!.provider, 'kms');
    r = await kp(['node', 'compat', name, '--store', kms, '--peer', `sqlite:${join(dir, 'local2.db')}`]);
    ok(r, 'compat with a P-256 jce mediator');
    assert.match(r.out, /canton\.mediators\.okp\.crypto \{/);
    assert.match(r.out, /signing\.keys \{ default = ec-p-256, allowed = \[ec-p-256\] \}/);
    assert.match(r.out, /tink is incompatible/);

    // migrate plan: the Ed25519 node keys cannot be Canton KMS keys in AWS KMS: refused up front, before any key moves
    r = await kp(['migrate', '--from', local, '--to', kms, '--rekey', '--dry-run', '--json']);
    const plan = JSON.parse(r.out) as {
      refused?: { name: string; reason: string }[];
      summary?: { refused: { name: string; reason: string }[] };
    };
    const refused = plan.refused ?? plan.summary?.refused ?? [];
    assert.ok(
      refused.some((x) => /edp-namespace/.test(x.name) && /ed25519/.test(x.reason)),
      `plan: ${r.out}${r.err}`,
    );
  });
});

describe('a node run with exactly Canton six AWS actions (moto with IAM enforced)', {
  skip: skipUnless('motoauth') || skipUnless('awscli'),
}, () => {
  const env = serviceEnv('motoauth');
  const dir = tempDir();
  const kp = cli(dir);
  const kms = `awskms:region=${env['MOTOAUTH_REGION']};endpoint=${env['MOTOAUTH_ENDPOINT']};access-key-id=${env['MOTOAUTH_CANTON_ACCESS_KEY_ID']};secret-access-key=${env['MOTOAUTH_CANTON_SECRET_ACCESS_KEY']}`;
  // keys pre-generated by an administrator of the account
  const admin = {
    ...awsCliTarget(env, 'MOTOAUTH'),
    accessKeyId: env['MOTOAUTH_ADMIN_ACCESS_KEY_ID']!,
    secretAccessKey: env['MOTOAUTH_ADMIN_SECRET_ACCESS_KEY']!,
  };
  const mk = (spec: string, usage: string) => awsCreateKey(admin, spec, usage, 'KeyMetadata.Arn');
  const name = `med${randomBytes(3).toString('hex')}`;

  test('manual init with pre-generated keys, signing, rotation and a clean doctor', async () => {
    assert.ok(env['MOTOAUTH_CANTON_USER'], 'motoauth has the six-action user');
    // keys pre-generated by an administrator with the AWS CLI
    const ns = mk('ECC_NIST_P256', 'SIGN_VERIFY');
    const sg = mk('ECC_NIST_P384', 'SIGN_VERIFY');
    ok(await kp(['node', 'init', name, '--profile', 'mediator', '--store', kms, '--namespace-key-id', ns, '--signing-key-id', sg]), 'init');
    await exportAndVerify(kp, dir, kms, name, 'init');
    const show = JSON.parse((await kp(['node', 'show', name, '--store', kms, '--json'])).out) as { keys: { role: string; key: string }[] };
    const signing = show.keys.find((k) => k.role === 'signing')!.key;
    writeFileSync(join(dir, 'm'), 'a mediator signs');
    ok(await kp(['key', 'sign', signing, '--store', kms, '--usage', 'protocol', '--in', 'm', '--out', 'm.sig']), 'sign');
    ok(await kp(['key', 'verify', signing, '--store', kms, '--in', 'm', '--sig', 'm.sig']), 'verify');

    let r = await kp(['doctor', kms, '--json']);
    let rep = JSON.parse(r.out) as { ok: boolean; checks: { check: string; status: string; detail: string }[] };
    assert.deepEqual(
      rep.checks.filter((c) => c.status === 'problem'),
      [],
    );
    assert.equal(r.code, 0);
    for (const p of ['kms:DescribeKey', 'kms:GetPublicKey', 'kms:Sign'])
      assert.equal(rep.checks.find((c) => c.check === `node permission ${p}`)?.status, 'ok', p);
    // ListKeys is not among the six: a warning, not a problem
    assert.equal(rep.checks.find((c) => c.check === 'permission kms:ListKeys')?.status, 'warning');

    // a rotation that creates a key: CreateKey + TagResource are enough (no kms:CreateAlias, no orphan)
    r = await kp(['node', 'rotate', name, '--role', 'signing', '--store', kms, '--json']);
    ok(r, 'rotate with CreateKey+TagResource only');
    await exportAndVerify(kp, dir, kms, name, 'rotated');
    ok(
      await kp(['key', 'sign', signing, '--store', kms, '--usage', 'protocol', '--in', 'm', '--out', 'm2.sig']),
      'sign with the new version',
    );
    r = await kp(['doctor', kms, '--json']);
    rep = JSON.parse(r.out);
    assert.deepEqual(
      rep.checks.filter((c) => c.status === 'problem'),
      [],
    );
  });
});

describe('a rotation that fails half-way (moto behind the quota injector: the second CreateKey is throttled)', {
  skip: skipUnless('moto'),
}, () => {
  const env = serviceEnv('moto');
  const dir = tempDir();
  // the deadline bounds how long keyport waits out the throttling before it gives up
  const kp = cli(dir, { KEYPORT_KMS_DEADLINE_MS: '3000' });
  const name = `half${randomBytes(3).toString('hex')}`;
  let closeInjector: (() => Promise<void>) | undefined;
  after(async () => closeInjector?.());

  test('the keys that rotated are recorded with a new mapping; the error says which failed and how to finish', async () => {
    const inj = await startInjector(env['MOTO_ENDPOINT']!);
    closeInjector = () => inj.close();
    const kms = `awskms:region=${env['MOTO_REGION']};endpoint=${inj.endpoint};access-key-id=${env['MOTO_ACCESS_KEY_ID']};secret-access-key=${env['MOTO_SECRET_ACCESS_KEY']}`;
    ok(await kp(['node', 'init', name, '--profile', 'participant', '--store', kms]), 'init');
    await exportAndVerify(kp, dir, kms, name, 'init');
    type Shown = { keys: { role: string; key: string; version: number; fingerprint: string }[]; topology: string[] };
    const before = JSON.parse((await kp(['node', 'show', name, '--store', kms, '--json'])).out) as Shown;

    // one CreateKey left in the account's quota, none refilled: sequencer-auth rotates, protocol cannot
    inj.configure({ buckets: [{ ops: ['CreateKey'], rate: 0.0001, burst: 1 }] });
    let r = await kp(['node', 'rotate', name, '--role', 'signing', '--store', kms]);
    assert.equal(r.code, 1, r.out + r.err);
    assert.equal(r.err.trim().split('\n').length, 1, r.err);
    assert.match(r.err, new RegExp(`node '${name}' is partly rotated: rotating its protocol key '${name}-protocol[^']*' failed`));
    assert.match(r.err, /sequencer-auth key '[^']+' v1 -> v2 was rotated and recorded with a new OwnerToKeyMapping \(serial 2\)/);
    assert.match(r.err, new RegExp(`finish with: keyport node rotate ${name} --role protocol`));
    assert.ok(inj.stats().ops['CreateKey']!.throttled > 0, 'the injector throttled CreateKey');

    // the record matches the keyring: sequencer-auth at v2, protocol still at v1, and the node verifies
    const mid = JSON.parse((await kp(['node', 'show', name, '--store', kms, '--json'])).out) as Shown;
    const v = (n: Shown, role: string) => n.keys.find((k) => k.role === role)!;
    assert.equal(v(mid, 'sequencer-auth').version, 2);
    assert.notEqual(v(mid, 'sequencer-auth').fingerprint, v(before, 'sequencer-auth').fingerprint);
    assert.deepEqual(v(mid, 'protocol'), v(before, 'protocol'));
    assert.equal(mid.topology.length, before.topology.length + 1);
    await exportAndVerify(kp, dir, kms, name, 'half');

    // the quota is back: finishing as told completes the rotation
    inj.configure({});
    r = await kp(['node', 'rotate', name, '--role', 'protocol', '--store', kms, '--json']);
    ok(r, 'finish');
    assert.equal((JSON.parse(r.out) as { ownerToKeyMappingSerial: number }).ownerToKeyMappingSerial, 3);
    await exportAndVerify(kp, dir, kms, name, 'finished');
    const end = JSON.parse((await kp(['node', 'show', name, '--store', kms, '--json'])).out) as Shown;
    assert.equal(v(end, 'protocol').version, 2);
    assert.equal(v(end, 'sequencer-auth').version, 2);
  });
});

describe('cross-account keys registered by ARN: Canton four key actions are enough (moto with IAM enforced)', {
  skip: skipUnless('motoauth') || skipUnless('awscli'),
}, () => {
  const env = serviceEnv('motoauth');
  const dir = tempDir();
  const kp = cli(dir);
  const kms = `awskms:region=${env['MOTOAUTH_REGION']};endpoint=${env['MOTOAUTH_ENDPOINT']};access-key-id=${env['MOTOAUTH_XACCT_ACCESS_KEY_ID']};secret-access-key=${env['MOTOAUTH_XACCT_SECRET_ACCESS_KEY']}`;
  // keys pre-generated by an administrator of the account
  const admin = {
    ...awsCliTarget(env, 'MOTOAUTH'),
    accessKeyId: env['MOTOAUTH_ADMIN_ACCESS_KEY_ID']!,
    secretAccessKey: env['MOTOAUTH_ADMIN_SECRET_ACCESS_KEY']!,
  };
  const mk = (spec: string, usage: string) => awsCreateKey(admin, spec, usage, 'KeyMetadata.Arn');
  const name = `xa${randomBytes(3).toString('hex')}`;

  test('init, sign, a clean doctor that asks no CreateKey/TagResource/ListKeys, a policy without them; a rotation that would create is refused and changes nothing', async () => {
    assert.ok(env['MOTOAUTH_XACCT_USER'], 'motoauth has the four-action user');
    // the keys' owner (another account in real life) makes them; the node's identity may only use them
    const ns = mk('ECC_NIST_P256', 'SIGN_VERIFY');
    const sg = mk('ECC_NIST_P256', 'SIGN_VERIFY');
    ok(await kp(['node', 'init', name, '--profile', 'mediator', '--store', kms, '--namespace-key-id', ns, '--signing-key-id', sg]), 'init');
    await exportAndVerify(kp, dir, kms, name, 'init');
    const shown = JSON.parse((await kp(['node', 'show', name, '--store', kms, '--json'])).out) as { keys: { role: string; key: string }[] };
    const signing = shown.keys.find((k) => k.role === 'signing')!.key;
    writeFileSync(join(dir, 'm'), 'signed with a key of another account');
    ok(await kp(['key', 'sign', signing, '--store', kms, '--usage', 'protocol', '--in', 'm', '--out', 'm.sig']), 'sign');

    const r = await kp(['doctor', kms, '--json']);
    const rep = JSON.parse(r.out) as { checks: { check: string; status: string; detail: string }[] };
    assert.deepEqual(
      rep.checks.filter((c) => c.status === 'problem'),
      [],
    );
    assert.equal(r.code, 0, r.out);
    assert.equal(rep.checks.find((c) => c.check === 'node permission kms:CreateKey, kms:TagResource')?.status, 'info');
    for (const p of ['kms:DescribeKey', 'kms:GetPublicKey', 'kms:Sign'])
      assert.equal(rep.checks.find((c) => c.check === `node permission ${p}`)?.status, 'ok', p);

    const policy = JSON.parse((await kp(['node', 'iam-policy', name, '--store', kms])).out) as {
      Statement: { Action: string[]; Resource: string[] }[];
    };
    assert.equal(policy.Statement.length, 1);
    assert.ok(!policy.Statement[0]!.Action.some((a) => /CreateKey|TagResource|List/.test(a)), JSON.stringify(policy));
    assert.deepEqual([...policy.Statement[0]!.Resource].sort(), [ns, sg].sort());

    // a rotation that must create a key cannot here: refused in one line, the node as it was
    const before = (await kp(['node', 'show', name, '--store', kms, '--json'])).out;
    const rot = await kp(['node', 'rotate', name, '--role', 'signing', '--store', kms]);
    assert.equal(rot.code, 1, rot.out + rot.err);
    assert.equal(rot.err.trim().split('\n').length, 1, rot.err);
    assert.match(rot.err, /CreateKey/);
    assert.equal((await kp(['node', 'show', name, '--store', kms, '--json'])).out, before);
  });
});
