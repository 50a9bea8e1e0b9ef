/**
 * `keyport node …` through the CLI, as an operator runs it: every profile in the local store, in AWS KMS
 * (moto) and on PKCS#11 tokens (SoftHSM2, kryoptic); manual init from keys pre-generated with the AWS CLI and
 * pkcs11-tool; export, verification by keyport and by the independent peer + openssl; delegation to a KMS key,
 * revocation; the offline-root ceremony with the root key in an HSM; identity bundles.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { readFileSync, readdirSync, writeFileSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { ROOT, skipUnless, serviceEnv, awsCliTarget, awsCreateKey, awsKms } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';
import { peerDecode } from '../support/canton.js';

type Run = { code: number; out: string; err: string };

function cli(dir: string, extraEnv: Record<string, string> = {}) {
  return (args: string[]) =>
    new Promise<Run>((resolve) =>
      execFile(
        process.execPath,
        [join(ROOT, 'bin/keyport.js'), ...args],
        { cwd: dir, env: { ...process.env, KEYPORT_HOME: join(dir, 'home'), KEYPORT_STORE: '', ...extraEnv } },
        (e, out, err) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err }),
      ),
    );
}

async function ok(kp: (a: string[]) => Promise<Run>, args: string[]): Promise<Run> {
  const r = await kp(args);
  assert.equal(r.code, 0, `keyport ${args.join(' ')}: ${r.err}`);
  return r;
}

/** one-line refusal with exit code `code` */
async function refused(kp: (a: string[]) => Promise<Run>, args: string[], code: number, msg: RegExp): Promise<void> {
  const r = await kp(args);
  assert.equal(r.code, code, `expected exit ${code}: ${r.out}${r.err}`);
  // commander adds its usual '(run with --help for usage)' after a usage error
  assert.equal(
    r.err
      .trim()
      .split('\n')
      .filter((l) => !l.startsWith('(run with --help')).length,
    1,
    r.err,
  );
  assert.match(r.err, msg);
}

interface NodeJson {
  name: string;
  profile: string;
  id: string;
  namespace: string;
  manualInit: boolean;
  keys: { role: string; key: string; type: string; usage: string[]; fingerprint: string; origin: string }[];
  topology: string[];
}

const PROFILES = ['participant', 'sequencer', 'mediator', 'synchronizer-manager'] as const;
const ROLES: Record<string, string[]> = {
  participant: ['namespace', 'sequencer-auth', 'protocol', 'encryption'],
  sequencer: ['namespace', 'sequencer-auth', 'protocol'],
  mediator: ['namespace', 'sequencer-auth', 'protocol'],
  'synchronizer-manager': ['namespace', 'sequencer-auth', 'protocol', 'encryption'],
};
const MEMBER: Record<string, string | undefined> = { participant: 'PAR', sequencer: 'SEQ', mediator: 'MED' };

/** init every profile, check keys and ids, export, verify with keyport and with the peer + openssl */
async function everyProfile(
  kp: (a: string[]) => Promise<Run>,
  dir: string,
  store: string,
  run: string,
  expect: { external: boolean; encryption?: boolean },
) {
  const made: NodeJson[] = [];
  for (const profile of PROFILES) {
    const name = `${profile.slice(0, 4)}-${run}`;
    const withEnc = ROLES[profile]!.includes('encryption');
    if (withEnc && expect.encryption === false) {
      await refused(kp, ['node', 'init', name, '--profile', profile, '--store', store], 1, /encryption key/);
      const show = await kp(['node', 'show', name, '--store', store]);
      assert.equal(show.code, 1, 'a refused node is not recorded');
      continue;
    }
    const n = JSON.parse((await ok(kp, ['node', 'init', name, '--profile', profile, '--store', store, '--json'])).out) as NodeJson;
    made.push(n);
    assert.equal(n.profile, profile);
    assert.deepEqual(
      n.keys.map((k) => k.role),
      ROLES[profile],
    );
    const ns = n.keys.find((k) => k.role === 'namespace')!;
    assert.equal(n.namespace, ns.fingerprint);
    assert.equal(n.id, `${name}::${ns.fingerprint}`);
    assert.deepEqual(ns.usage, ['namespace']);
    assert.deepEqual(n.keys.find((k) => k.role === 'protocol')!.usage, ['protocol']);
    assert.deepEqual(n.keys.find((k) => k.role === 'sequencer-auth')!.usage, ['sequencer-auth']);
    for (const k of n.keys) {
      assert.ok(k.key.startsWith(`${name}-${k.role}`), k.key);
      const d = JSON.parse((await ok(kp, ['key', 'describe', k.key, '--store', store, '--json'])).out);
      assert.equal(d.protection, expect.external ? 'external' : 'clear');
      assert.equal(d.fingerprint, k.fingerprint);
    }
    const out = join(dir, `export-${name}`);
    await ok(kp, ['node', 'export', name, '--store', store, '--out', out]);
    const v = JSON.parse((await ok(kp, ['node', 'verify', out, '--json'])).out);
    assert.ok(v.ok);
    assert.deepEqual(v.namespaces, [n.namespace]);
    const files = readdirSync(out)
      .filter((f) => f.endsWith('.cert'))
      .sort();
    const peer = peerDecode(files.map((f) => join(out, f)));
    assert.equal(peer[0]!.kind, 'namespace_delegation');
    assert.equal(peer[0]!.target, n.namespace);
    assert.equal(peer[0]!.restriction, 'can_sign_all_mappings');
    if (MEMBER[profile]) {
      const otk = peer.find((p) => p.kind === 'owner_to_key_mapping')!;
      assert.equal(otk.member, `${MEMBER[profile]}::${n.id}`);
      assert.deepEqual(
        otk.mapped!.map((m) => m.fingerprint),
        n.keys.filter((k) => k.role !== 'namespace').map((k) => k.fingerprint),
      );
      // namespace + proof of ownership of both signing keys
      assert.deepEqual(
        new Set(otk.signatures.map((s) => s.signed_by)),
        new Set(n.keys.filter((k) => k.role !== 'encryption').map((k) => k.fingerprint)),
      );
    }
  }
  const ls = JSON.parse((await ok(kp, ['node', 'ls', '--store', store, '--json'])).out) as { name: string; id: string }[];
  for (const n of made) assert.ok(ls.some((x) => x.name === n.name && x.id === n.id));
  return made;
}

describe('node in the local store', () => {
  const dir = tempDir();
  const kp = cli(dir);
  const store = `sqlite:${join(dir, 'keys.db')}`;

  test('every profile: keys with Canton usages, node id, export that verifies (keyport, peer decoder, openssl)', {
    skip: skipUnless('canton-peer'),
  }, async () => {
    await everyProfile(kp, dir, store, 'loc', { external: false });
    const show = await ok(kp, ['node', 'show', 'part-loc', '--store', store]);
    assert.match(show.out, /Id\s+part-loc::1220[0-9a-f]{64}/);
  });

  test('sequencer and mediator in a synchronizer manager namespace; one signing key; Ed25519', {
    skip: skipUnless('canton-peer'),
  }, async () => {
    const dm = JSON.parse(
      (await ok(kp, ['node', 'init', 'dm1', '--profile', 'synchronizer-manager', '--store', store, '--signing-spec', 'ed25519', '--json']))
        .out,
    ) as NodeJson;
    assert.ok(dm.keys.every((k) => k.role === 'encryption' || k.type === 'ed25519'));
    const med = JSON.parse(
      (
        await ok(kp, [
          'node',
          'init',
          'med1',
          '--profile',
          'mediator',
          '--store',
          store,
          '--namespace-of',
          'dm1',
          '--single-signing-key',
          '--json',
        ])
      ).out,
    ) as NodeJson;
    assert.equal(med.namespace, dm.namespace);
    assert.deepEqual(
      med.keys.map((k) => [k.role, k.usage]),
      [['signing', ['sequencer-auth', 'protocol']]],
    );
    const out = join(dir, 'med1');
    await ok(kp, ['node', 'export', 'med1', '--store', store, '--out', out]);
    await ok(kp, ['node', 'verify', out]);
    const peer = peerDecode([join(out, 'identity.certs')]);
    assert.equal(peer[0]!.target, dm.namespace);
    assert.deepEqual(peer[1]!.mapped![0]!.usage, [3, 4, 5]);
    assert.equal(peer[1]!.member, `MED::med1::${dm.namespace}`);
  });

  test('delegation and revocation: chain verifies; a tampered certificate or a missing root does not', {
    skip: skipUnless('canton-peer'),
  }, async () => {
    await ok(kp, ['node', 'init', 'p2', '--profile', 'participant', '--store', store]);
    await ok(kp, ['key', 'create', 'p2-intermediate', '--type', 'ec-p384', '--usage', 'namespace', '--store', store]);
    await ok(kp, [
      'node',
      'delegate',
      '--namespace-of',
      'p2',
      '--to-key',
      'p2-intermediate',
      '--restriction',
      'all-but-namespace-delegations',
      '--store',
      store,
      '--out',
      join(dir, 'd.cert'),
    ]);
    await ok(kp, [
      'node',
      'delegate',
      '--namespace-of',
      'p2',
      '--to-key',
      'p2-intermediate',
      '--revoke',
      '--store',
      store,
      '--out',
      join(dir, 'r.cert'),
    ]);
    await refused(
      kp,
      ['node', 'delegate', '--namespace-of', 'p2', '--to-key', 'p2-intermediate', '--revoke', '--store', store],
      1,
      /no delegation .* in force/,
    );
    const out = join(dir, 'p2');
    await ok(kp, ['node', 'export', 'p2', '--store', store, '--out', out]);
    const v = JSON.parse((await ok(kp, ['node', 'verify', out, '--json'])).out);
    assert.deepEqual(
      v.transactions.map((t: { kind: string; operation: string; serial: number }) => [t.kind, t.operation, t.serial]),
      [
        ['namespace-delegation', 'add', 1],
        ['owner-to-key-mapping', 'add', 1],
        ['namespace-delegation', 'add', 1],
        ['namespace-delegation', 'remove', 2],
      ],
    );
    assert.equal(v.delegations.length, 1, 'only the root remains in force');
    const peer = peerDecode(
      readdirSync(out)
        .filter((f) => f.endsWith('.cert'))
        .sort()
        .map((f) => join(out, f)),
    );
    assert.equal(peer[2]!.restriction, 'can_sign_all_but_namespace_delegations');
    assert.equal(peer[3]!.operation, 2);
    // tampering: one flipped byte in the OTK
    const f = join(out, readdirSync(out).find((x) => x.startsWith('02-'))!);
    const b = readFileSync(f);
    b[b.length - 20]! ^= 1;
    writeFileSync(f, b);
    const bad = await kp(['node', 'verify', out]);
    assert.equal(bad.code, 1);
    assert.match(bad.out, /FAIL/);
    // a delegation without its root
    const alone = await kp(['node', 'verify', join(dir, 'd.cert')]);
    assert.equal(alone.code, 1);
    assert.match(alone.out, /not authorized by namespace/);
  });

  test('identity bundle: export from one store, import into another, same identity', async () => {
    await ok(kp, ['node', 'init', 'seq9', '--profile', 'sequencer', '--store', store]);
    const bundle = join(dir, 'seq9.bundle.json');
    await ok(kp, ['node', 'export', 'seq9', '--store', store, '--bundle', bundle]);
    assert.equal(statSync(bundle).mode & 0o777, 0o600);
    const other = `sqlite:${join(dir, 'other.db')}`;
    const n = JSON.parse((await ok(kp, ['node', 'import', bundle, '--store', other, '--json'])).out) as NodeJson;
    const orig = JSON.parse((await ok(kp, ['node', 'show', 'seq9', '--store', store, '--json'])).out) as NodeJson;
    assert.equal(n.id, orig.id);
    assert.deepEqual(
      n.keys.map((k) => k.fingerprint),
      orig.keys.map((k) => k.fingerprint),
    );
    // the imported keys sign: a new export verifies
    await ok(kp, ['node', 'export', 'seq9', '--store', other, '--out', join(dir, 'seq9-other')]);
    await ok(kp, ['node', 'verify', join(dir, 'seq9-other')]);
    await refused(kp, ['node', 'import', bundle, '--store', other], 1, /already exists/);
  });

  test('bad input: one line and the right exit code', async () => {
    await refused(kp, ['node', 'init', 'x1', '--profile', 'banker', '--store', store], 2, /profile/);
    await refused(
      kp,
      ['node', 'init', 'x1', '--profile', 'participant', '--store', store, '--signing-spec', 'rsa-2048'],
      2,
      /needs a signing key/,
    );
    await refused(
      kp,
      ['node', 'init', 'x1', '--profile', 'participant', '--store', store, '--encryption-spec', 'ec-p384'],
      2,
      /encryption/,
    );
    await refused(kp, ['node', 'init', 'x1', '--profile', 'participant', '--store', store, '--signing-key-id', 'abc'], 2, /KMS/);
    await refused(kp, ['node', 'show', 'nope', '--store', store], 1, /not found/);
    await refused(kp, ['node', 'verify', join(dir, 'no-such-dir')], 2, /no such file/);
    writeFileSync(join(dir, 'junk.cert'), 'not a certificate');
    await refused(kp, ['node', 'verify', join(dir, 'junk.cert')], 1, /Canton/);
    await ok(kp, ['node', 'init', 'dup', '--profile', 'mediator', '--store', store]);
    await refused(kp, ['node', 'init', 'dup', '--profile', 'mediator', '--store', store], 1, /already exists/);
    // read-only commands never create a store
    await refused(kp, ['node', 'ls', '--store', `sqlite:${join(dir, 'absent', 'k.db')}`], 1, /./);
  });
});

describe('node in AWS KMS (moto)', { skip: skipUnless('moto') || skipUnless('canton-peer') || skipUnless('awscli') }, () => {
  const env = serviceEnv('moto');
  const dir = tempDir();
  const kms = `awskms:region=${env['MOTO_REGION']};endpoint=${env['MOTO_ENDPOINT']};access-key-id=${env['MOTO_ACCESS_KEY_ID']};secret-access-key=${env['MOTO_SECRET_ACCESS_KEY']}`;
  const kp = cli(dir);
  const run = randomBytes(3).toString('hex');
  const aws = (args: string[]): string => awsKms(awsCliTarget(env, 'MOTO'), args);
  const createKey = (spec: string, usage: string) => awsCreateKey(awsCliTarget(env, 'MOTO'), spec, usage);
  test('every profile: keys made and used inside the KMS, signatures verify outside', async () => {
    await everyProfile(kp, dir, kms, run, { external: true });
  });

  test('two catalogs sharing one AWS account init the same node name without colliding', async () => {
    const other = cli(dir, { KEYPORT_HOME: join(dir, 'home2') });
    const a = JSON.parse(
      (await ok(kp, ['node', 'init', `twin-${run}`, '--profile', 'mediator', '--store', kms, '--json'])).out,
    ) as NodeJson;
    const b = JSON.parse(
      (await ok(other, ['node', 'init', `twin-${run}`, '--profile', 'mediator', '--store', kms, '--json'])).out,
    ) as NodeJson;
    assert.notEqual(a.namespace, b.namespace);
    const aliases = aws(['list-aliases', '--query', 'Aliases[].AliasName']).split(/\s+/);
    for (const k of [...a.keys, ...b.keys]) assert.ok(aliases.includes(`alias/${k.key}`), k.key);
  });

  test('manual init from keys pre-generated with the AWS CLI (auto-init off)', async () => {
    const ns = createKey('ECC_NIST_P256', 'SIGN_VERIFY');
    const sig = createKey('ECC_NIST_P384', 'SIGN_VERIFY');
    const seq = createKey('ECC_NIST_P256', 'SIGN_VERIFY');
    const enc = createKey('RSA_2048', 'ENCRYPT_DECRYPT');
    const n = JSON.parse(
      (
        await ok(kp, [
          'node',
          'init',
          `man-${run}`,
          '--profile',
          'participant',
          '--store',
          kms,
          '--json',
          '--namespace-key-id',
          ns,
          '--signing-key-id',
          sig,
          '--sequencer-auth-key-id',
          seq,
          '--encryption-key-id',
          enc,
        ])
      ).out,
    ) as NodeJson;
    assert.equal(n.manualInit, true);
    assert.ok(n.keys.every((k) => k.origin === 'registered'));
    // no key generated: each node key is the pre-generated KMS key of its role (same public key), and no key
    // keyport would have made (alias/NODE-ROLE…) exists. Only this node's own names are looked at: other
    // test files create keys in the same moto account at the same time.
    const pre: Record<string, string> = { namespace: ns, protocol: sig, 'sequencer-auth': seq, encryption: enc };
    for (const k of n.keys) {
      const d = JSON.parse((await ok(kp, ['key', 'describe', k.key, '--store', kms, '--json'])).out) as { publicKey: string };
      assert.equal(
        d.publicKey,
        aws(['get-public-key', '--key-id', pre[k.role]!, '--query', 'PublicKey']),
        `${k.role} is the pre-generated key`,
      );
    }
    const made = aws(['list-aliases', '--query', 'Aliases[].AliasName'])
      .split(/\s+/)
      .filter((a) => a.startsWith(`alias/man-${run}`));
    assert.deepEqual(made, [], 'no key generated');
    assert.deepEqual(
      n.keys.map((k) => [k.role, k.type]),
      [
        ['namespace', 'ec-p256'],
        ['sequencer-auth', 'ec-p256'],
        ['protocol', 'ec-p384'],
        ['encryption', 'rsa-2048'],
      ],
    );
    const out = join(dir, 'man');
    await ok(kp, ['node', 'export', `man-${run}`, '--store', kms, '--out', out]);
    await ok(kp, ['node', 'verify', out]);
    peerDecode([join(out, 'identity.certs')]);
    // one signing key for both usages, by alias
    aws(['create-alias', '--alias-name', `alias/pre-${run}`, '--target-key-id', createKey('ECC_NIST_P256', 'SIGN_VERIFY')]);
    const m = JSON.parse(
      (
        await ok(kp, [
          'node',
          'init',
          `man2-${run}`,
          '--profile',
          'mediator',
          '--store',
          kms,
          '--json',
          '--namespace-key-id',
          createKey('ECC_NIST_P384', 'SIGN_VERIFY'),
          '--signing-key-id',
          `alias/pre-${run}`,
        ])
      ).out,
    ) as NodeJson;
    assert.deepEqual(
      m.keys.map((k) => [k.role, k.usage]),
      [
        ['namespace', ['namespace']],
        ['signing', ['sequencer-auth', 'protocol']],
      ],
    );
  });

  test('manual init refuses keys that cannot play their role, and records nothing', async () => {
    const p256 = () => createKey('ECC_NIST_P256', 'SIGN_VERIFY');
    const rsaEnc = () => createKey('RSA_2048', 'ENCRYPT_DECRYPT');
    const cases: { label: string; ns: string; sig: string; enc: string; msg: RegExp }[] = [
      { label: 'enc-p256', ns: p256(), sig: p256(), enc: p256(), msg: /ECC_NIST_P256 with KeyUsage SIGN_VERIFY.*encryption/ },
      {
        label: 'enc-rsasign',
        ns: p256(),
        sig: p256(),
        enc: createKey('RSA_2048', 'SIGN_VERIFY'),
        msg: /RSA_2048 with KeyUsage SIGN_VERIFY.*encryption/,
      },
      { label: 'ns-rsa', ns: rsaEnc(), sig: p256(), enc: rsaEnc(), msg: /RSA_2048 with KeyUsage ENCRYPT_DECRYPT.*namespace/ },
      { label: 'sig-p521', ns: p256(), sig: createKey('ECC_NIST_P521', 'SIGN_VERIFY'), enc: rsaEnc(), msg: /ECC_NIST_P521/ },
      {
        label: 'sig-rsa',
        ns: p256(),
        sig: createKey('RSA_2048', 'SIGN_VERIFY'),
        enc: rsaEnc(),
        msg: /RSA_2048 with KeyUsage SIGN_VERIFY.*signing/,
      },
    ];
    for (const c of cases) {
      const name = `bad-${c.label}-${run}`;
      await refused(
        kp,
        [
          'node',
          'init',
          name,
          '--profile',
          'participant',
          '--store',
          kms,
          '--namespace-key-id',
          c.ns,
          '--signing-key-id',
          c.sig,
          '--encryption-key-id',
          c.enc,
        ],
        1,
        c.msg,
      );
      assert.equal((await kp(['node', 'show', name, '--store', kms])).code, 1);
      const keys = JSON.parse((await ok(kp, ['key', 'ls', `${name}*`, '--store', kms, '--json'])).out) as unknown[];
      assert.deepEqual(keys, [], `${c.label}: no key recorded`);
    }
  });

  test('identity bundle of a KMS node: key references, no key material; a second catalog imports it and signs', async () => {
    const name = `bun-${run}`;
    const orig = JSON.parse((await ok(kp, ['node', 'init', name, '--profile', 'mediator', '--store', kms, '--json'])).out) as NodeJson;
    const file = join(dir, 'bun.bundle.json');
    await ok(kp, ['node', 'export', name, '--store', kms, '--bundle', file]);
    const text = readFileSync(file, 'utf8');
    const b = JSON.parse(text) as { keys: { privateKey?: string; kmsKeyId?: string; fingerprint: string }[] };
    assert.equal(b.keys.length, orig.keys.length);
    for (const k of b.keys) {
      assert.equal(k.privateKey, undefined, 'a KMS key leaves no key material in the bundle');
      assert.ok(k.kmsKeyId, 'the KMS key reference');
    }
    assert.doesNotMatch(text, /testing|secret-access-key|127\.0\.0\.1/, 'no credential or address in the bundle');
    // "replicate the old node into a new one": another catalog on the same KMS
    const other = cli(dir, { KEYPORT_HOME: join(dir, 'home-bundle') });
    const n = JSON.parse((await ok(other, ['node', 'import', file, '--store', kms, '--json'])).out) as NodeJson;
    assert.equal(n.id, orig.id);
    assert.deepEqual(
      n.keys.map((k) => k.fingerprint),
      orig.keys.map((k) => k.fingerprint),
    );
    const out = join(dir, 'bun-other');
    await ok(other, ['node', 'export', name, '--store', kms, '--out', out]);
    await ok(other, ['node', 'verify', out]);
    peerDecode([join(out, 'identity.certs')]);
    // the same KMS key signs for the new catalog, and the old catalog verifies it
    const protocol = n.keys.find((k) => k.role === 'protocol')!.key;
    writeFileSync(join(dir, 'bun-m'), 'signed through the imported reference');
    await ok(other, ['key', 'sign', protocol, '--store', kms, '--usage', 'protocol', '--in', 'bun-m', '--out', 'bun-m.sig']);
    await ok(kp, [
      'key',
      'verify',
      orig.keys.find((k) => k.role === 'protocol')!.key,
      '--store',
      kms,
      '--in',
      'bun-m',
      '--sig',
      'bun-m.sig',
    ]);
  });

  test('delegation from a local node to a key in the KMS (moving a participant to a KMS, same namespace)', async () => {
    const local = `sqlite:${join(dir, 'local.db')}`;
    const p = JSON.parse((await ok(kp, ['node', 'init', 'old1', '--profile', 'participant', '--store', local, '--json'])).out) as NodeJson;
    await ok(kp, ['key', 'create', `newns-${run}`, '--type', 'ec-p256', '--usage', 'namespace', '--store', kms]);
    await ok(kp, ['key', 'public', `newns-${run}`, '--store', kms, '--out', join(dir, 'newns.der')]);
    await ok(kp, [
      'node',
      'delegate',
      '--namespace-of',
      'old1',
      '--to-public-key',
      join(dir, 'newns.der'),
      '--restriction',
      'all',
      '--store',
      local,
    ]);
    const out = join(dir, 'old1');
    await ok(kp, ['node', 'export', 'old1', '--store', local, '--out', out]);
    const v = JSON.parse((await ok(kp, ['node', 'verify', out, '--json'])).out);
    const kmsFp = JSON.parse((await ok(kp, ['key', 'describe', `newns-${run}`, '--store', kms, '--json'])).out).fingerprint;
    assert.ok(v.delegations.some((d: { namespace: string; target: string }) => d.namespace === p.namespace && d.target === kmsFp));
    const peer = peerDecode([join(out, 'identity.certs')]);
    assert.equal(peer[2]!.target, kmsFp);
    assert.equal(peer[2]!.namespace, p.namespace);
  });

  test('offline root in AWS KMS: root certificate and delegation made with a KMS key the node never reaches', async () => {
    const rootId = createKey('ECC_NIST_P384', 'SIGN_VERIFY');
    const rootUri = `${kms};key-id=${rootId}`;
    const local = `sqlite:${join(dir, 'offline.db')}`;
    const n = JSON.parse(
      (await ok(kp, ['node', 'init', 'off1', '--profile', 'participant', '--store', local, '--offline-root', '--json'])).out,
    ) as NodeJson;
    assert.deepEqual(n.topology, []);
    const nsKey = n.keys.find((k) => k.role === 'namespace')!;
    await ok(kp, ['key', 'public', nsKey.key, '--store', local, '--out', join(dir, 'off1-ns.der')]);
    // the offline side: only the root key's KMS and the public key file
    await ok(kp, ['node', 'root-cert', '--root-key', rootUri, '--out', join(dir, 'root.cert')]);
    await ok(kp, [
      'node',
      'delegate',
      '--root-key',
      rootUri,
      '--to-public-key',
      join(dir, 'off1-ns.der'),
      '--out',
      join(dir, 'inter.cert'),
    ]);
    const done = JSON.parse(
      (await ok(kp, ['node', 'import-certs', 'off1', join(dir, 'root.cert'), join(dir, 'inter.cert'), '--store', local, '--json'])).out,
    ) as NodeJson;
    assert.notEqual(done.namespace, nsKey.fingerprint);
    const out = join(dir, 'off1');
    await ok(kp, ['node', 'export', 'off1', '--store', local, '--out', out]);
    const v = JSON.parse((await ok(kp, ['node', 'verify', out, '--json'])).out);
    assert.ok(v.ok);
    assert.deepEqual(v.namespaces, [done.namespace]);
    const peer = peerDecode([join(out, 'identity.certs')]);
    assert.equal(peer[1]!.restriction, 'can_sign_all_but_namespace_delegations');
    // the OTK is signed by the intermediate (not the offline root) and the node's signing keys
    assert.ok(!peer[2]!.signatures.some((s) => s.signed_by === done.namespace));
    assert.ok(peer[2]!.signatures.some((s) => s.signed_by === nsKey.fingerprint));
  });
});

describe('node in AWS KMS (local-kms)', { skip: skipUnless('localkms') || skipUnless('canton-peer') }, () => {
  const env = serviceEnv('localkms');
  const dir = tempDir();
  const kms = `awskms:region=${env['LOCALKMS_REGION']};endpoint=${env['LOCALKMS_ENDPOINT']};access-key-id=${env['LOCALKMS_ACCESS_KEY_ID']};secret-access-key=${env['LOCALKMS_SECRET_ACCESS_KEY']}`;
  const kp = cli(dir);

  test('every profile: keys made and used inside the KMS, signatures verify outside', async () => {
    await everyProfile(kp, dir, kms, randomBytes(3).toString('hex'), { external: true });
  });

  test('manual init from keys pre-generated with the AWS CLI, on a second emulator', { skip: skipUnless('awscli') }, async () => {
    const aws = (args: string[]): string => awsKms(awsCliTarget(env, 'LOCALKMS'), args);
    const mk = (spec: string, usage: string) => awsCreateKey(awsCliTarget(env, 'LOCALKMS'), spec, usage);
    const ns = mk('ECC_NIST_P384', 'SIGN_VERIFY');
    const sig = mk('ECC_NIST_P256', 'SIGN_VERIFY');
    const enc = mk('RSA_2048', 'ENCRYPT_DECRYPT');
    const name = `lman-${randomBytes(3).toString('hex')}`;
    const n = JSON.parse(
      (
        await ok(kp, [
          'node',
          'init',
          name,
          '--profile',
          'participant',
          '--store',
          kms,
          '--json',
          '--namespace-key-id',
          ns,
          '--signing-key-id',
          sig,
          '--encryption-key-id',
          enc,
        ])
      ).out,
    ) as NodeJson;
    assert.ok(n.manualInit);
    const pre: Record<string, string> = { namespace: ns, signing: sig, encryption: enc };
    for (const k of n.keys) {
      assert.equal(k.origin, 'registered');
      const d = JSON.parse((await ok(kp, ['key', 'describe', k.key, '--store', kms, '--json'])).out) as { publicKey: string };
      assert.equal(
        d.publicKey,
        aws(['get-public-key', '--key-id', pre[k.role]!, '--query', 'PublicKey']),
        `${k.role} is the pre-generated key`,
      );
    }
    const out = join(dir, 'lman');
    await ok(kp, ['node', 'export', name, '--store', kms, '--out', out]);
    await ok(kp, ['node', 'verify', out]);
    peerDecode([join(out, 'identity.certs')]);
  });
});

for (const [svc, label] of [
  ['softhsm', 'SoftHSM2'],
  ['kryoptic', 'kryoptic'],
] as const) {
  describe(`node on a PKCS#11 token (${label})`, { skip: skipUnless(svc) || skipUnless('canton-peer') }, () => {
    const env = serviceEnv(svc);
    const dir = tempDir();
    const tokenEnv: Record<string, string> = Object.fromEntries(
      Object.entries(env).filter(([k]) => /^(SOFTHSM2_CONF|KRYOPTIC_CONF)$/.test(k)),
    );
    const kms = `pkcs11:module-path=${env['PKCS11_MODULE']};token=${env['PKCS11_TOKEN']}?pin-value=${env['PKCS11_PIN']}`;
    const kp = cli(dir, tokenEnv);
    const run = randomBytes(3).toString('hex');

    test('every profile', async () => {
      // SoftHSM2 has no RSA-OAEP-SHA256: a participant's encryption key cannot live there, and init says so
      await everyProfile(kp, dir, kms, run, { external: true, encryption: svc !== 'softhsm' });
    });

    if (svc === 'softhsm') {
      const tool = (args: string[]) => {
        const r = spawnSync(
          env['PKCS11_TOOL']!,
          ['--module', env['PKCS11_MODULE']!, '--token-label', env['PKCS11_TOKEN']!, '--login', '--pin', env['PKCS11_PIN']!, ...args],
          { encoding: 'utf8', env: { ...process.env, ...tokenEnv } },
        );
        if (r.status !== 0) throw new Error(`pkcs11-tool ${args.join(' ')}: ${r.stderr}`);
      };
      let id = 0x40;
      const gen = (label: string, type: string) => {
        tool(['--keypairgen', '--key-type', type, '--usage-sign', '--label', label, '--id', (id++).toString(16).padStart(4, '0') + run]);
        return label;
      };

      test('manual init from keys made with pkcs11-tool', async () => {
        const ns = gen(`ns-${run}`, 'EC:prime256v1');
        const sig = gen(`sig-${run}`, 'EC:secp384r1');
        const n = JSON.parse(
          (
            await ok(kp, [
              'node',
              'init',
              `hsmman-${run}`,
              '--profile',
              'sequencer',
              '--store',
              kms,
              '--namespace-key-id',
              ns,
              '--signing-key-id',
              sig,
              '--json',
            ])
          ).out,
        ) as NodeJson;
        assert.ok(n.manualInit);
        assert.deepEqual(
          n.keys.map((k) => [k.role, k.type, k.origin]),
          [
            ['namespace', 'ec-p256', 'registered'],
            ['signing', 'ec-p384', 'registered'],
          ],
        );
        const out = join(dir, 'hsmman');
        await ok(kp, ['node', 'export', `hsmman-${run}`, '--store', kms, '--out', out]);
        await ok(kp, ['node', 'verify', out]);
        peerDecode([join(out, 'identity.certs')]);
        // an RSA key as the namespace key is refused and nothing is recorded
        const rsa = gen(`rsa-${run}`, 'rsa:2048');
        await refused(
          kp,
          ['node', 'init', `hsmbad-${run}`, '--profile', 'sequencer', '--store', kms, '--namespace-key-id', rsa, '--signing-key-id', sig],
          1,
          /namespace/,
        );
        assert.equal((await kp(['node', 'show', `hsmbad-${run}`, '--store', kms])).code, 1);
      });

      test('offline-root ceremony: the root key stays in the HSM; the node in a local store imports the files', async () => {
        const root = gen(`root-${run}`, 'EC:prime256v1');
        const rootUri = `pkcs11:module-path=${env['PKCS11_MODULE']};token=${env['PKCS11_TOKEN']};object=${root}?pin-value=${env['PKCS11_PIN']}`;
        const local = `sqlite:${join(dir, 'node.db')}`;
        const n = JSON.parse(
          (await ok(kp, ['node', 'init', 'p-off', '--profile', 'participant', '--store', local, '--offline-root', '--json'])).out,
        ) as NodeJson;
        const nsKey = n.keys.find((k) => k.role === 'namespace')!;
        await ok(kp, ['key', 'public', nsKey.key, '--store', local, '--pem', '--out', join(dir, 'ns.pem')]);
        await ok(kp, ['node', 'root-cert', '--root-key', rootUri, '--out', join(dir, 'root.cert')]);
        await ok(kp, ['node', 'delegate', '--root-key', rootUri, '--to-public-key', join(dir, 'ns.pem'), '--out', join(dir, 'inter.cert')]);
        // a later rotation of the intermediate: revoke it (serial 2) with the history
        const done = JSON.parse(
          (await ok(kp, ['node', 'import-certs', 'p-off', join(dir, 'root.cert'), join(dir, 'inter.cert'), '--store', local, '--json']))
            .out,
        ) as NodeJson;
        const out = join(dir, 'p-off');
        await ok(kp, ['node', 'export', 'p-off', '--store', local, '--out', out]);
        await ok(kp, ['node', 'verify', out]);
        const peer = peerDecode([join(out, 'identity.certs')]);
        assert.equal(peer[0]!.namespace, done.namespace);
        assert.equal(peer[0]!.target, done.namespace);
        await ok(kp, [
          'node',
          'delegate',
          '--root-key',
          rootUri,
          '--to-public-key',
          join(dir, 'ns.pem'),
          '--revoke',
          '--history',
          join(dir, 'inter.cert'),
          '--out',
          join(dir, 'revoke.cert'),
        ]);
        const rv = peerDecode([join(dir, 'root.cert'), join(dir, 'inter.cert'), join(dir, 'revoke.cert')]);
        assert.equal(rv[2]!.operation, 2);
        assert.equal(rv[2]!.serial, 2);
        await ok(kp, ['node', 'verify', join(dir, 'root.cert'), join(dir, 'inter.cert'), join(dir, 'revoke.cert')]);
      });
    }
  });
}
