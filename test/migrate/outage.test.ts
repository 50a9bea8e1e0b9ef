/**
 * A KMS outage in the middle of `keyport migrate`, against a real PyKMIP (a private instance, see
 * test/support/outage.ts): keys migrate from a clear SQLite store INTO an envelope-protected SQLite
 * store whose wrapper key lives in the KMS, and the KMS is stopped after the first batch. The run must
 * fail cleanly (no crash; the report names the failed keys, or a retryable one-line error); after the
 * KMS is started again the very same migrate completes and the target equals the source: same names,
 * same fingerprints, and every key works at the target (node:crypto verifies its signatures with the
 * source's public key; aes256 data encrypted at the source decrypts at the target).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPublicKey, randomBytes, verify } from 'node:crypto';
import { isKeyportError, type KeyportError } from '../../src/errors.js';
import { openDriver } from '../../src/kms/registry.js';
import { openKeyring } from '../../src/keys/open.js';
import { migrate, type MigrateReport } from '../../src/migrate/index.js';
import type { KeyType } from '../../src/crypto/keytypes.js';
import type { AuditRecord } from '../../src/kms/audit.js';
import { skipUnless } from '../support/testbed.js';
import { privatePykmip, type PrivateKmip } from '../support/outage.js';

const TYPES: KeyType[] = ['ec-p256', 'ed25519', 'secp256k1', 'aes256', 'ec-p384'];
const N = 20;
const HASH: Partial<Record<KeyType, string | null>> = { 'ec-p256': 'sha256', secp256k1: 'sha256', 'ec-p384': 'sha384', ed25519: null };

describe('migrate into an envelope store while its KMS goes down (PyKMIP)', { skip: skipUnless('pykmip') }, () => {
  let kmip: PrivateKmip;
  let dir: string;
  let wrapper: string;
  /** KMS attempts (audit trail) spent on the keys that failed in the interrupted run */
  let deadAttempts: { calls: number; attempts: number } | undefined;

  before(async () => {
    kmip = await privatePykmip('migrate');
    dir = mkdtempSync(join(tmpdir(), 'keyport-migrate-outage-'));
    const d = await openDriver(kmip.kmsUri());
    wrapper = `${kmip.kmsUri({ timeout: '2s' })};key-id=${await d.generateSymmetricKey(`migrate-wrapper-${randomBytes(4).toString('hex')}`)}`;
    await d.close?.();
  });

  after(async () => {
    await kmip?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function source(name: string): Promise<string> {
    const from = `sqlite:${join(dir, `${name}.db`)}`;
    const kr = await openKeyring(from);
    for (let i = 0; i < N; i++) await kr.create(`k${String(i).padStart(2, '0')}`, { type: TYPES[i % TYPES.length]! });
    await kr.close();
    return from;
  }

  function target(name: string): string {
    const yaml = join(dir, `${name}.yaml`);
    writeFileSync(yaml, `store: sqlite:${join(dir, `${name}.db`)}\nenvelope:\n  wrapper: "${wrapper}"\n`);
    return yaml;
  }

  /** target equals source: names, fingerprints, sealed, and every key works with the source's material */
  async function assertSame(from: string, to: string): Promise<void> {
    const s = await openKeyring(from);
    const t = await openKeyring(to, { cacheTtlMs: 0 });
    try {
      const names = (await s.list()).names;
      assert.equal(names.length, N);
      assert.deepEqual((await t.list()).names, names);
      for (const n of names) {
        const [a, b] = [await s.describe(n), await t.describe(n)];
        assert.equal(b.fingerprint, a.fingerprint, `${n}: fingerprint`);
        assert.equal(b.type, a.type);
        assert.equal(b.protection, 'sealed', `${n} is not sealed at the target`);
        const msg = randomBytes(48);
        if (a.type === 'aes256') {
          assert.ok((await t.decrypt(n, await s.encrypt(n, msg))).equals(msg), `${n}: source ciphertext does not decrypt at the target`);
        } else {
          const pub = createPublicKey({ key: await s.publicKey(n), format: 'der', type: 'spki' });
          assert.ok(verify(HASH[a.type]!, msg, pub, await t.sign(n, msg)), `${n}: target signature does not verify with the source key`);
        }
      }
    } finally {
      await s.close();
      await t.close();
    }
  }

  it('KMS stopped after the first batch: clean partial failure, then the same migrate completes and target == source', async (t) => {
    const from = await source('src1');
    const to = target('dst1');
    let stopped = false;
    let report: MigrateReport | undefined;
    let thrown: unknown;
    const auditPath = join(dir, 'audit1.jsonl');
    process.env.KEYPORT_KMS_AUDIT = auditPath;
    const t0 = Date.now();
    try {
      report = await migrate({
        from,
        to,
        batchSize: 4,
        concurrency: 2,
        onProgress: (phase, done) => {
          if (phase === 'migrate' && done >= 4 && !stopped) {
            stopped = true;
            kmip.stopSync();
          }
        },
      });
    } catch (e) {
      thrown = e;
    }
    delete process.env.KEYPORT_KMS_AUDIT;
    const lines = readFileSync(auditPath, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as AuditRecord);
    const failedCalls = lines.filter((l) => l.outcome === 'error');
    const attempts = failedCalls.reduce((a, l) => a + l.attempts, 0);
    deadAttempts = { calls: failedCalls.length, attempts };
    t.diagnostic(`run 1 took ${Date.now() - t0} ms; KMS calls that failed: ${failedCalls.length}, KMS attempts in them: ${attempts}`);
    assert.ok(stopped, 'the KMS was never stopped: the migration did not reach its second batch');
    if (thrown) {
      assert.ok(isKeyportError(thrown), `not a KeyportError: ${String(thrown)}`);
      const e = thrown as KeyportError;
      assert.ok(['UNAVAILABLE', 'TIMEOUT'].includes(e.code) && e.retryable, `${e.code}: ${e.message}`);
      assert.ok(!e.message.includes('\n'));
    } else {
      assert.ok(report);
      assert.equal(report.migrated, 4, `first batch migrated: ${JSON.stringify(report)}`);
      assert.equal(report.failed.length, N - 4, `failed keys: ${report.failed.join(',')}`);
      for (const x of report.errors) assert.match(x.error, /unreachable|closed|TLS|answer/i, x.error);
      for (const x of report.errors) assert.ok(!x.error.includes('\n'));
    }

    const t1 = Date.now();
    t.diagnostic(
      thrown
        ? `run 1 threw ${(thrown as KeyportError).code}: ${(thrown as Error).message}`
        : `run 1: migrated ${report!.migrated}, failed ${report!.failed.length}, first error: ${report!.errors[0]?.error}`,
    );
    await kmip.restart();
    const again = await migrate({ from, to, batchSize: 4, concurrency: 2 });
    t.diagnostic(
      `run 2 (${Date.now() - t1} ms incl. restart): resumed ${again.resumed}, migrated ${again.migrated}, verified ${again.verified}, skipped ${again.skipped}, failed ${again.failed.length}`,
    );
    assert.deepEqual(again.failed, [], `failed again: ${JSON.stringify(again.errors)}`);
    await assertSame(from, to);
  });

  it('a dead KMS costs each failing key at most one bounded retry sequence (1 + 4 attempts), not nested retries', () => {
    // before f752288 the migration pool retried what instrument() had already retried: 35 attempts per key
    assert.ok(deadAttempts, 'the interrupted run did not record its attempts');
    assert.ok(
      deadAttempts.attempts <= (N - 4) * 5,
      `${deadAttempts.attempts} KMS attempts in ${deadAttempts.calls} failed calls for ${N - 4} keys`,
    );
  });

  it('KMS down before the start: migrate refuses with a retryable one-line error and writes nothing; works once it is back', async () => {
    const from = await source('src2');
    const to = target('dst2');
    await kmip.stop();
    try {
      await assert.rejects(migrate({ from, to }), (e) => {
        assert.ok(isKeyportError(e), String(e));
        assert.ok(['UNAVAILABLE', 'TIMEOUT'].includes(e.code) && e.retryable, `${e.code}: ${e.message}`);
        assert.ok(!e.message.includes('\n'));
        return true;
      });
    } finally {
      await kmip.restart();
    }
    const r = await migrate({ from, to });
    assert.equal(r.migrated, N);
    assert.equal(r.verified, N);
    await assertSame(from, to);
  });
});
