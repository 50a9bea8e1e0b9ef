/**
 * The awskms: driver, `keyport doctor` and the instrumented retry layer against a KMS that REALLY
 * checks credentials and IAM permissions: a second moto server with IAM authentication on
 * (scripts/testbed/motoauth.sh). moto then checks that the SigV4 access key id belongs to an IAM user
 * (else InvalidClientTokenId), recomputes the SigV4 signature with that user's secret (else
 * SignatureDoesNotMatch) and evaluates the user's IAM policies per action, kms:<Action> against
 * Resource "*" (else AccessDenied); key policies are not evaluated (moto/iam/access_control.py).
 *
 * Users made by the script: keyport-admin (kms:*), keyport-restricted (kms:Decrypt, kms:DescribeKey,
 * kms:GetPublicKey only). Every call goes through a counting HTTP proxy in this process, so "not
 * retried" is counted on the wire (requests and their X-Amz-Target), next to the audit trail's
 * attempts. Signatures and plaintexts are checked with node:crypto, never with the driver or moto.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import { execFile } from 'node:child_process';
import { createHash, createPublicKey, randomBytes, verify } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { skipUnless, serviceEnv, ROOT } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';
import { openKeyring } from '../../src/keys/open.js';
import { factory } from '../../src/kms/aws/index.js';
import { instrument, openInstrumentedDriver } from '../../src/kms/instrument.js';
import { openDriver } from '../../src/kms/registry.js';
import { runConformance } from '../../src/kms/conformance.js';
import { formatUri } from '../../src/config/uri.js';
import { isKeyportError, type ErrorCode, type KeyportError } from '../../src/errors.js';
import type { AuditRecord } from '../../src/kms/audit.js';
import type { Driver } from '../../src/kms/driver.js';
import { rejectsCode as rejectsCodeShared } from '../support/rejects.js';

/** an HTTP proxy in front of moto that counts every request and its X-Amz-Target (the KMS operation) */
interface CountingProxy {
  endpoint: string;
  readonly targets: string[];
  /** answer every request with this (a retryable error for the control test) instead of forwarding */
  fake?: { status: number; body: string };
  close(): Promise<void>;
}

async function countingProxy(upstream: string): Promise<CountingProxy> {
  const up = new URL(upstream);
  const targets: string[] = [];
  const p: CountingProxy = { endpoint: '', targets, close: async () => undefined };
  const server: Server = createServer((req, res) => {
    targets.push(String(req.headers['x-amz-target'] ?? `${req.method} ${req.url}`));
    if (p.fake) {
      res.writeHead(p.fake.status, { 'content-type': 'application/x-amz-json-1.1' }).end(p.fake.body);
      return;
    }
    // forwarded as it is, Host header included: it is part of the SigV4 signature moto checks
    const fwd = request({ host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    fwd.on('error', () => res.destroy());
    req.pipe(fwd);
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  p.endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  p.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return p;
}

/** every refusal here is final: one line, never retryable */
const rejectsCode = (p: Promise<unknown>, code: ErrorCode): Promise<KeyportError> => rejectsCodeShared(p, code, false);

interface DoctorJson {
  ok: boolean;
  checks: { check: string; status: string; detail: string; fix?: string }[];
}

describe('awskms on moto with IAM authentication (motoauth)', { skip: skipUnless('motoauth') }, () => {
  const env = serviceEnv('motoauth');
  const region = env['MOTOAUTH_REGION']!;
  const adminId = env['MOTOAUTH_ADMIN_ACCESS_KEY_ID']!;
  const adminSecret = env['MOTOAUTH_ADMIN_SECRET_ACCESS_KEY']!;
  const restrictedId = env['MOTOAUTH_RESTRICTED_ACCESS_KEY_ID']!;
  const restrictedSecret = env['MOTOAUTH_RESTRICTED_SECRET_ACCESS_KEY']!;
  const WRONG = 'wrongwrongwrongwrongwrongwrongwrongwrong';
  const UNKNOWN_ID = 'AKIAKEYPORTNOSUCHKEY';
  const run = randomBytes(3).toString('hex');
  const dir = tempDir('keyport-awsauth-');

  let proxy: CountingProxy;
  let admin: Driver;
  let symId: string;
  let sigId: string;
  let symCt: Buffer;
  const symPlain = randomBytes(32);

  /** KMS URI through the counting proxy; credentials in the URI unless omitted (then the env chain) */
  const kmsUri = (id?: string, secret?: string, extra: Record<string, string> = {}) =>
    formatUri('awskms', {
      region,
      endpoint: proxy.endpoint,
      ...(id !== undefined ? { 'access-key-id': id, 'secret-access-key': secret! } : {}),
      ...extra,
    });
  const params = (id: string, secret: string) => ({ region, endpoint: proxy.endpoint, 'access-key-id': id, 'secret-access-key': secret });
  /** the requests counted on the wire while f runs */
  const wire = async (f: () => Promise<void>): Promise<string[]> => {
    const n = proxy.targets.length;
    await f();
    return proxy.targets.slice(n);
  };

  before(async () => {
    proxy = await countingProxy(env['MOTOAUTH_ENDPOINT']!);
    admin = await factory(params(adminId, adminSecret), kmsUri(adminId, adminSecret));
    symId = await admin.generateSymmetricKey(`auth-wrapper-${run}`);
    sigId = await admin.generateSigningKeyPair('ec-p256', `auth-sig-${run}`);
    symCt = await admin.encryptSymmetric(symId, symPlain);
  });
  after(async () => {
    await admin?.close?.();
    await proxy?.close();
  });

  it('the admin user works, and the restricted user is really refused (auth is enforced, not an emulator that accepts anything)', async () => {
    assert.deepEqual(await admin.health(), { state: 'ok' });
    assert.deepEqual(await admin.decryptSymmetric(symId, symCt), symPlain);
    const r = await factory(params(restrictedId, restrictedSecret), 'awskms:');
    try {
      await rejectsCode(r.encryptSymmetric(symId, Buffer.from('x')), 'PERMISSION');
    } finally {
      await r.close?.();
    }
  });

  for (const [label, id, secret, mooCode] of [
    ['a wrong secret for a valid access key id', adminId, WRONG, 'SignatureDoesNotMatch'],
    ['an unknown access key id', UNKNOWN_ID, WRONG, 'InvalidClientTokenId'],
  ] as const) {
    it(`${label}: AUTH, one line naming the fix, exactly one request per call (instrument does not retry it)`, async () => {
      const audit = join(dir, `audit-${mooCode}.jsonl`);
      process.env.KEYPORT_KMS_AUDIT = audit;
      let d: Driver;
      try {
        // the production path: openDriver + instrument with the env's retry settings (4 retries by default)
        d = await openInstrumentedDriver(kmsUri(id, secret), { baseDelayMs: 1 });
      } finally {
        delete process.env.KEYPORT_KMS_AUDIT;
      }
      try {
        const calls: [string, () => Promise<unknown>, string][] = [
          ['keyExistsAndIsActive', () => d.keyExistsAndIsActive(symId), 'TrentService.DescribeKey'],
          ['decryptSymmetric', () => d.decryptSymmetric(symId, symCt), 'TrentService.Decrypt'],
          ['encryptSymmetric', () => d.encryptSymmetric(symId, randomBytes(16)), 'TrentService.Encrypt'],
          ['sign', () => d.sign(sigId, randomBytes(32), 'ecdsa-sha256'), 'TrentService.Sign'],
          ['getPublicKey', () => d.getPublicKey(sigId), 'TrentService.GetPublicKey'],
          ['generateSymmetricKey', () => d.generateSymmetricKey(`never-${run}`), 'TrentService.CreateKey'],
        ];
        for (const [op, call, target] of calls) {
          let e!: KeyportError;
          const seen = await wire(async () => {
            e = await rejectsCode(call(), 'AUTH');
          });
          assert.deepEqual(seen, [target], `${op}: exactly one request, got ${seen.join(', ')}`);
          assert.match(e.message, new RegExp(mooCode), `${op}: names what the KMS said`);
          assert.match(e.message, /check the access key/, `${op}: names the fix`);
          assert.ok(!e.message.includes(secret) && !e.message.includes(adminSecret), `${op}: no secret in the message`);
        }
        // health: failed with the reason, one request, never throws
        const seen = await wire(async () => {
          const h = await d.health();
          assert.equal(h.state, 'failed');
          assert.match((h as { reason: string }).reason, new RegExp(`${mooCode}.*check the access key`));
        });
        assert.deepEqual(seen, ['TrentService.ListKeys']);
      } finally {
        await d.close?.();
      }
      const lines = readFileSync(audit, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as AuditRecord);
      assert.deepEqual(
        lines.filter((l) => l.operation !== 'health').map((l) => [l.operation, l.outcome, l.code, l.attempts]),
        ['keyExistsAndIsActive', 'decryptSymmetric', 'encryptSymmetric', 'sign', 'getPublicKey', 'generateSymmetricKey'].map((op) => [
          op,
          'error',
          'AUTH',
          1,
        ]),
      );
      assert.ok(!readFileSync(audit, 'utf8').includes(secret), 'no secret in the audit trail');
    });
  }

  it('control: the same path DOES retry a retryable answer (ThrottlingException), so the single requests above are no accident of counting', async () => {
    const lines: AuditRecord[] = [];
    // throttling is retried while the call's deadline allows (src/kms/retry.ts), each AWS request
    // through the limiter; when the deadline passes the caller learns it was THROTTLED
    const d = instrument(await factory(params(adminId, adminSecret), 'awskms:'), {
      kmsUri: 'awskms:',
      retries: 2,
      baseDelayMs: 1,
      deadlineMs: 4000,
      audit: { write: (r) => lines.push(r) },
    });
    proxy.fake = { status: 400, body: JSON.stringify({ __type: 'ThrottlingException', message: 'slow down' }) };
    try {
      const seen = await wire(async () => {
        await assert.rejects(d.keyExistsAndIsActive(symId), (e) => isKeyportError(e, 'THROTTLED') && e.retryable);
      });
      assert.ok(seen.length >= 2, `retried: ${seen.length} requests`);
      assert.deepEqual(new Set(seen), new Set(['TrentService.DescribeKey']));
      assert.deepEqual(
        lines.map((l) => l.code),
        ['THROTTLED'],
      );
    } finally {
      delete proxy.fake;
      await d.close?.();
    }
  });

  it('the restricted user: CreateKey and Sign are PERMISSION (one line, one request, nothing created); Decrypt, DescribeKey and GetPublicKey work', async () => {
    const lines: AuditRecord[] = [];
    const d = instrument(await factory(params(restrictedId, restrictedSecret), 'awskms:'), {
      kmsUri: 'awskms:',
      retries: 4,
      baseDelayMs: 1,
      audit: { write: (r) => lines.push(r) },
    });
    try {
      const keysBefore = (await collect(admin)).length;
      for (const [what, call, target, action] of [
        ['generateSymmetricKey', () => d.generateSymmetricKey(`denied-${run}`), 'TrentService.CreateKey', 'kms:CreateKey'],
        [
          'generateSigningKeyPair',
          () => d.generateSigningKeyPair('ec-p256', `denied-sig-${run}`),
          'TrentService.CreateKey',
          'kms:CreateKey',
        ],
        ['sign', () => d.sign(sigId, randomBytes(32), 'ecdsa-sha256'), 'TrentService.Sign', 'kms:Sign'],
        ['encryptSymmetric', () => d.encryptSymmetric(symId, randomBytes(16)), 'TrentService.Encrypt', 'kms:Encrypt'],
      ] as const) {
        let e!: KeyportError;
        const seen = await wire(async () => {
          e = await rejectsCode(call(), 'PERMISSION');
        });
        assert.deepEqual(seen, [target], `${what}: exactly one request`);
        assert.match(e.message, new RegExp(`AccessDenied.*not authorized to perform: ${action}`), e.message);
        assert.match(e.message, /check the IAM \/ key policy/, `${what}: names the fix`);
      }
      assert.deepEqual(
        lines.map((l) => [l.operation, l.code, l.attempts]),
        [
          ['generateSymmetricKey', 'PERMISSION', 1],
          ['generateSigningKeyPair', 'PERMISSION', 1],
          ['sign', 'PERMISSION', 1],
          ['encryptSymmetric', 'PERMISSION', 1],
        ],
      );
      assert.equal((await collect(admin)).length, keysBefore, 'a refused CreateKey created no key');

      // what the restricted user may do
      await d.keyExistsAndIsActive(symId);
      assert.deepEqual(await d.decryptSymmetric(symId, symCt), symPlain);
      const pub = await d.getPublicKey(sigId);
      assert.equal(pub.spec, 'ec-p256');
      // a signature by the admin verifies (node:crypto) with the public key the restricted user read
      const msg = randomBytes(64);
      const sig = await admin.sign(sigId, msg, 'ecdsa-sha256');
      assert.ok(verify('sha256', msg, createPublicKey({ key: pub.spki, format: 'der', type: 'spki' }), sig));
      assert.equal((await d.health()).state, 'failed', 'ListKeys (the health call) is not granted');
    } finally {
      await d.close?.();
    }
  });

  // ---- keyport doctor (the built CLI, credentials from the environment) --------------------------
  const kp = (args: string[], creds: { id: string; secret: string }, extraEnv: Record<string, string> = {}) =>
    new Promise<{ code: number; out: string; err: string }>((resolve) =>
      execFile(
        process.execPath,
        [join(ROOT, 'bin', 'keyport.js'), ...args],
        {
          cwd: dir,
          timeout: 120_000,
          env: {
            ...process.env,
            KEYPORT_STORE: '',
            KEYPORT_KMS_AUDIT: '',
            KEYPORT_HOME: join(dir, 'home'),
            AWS_ACCESS_KEY_ID: creds.id,
            AWS_SECRET_ACCESS_KEY: creds.secret,
            AWS_SESSION_TOKEN: '',
            AWS_PROFILE: '',
            AWS_EC2_METADATA_DISABLED: 'true',
            ...extraEnv,
          },
        },
        (e, out, err) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err }),
      ),
    );
  const doctor = async (creds: { id: string; secret: string }, keyId?: string) => {
    const r = await kp(['doctor', kmsUri(undefined, undefined, keyId ? { 'key-id': keyId } : {}), '--json'], creds);
    const rep = JSON.parse(r.out) as DoctorJson;
    for (const c of rep.checks) {
      assert.ok(!`${c.detail}${c.fix ?? ''}`.includes('\n'), `one line: ${c.check}`);
      if (c.status === 'problem' || c.status === 'warning') assert.ok(c.fix, `${c.check}: a ${c.status} carries a fix`);
    }
    assert.ok(!r.out.includes(creds.secret), 'no secret in the report');
    const st = (check: string) => rep.checks.find((c) => c.check === check);
    return { ...r, rep, st, problems: rep.checks.filter((c) => c.status === 'problem').map((c) => c.check) };
  };
  const ADMIN = () => ({ id: adminId, secret: adminSecret });
  const RESTRICTED = () => ({ id: restrictedId, secret: restrictedSecret });

  it('doctor, restricted user: the missing permissions are problems with one-line "grant kms:…" fixes (exit 1); the granted ones are ok', async () => {
    // the signing key: DescribeKey and GetPublicKey granted, Sign and ListKeys (health) not; ListKeys is
    // optional (Canton's six actions leave it out; only keyport's health check and listing use it): a warning
    const sig = await doctor(RESTRICTED(), sigId);
    assert.equal(sig.code, 1, sig.err);
    assert.equal(sig.rep.ok, false);
    assert.deepEqual(sig.problems.sort(), ['key probe', 'permission kms:Sign']);
    assert.equal(sig.st('permission kms:ListKeys')!.status, 'warning');
    assert.equal(
      sig.st('reachable')!.status,
      'ok',
      'a KMS that denies ListKeys answered and accepted the credentials: no outage, no credential problem',
    );
    assert.match(sig.st('permission kms:Sign')!.fix!, /^grant kms:Sign to the identity keyport runs as/);
    assert.match(sig.st('permission kms:ListKeys')!.fix!, /^grant kms:ListKeys/);
    assert.equal(sig.st('permission kms:DescribeKey')!.status, 'ok');
    assert.equal(sig.st('permission kms:GetPublicKey')!.status, 'ok');

    // the symmetric wrapper key: Encrypt not granted
    const sym = await doctor(RESTRICTED(), symId);
    assert.equal(sym.code, 1);
    assert.deepEqual(sym.problems.sort(), ['key probe', 'permission kms:Encrypt']);
    assert.match(sym.st('permission kms:Encrypt')!.fix!, /^grant kms:Encrypt/);
    assert.equal(sym.st('permission kms:DescribeKey')!.status, 'ok');

    // no key named (the KMS holds keys): listing is denied (optional: warnings with their fixes);
    // CreateKey / TagResource cannot be known without creating a key, which the doctor never does:
    // reported as not checked, not as ok
    const store = await doctor(RESTRICTED());
    assert.deepEqual(store.problems, []);
    for (const c of ['keys', 'permission kms:ListAliases', 'permission kms:ListKeys']) assert.equal(store.st(c)!.status, 'warning', c);
    assert.match(store.st('keys')!.fix!, /^grant kms:ListAliases/);
    for (const p of ['kms:CreateKey', 'kms:TagResource']) assert.equal(store.st(`permission ${p}`)!.status, 'not-checked');
  });

  it('doctor, admin user: exit 0 with no problems, for the signing key, the wrapper key and the KMS', async () => {
    for (const key of [sigId, symId, undefined]) {
      const r = await doctor(ADMIN(), key);
      assert.equal(r.code, 0, `${key ?? 'kms'}: ${r.out}${r.err}`);
      assert.deepEqual(r.problems, []);
      assert.equal(r.st('reachable')!.status, 'ok');
      assert.equal(r.st('permission kms:ListKeys')!.status, 'ok');
    }
    const sig = await doctor(ADMIN(), sigId);
    assert.equal(sig.st('permission kms:Sign')!.status, 'ok');
    const sym = await doctor(ADMIN(), symId);
    assert.equal(sym.st('permission kms:Encrypt')!.status, 'ok');
    assert.equal(sym.st('permission kms:Decrypt')!.status, 'ok');
  });

  it('doctor, wrong secret / unknown key id: the credential problem with its fix (exit 1), no permission blamed', async () => {
    for (const [creds, said] of [
      [{ id: adminId, secret: WRONG }, 'SignatureDoesNotMatch'],
      [{ id: UNKNOWN_ID, secret: WRONG }, 'InvalidClientTokenId'],
    ] as const) {
      const r = await doctor(creds, symId);
      assert.equal(r.code, 1);
      assert.deepEqual(r.problems, ['reachable']);
      assert.match(r.st('reachable')!.detail, new RegExp(said));
      assert.match(r.st('reachable')!.fix!, /^fix the AWS credentials \(AWS_ACCESS_KEY_ID \/ AWS_SECRET_ACCESS_KEY/);
      assert.ok(r.rep.checks.filter((c) => c.check.startsWith('permission ')).every((c) => c.status === 'not-checked'));
    }
  });

  it('conformance kit with the admin user: bad-credentials really passes (AUTH), and unreachable passes', async () => {
    const uri = kmsUri(adminId, adminSecret);
    const d = await openDriver(uri);
    try {
      // the few checks moto answers truthfully are enough here; aws.test.ts covers the rest
      const r = await runConformance(d, { uri, callTimeoutMs: 30_000, specs: { signing: ['ec-p256'], encryption: [], symmetric: true } });
      const bad = r.find((x) => x.check === 'bad-credentials')!;
      assert.deepEqual([bad.outcome, bad.detail], ['pass', 'AUTH']);
      assert.equal(r.find((x) => x.check === 'unreachable')!.outcome, 'pass');
      for (const c of ['symmetric.encrypt-decrypt', 'signing.sign-verify']) {
        const x = r.find((y) => y.check === c);
        if (x) assert.equal(x.outcome, 'pass', `${c}: ${x.detail ?? ''}`);
      }
    } finally {
      await d.close?.();
    }
  });

  it('an envelope store (sqlite) whose wrapper key is on this moto, used with wrong credentials: one-line AUTH, one request, the store untouched', async () => {
    const db = join(dir, 'env.db');
    const store = `sqlite:${db}`;
    // the wrapper URI names no credentials: they come from the environment (what the store keeps is no secret)
    const wrapper = kmsUri(undefined, undefined, { 'key-id': `alias/auth-wrapper-${run}` });
    let r = await kp(['key', 'create', 'node-key', '--type', 'ec-p256', '--store', store], ADMIN());
    assert.equal(r.code, 0, r.err);
    r = await kp(['protect', 'enable', '--store', store, '--wrapper', wrapper, '--json'], ADMIN());
    assert.equal(r.code, 0, r.err);
    writeFileSync(join(dir, 'msg'), randomBytes(100));
    r = await kp(['key', 'public', 'node-key', '--store', store, '--pem', '--out', 'pub.pem'], ADMIN());
    assert.equal(r.code, 0, r.err);
    const pub = createPublicKey(readFileSync(join(dir, 'pub.pem')));
    r = await kp(['key', 'sign', 'node-key', '--store', store, '--in', 'msg', '--wrapper', wrapper, '--out', 'ok.sig'], ADMIN());
    assert.equal(r.code, 0, r.err);
    assert.ok(
      verify('sha256', readFileSync(join(dir, 'msg')), pub, readFileSync(join(dir, 'ok.sig'))),
      'sealed key signs (node:crypto verifies)',
    );

    const snapshot = () =>
      readdirSync(dir)
        .filter((f) => f.startsWith('env.db'))
        .sort()
        .map(
          (f) =>
            `${f}:${createHash('sha256')
              .update(readFileSync(join(dir, f)))
              .digest('hex')}`,
        );
    const before = snapshot();
    for (const [creds, said] of [
      [{ id: adminId, secret: WRONG }, 'SignatureDoesNotMatch'],
      [{ id: UNKNOWN_ID, secret: WRONG }, 'InvalidClientTokenId'],
    ] as const) {
      const audit = join(dir, `env-audit-${said}.jsonl`);
      rmSync(join(dir, 'bad.sig'), { force: true });
      const seen = await wire(async () => {
        r = await kp(['key', 'sign', 'node-key', '--store', store, '--in', 'msg', '--wrapper', wrapper, '--out', 'bad.sig'], creds, {
          KEYPORT_KMS_AUDIT: audit,
        });
      });
      assert.equal(r.code, 1, r.out + r.err);
      const lines = r.err.trim().split('\n');
      assert.equal(lines.length, 1, `one line: ${r.err}`);
      assert.match(lines[0]!, new RegExp(`^keyport: .*${said}.*check the access key`));
      assert.ok(!r.err.includes(WRONG) && !r.err.includes(adminSecret), 'no secret in the message');
      assert.equal(existsSync(join(dir, 'bad.sig')), false, 'no signature written');
      // the first KMS call (resolving the wrapper alias) fails and nothing follows: one request, one audit line, one attempt
      const a = readFileSync(audit, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as AuditRecord);
      assert.deepEqual(seen, ['TrentService.DescribeKey']);
      assert.deepEqual(
        a.map((l) => [l.operation, l.keyId, l.outcome, l.code, l.attempts]),
        [['resolveKeyId', `alias/auth-wrapper-${run}`, 'error', 'AUTH', 1]],
      );
    }
    assert.deepEqual(snapshot(), before, 'the store files are byte for byte unchanged');
    // and the right credentials still unseal and sign
    r = await kp(['key', 'sign', 'node-key', '--store', store, '--in', 'msg', '--wrapper', wrapper, '--out', 'ok2.sig'], ADMIN());
    assert.equal(r.code, 0, r.err);
    assert.ok(verify('sha256', readFileSync(join(dir, 'msg')), pub, readFileSync(join(dir, 'ok2.sig'))));
  });

  it('a config reaching the same wrapper key another way, with wrong credentials: AUTH at use, the store keeps only the reference', async () => {
    const store = `sqlite:${join(dir, 'moved.db')}`;
    const good = kmsUri(adminId, adminSecret, { 'key-id': `alias/auth-wrapper-${run}` });
    const kr = await openKeyring({ store, envelope: { wrapper: good } });
    await kr.create('k', { type: 'aes256' });
    const ct = await kr.encrypt('k', Buffer.from('data'));
    await kr.close();
    // same scheme and key id (so "the same key reached another way"), but a wrong secret: the store never
    // follows an address (it keeps a reference), and using the key fails with AUTH
    const bad = kmsUri(adminId, WRONG, { 'key-id': `alias/auth-wrapper-${run}`, 'timeout-ms': '5000' });
    const krBad = await openKeyring({ store, envelope: { wrapper: bad } }, { cacheTtlMs: 0 });
    try {
      await rejectsCode(krBad.decrypt('k', ct), 'AUTH');
    } finally {
      await krBad.close();
    }
    const kr2 = await openKeyring({ store, envelope: { wrapper: good } });
    try {
      assert.equal(((await kr2.protection()) as { wrapper: string }).wrapper, `awskms:key-id=alias/auth-wrapper-${run}`);
      assert.deepEqual(await kr2.decrypt('k', ct), Buffer.from('data'));
    } finally {
      await kr2.close();
    }
  });
});

async function collect(d: Driver): Promise<string[]> {
  const ids: string[] = [];
  for await (const k of d.listKeys!()) ids.push(k.keyId);
  return ids;
}
