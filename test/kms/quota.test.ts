/**
 * KMS calls under a real emulator's quota: local-kms (scripts/testbed/localkms.sh) behind the latency
 * and quota injector (test/support/kms-injector.ts), which answers AWS's own ThrottlingException when a
 * per-operation token bucket is empty and counts the calls of each operation.
 *
 * Issue 12's must-hold outcomes: with a 100/s quota per operation and 32 callers, 1000 external
 * signatures, the first use of 2000 envelope-sealed keys and a 2000-key migration all complete with no
 * failure; BYOK of 20 keys at AWS's quotas (CreateKey 5/s, GetParametersForImport 0.25/s) ends with
 * exactly 20 KMS keys, none scheduled for deletion (listed in local-kms directly, not through keyport).
 * And issue 8's: a CreateKey whose answer is lost ends with exactly one KMS key, adopted; a failed alias
 * creation leaves no enabled orphan. Outcomes are asserted, never times.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { createPublicKey, randomBytes, verify } from 'node:crypto';
import { KMSClient, ListKeysCommand, DescribeKeyCommand, CreateAliasCommand } from '@aws-sdk/client-kms';
import { skipUnless, serviceEnv } from '../support/testbed.js';
import { startInjector, AWS_QUOTAS, type Injector } from '../support/kms-injector.js';
import { openInstrumentedDriver } from '../../src/kms/instrument.js';
import { openKeyring } from '../../src/keys/open.js';
import type { StoreKeyring } from '../../src/keys/keyring.js';
import { migrate } from '../../src/migrate/index.js';
import { limiterStats, resetLimiters } from '../../src/kms/limiter.js';
import { isKeyportError } from '../../src/errors.js';
import { tempDir } from '../support/tmp.js';

const skip = skipUnless('localkms');
const dir = tempDir();
process.env.KEYPORT_HOME = join(dir, 'home');
const tag = `q${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;

/** run `n` items with `width` callers; the failures */
async function pool(n: number, width: number, fn: (i: number) => Promise<void>): Promise<unknown[]> {
  const failures: unknown[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      for (let i = next++; i < n; i = next++) {
        try {
          await fn(i);
        } catch (e) {
          failures.push(e);
        }
      }
    }),
  );
  return failures;
}

describe('KMS calls under quotas (local-kms behind the quota injector)', { skip }, () => {
  let inj: Injector;
  let env: Record<string, string>;
  let direct: KMSClient;
  let kms: string;
  const QUOTA = { latencyMs: 2, jitterMs: 4, defaultRate: 100 };

  before(async () => {
    env = serviceEnv('localkms');
    inj = await startInjector(env.LOCALKMS_ENDPOINT!, {});
    kms = `awskms:region=${env.LOCALKMS_REGION};endpoint=${inj.endpoint};access-key-id=test;secret-access-key=test`;
    direct = new KMSClient({
      region: env.LOCALKMS_REGION!,
      endpoint: env.LOCALKMS_ENDPOINT!,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
  });
  after(async () => {
    direct?.destroy();
    await inj?.close();
  });

  /** every key of local-kms whose description names this prefix, with its state (read directly, not through keyport) */
  async function kmsKeys(prefix: string): Promise<{ id: string; state: string }[]> {
    const out: { id: string; state: string }[] = [];
    let marker: string | undefined;
    do {
      const page = await direct.send(new ListKeysCommand({ Limit: 1000, ...(marker ? { Marker: marker } : {}) }));
      // described 16 at a time: local-kms keeps every key of earlier runs, and one by one this took minutes
      const keys = page.Keys ?? [];
      const failed = await pool(keys.length, 16, async (i) => {
        const m = (await direct.send(new DescribeKeyCommand({ KeyId: keys[i]!.KeyId! }))).KeyMetadata!;
        if (m.Description?.startsWith(`keyport key ${prefix}`)) out.push({ id: m.KeyId!, state: m.KeyState! });
      });
      if (failed.length) throw failed[0];
      marker = page.Truncated ? page.NextMarker : undefined;
    } while (marker);
    return out;
  }

  it('1000 external signatures, 32 callers, 100/s: no failure', async () => {
    inj.configure({});
    const kr = await openKeyring(kms);
    await kr.create(`${tag}-sig`, { type: 'ec-p256' });
    const spki = createPublicKey({ key: await kr.publicKey(`${tag}-sig`), format: 'der', type: 'spki' });
    inj.configure(QUOTA);
    inj.reset();
    const sigs: Buffer[] = [];
    const failures = await pool(1000, 32, async (i) => {
      sigs[i] = await kr.sign(`${tag}-sig`, Buffer.from(`m${i}`));
    });
    await kr.close();
    const s = inj.stats();
    console.log(`# signatures: ${JSON.stringify(s.ops)}`);
    assert.deepEqual(failures.map(String), []);
    for (const i of [0, 499, 999]) assert.ok(verify('sha256', Buffer.from(`m${i}`), spki, sigs[i]!), `signature ${i} verifies`);
    assert.ok(s.ops.Sign!.forwarded >= 1000);
  });

  it('a quota that binds (20/s, 32 callers): throttling absorbed, none surfaced, few calls wasted', async () => {
    inj.configure({});
    const kr = await openKeyring(kms);
    await kr.create(`${tag}-bind`, { type: 'ec-p256' });
    inj.configure({ latencyMs: 5, buckets: [{ ops: ['Sign'], rate: 20 }] });
    inj.reset();
    const failures = await pool(200, 32, async (i) => {
      await kr.sign(`${tag}-bind`, Buffer.from(`m${i}`));
    });
    await kr.close();
    const s = inj.stats().ops.Sign!;
    console.log(`# binding quota: ${JSON.stringify(s)}`);
    assert.deepEqual(failures.map(String), []);
    assert.equal(s.forwarded, 200);
    assert.ok(s.throttled > 0, 'the quota was binding (else this test shows nothing)');
  });

  it('first use of 2000 envelope-sealed keys, 32 callers, 100/s: no failure', async () => {
    inj.configure({});
    const d = await openInstrumentedDriver(kms);
    const wrapper = `${kms};key-id=${await d.generateSymmetricKey()}`;
    await d.close?.();
    const store = `sqlite:${join(dir, 'sealed.db')}`;
    const cfg = { store, envelope: { wrapper } };
    const kr = await openKeyring(cfg);
    const names = Array.from({ length: 2000 }, (_, i) => `k${i}`);
    assert.deepEqual(
      (await pool(names.length, 16, (i) => kr.create(names[i]!, { type: 'ec-p256' }).then(() => undefined))).map(String),
      [],
    );
    await kr.close();
    inj.configure(QUOTA);
    inj.reset();
    const fresh = await openKeyring(cfg);
    const failures = await pool(names.length, 32, async (i) => {
      await fresh.sign(names[i]!, Buffer.from('m'));
    });
    await fresh.close();
    const s = inj.stats();
    console.log(`# first use: ${JSON.stringify(s.ops)}`);
    assert.deepEqual(failures.map(String).slice(0, 3), []);
    assert.ok(s.ops.Decrypt!.forwarded >= 2000);
  });

  it('a 2000-key migration into an envelope store, 100/s: no failure, every key verified', async () => {
    inj.configure({});
    const d = await openInstrumentedDriver(kms);
    const wrapper = `${kms};key-id=${await d.generateSymmetricKey()}`;
    await d.close?.();
    const src = `sqlite:${join(dir, 'clear.db')}`;
    const kr = await openKeyring(src);
    assert.deepEqual((await pool(2000, 16, (i) => kr.create(`m${i}`).then(() => undefined))).map(String), []);
    await kr.close();
    const to = join(dir, 'to.yaml');
    writeFileSync(to, `store: sqlite:${join(dir, 'migrated.db')}\nenvelope:\n  wrapper: "${wrapper}"\n`);
    inj.configure(QUOTA);
    inj.reset();
    const r = await migrate({ from: src, to, concurrency: 32 });
    console.log(`# migration: ${JSON.stringify(inj.stats().ops)}`);
    assert.deepEqual([r.failed.length, r.conflicts.length, r.refused.length], [0, 0, 0], JSON.stringify(r.errors?.slice?.(0, 3)));
    assert.equal(r.migrated, 2000);
    assert.equal(r.verified, 2000);
  });

  it('protect enable seals many keys at once under a binding quota (Encrypt 30/s): every key sealed, none failed', async () => {
    inj.configure({});
    const d = await openInstrumentedDriver(kms);
    const wrapper = `${kms};key-id=${await d.generateSymmetricKey()}`;
    await d.close?.();
    const store = `sqlite:${join(dir, 'protect.db')}`;
    const kr = await openKeyring(store);
    for (let i = 0; i < 150; i++) await kr.create(`p${i}`);
    await kr.close();
    inj.configure({ latencyMs: 20, buckets: [{ ops: ['Encrypt'], rate: 30 }] });
    inj.reset();
    const notices: string[] = [];
    const p = await openKeyring({ store, envelope: { wrapper } }, { onNotice: (m) => notices.push(m) });
    await p.close();
    const s = inj.stats().ops.Encrypt!;
    console.log(`# protect enable: ${JSON.stringify(s)}`);
    assert.match(notices.join('\n'), /150 key\(s\) sealed/);
    assert.ok(s.forwarded >= 150, 'one Encrypt per key (and the wrapper check)');
    assert.ok(s.throttled > 0, 'sealing ran concurrently enough to meet the quota');
  });

  it("quotas=aws: requests are paced from the first at AWS's documented defaults (CreateKey 5/s): a burst of 12 creates, none throttled", async () => {
    // two-request buckets at AWS's documented CreateKey / CreateAlias / TagResource rates: a burst of
    // requests is throttled from the third on; paced ones are not (two, not one: a request granted 1/rate
    // after the previous one may still reach the injector a millisecond early on a busy machine)
    const buckets = [
      { ops: ['CreateKey'], rate: 5, burst: 2 },
      { ops: ['CreateAlias'], rate: 5, burst: 2 },
      { ops: ['TagResource'], rate: 10, burst: 2 },
    ];
    const burst = async (uri: string, prefix: string) => {
      resetLimiters(); // a new process: nothing learned yet
      inj.configure({ latencyMs: 2, buckets });
      inj.reset();
      const d = await openInstrumentedDriver(uri);
      const failures = await pool(12, 12, async (i) => {
        await d.generateSymmetricKey(`${prefix}-${i}`);
      });
      await d.close?.();
      assert.deepEqual(failures.map(String), []);
      return inj.stats().ops;
    };
    const paced = await burst(`${kms};quotas=aws`, `${tag}-paced`);
    console.log(`# quotas=aws: ${JSON.stringify(paced)}`);
    for (const op of ['CreateKey', 'CreateAlias', 'TagResource']) {
      assert.equal(paced[op]!.forwarded, 12, op);
      assert.equal(paced[op]!.throttled, 0, `${op}: paced at the documented default, never throttled`);
    }
    // the same burst against a connection that learns (the default for a non-AWS endpoint) is throttled first
    const learned = await burst(kms, `${tag}-learn`);
    assert.ok(learned.CreateKey!.throttled > 0, 'without the documented start the burst meets the quota');
  });

  it("AWS's shared cryptographic quota: symmetric Encrypt and Decrypt draw on one limiter, as AWS counts them", async () => {
    resetLimiters();
    inj.configure({});
    const d = await openInstrumentedDriver(kms);
    const id = await d.generateSymmetricKey();
    const ct = await d.encryptSymmetric!(id, Buffer.from('x'));
    assert.equal((await d.decryptSymmetric!(id, ct)).toString(), 'x');
    await d.close?.();
    const names = Object.keys(limiterStats()).map((k) => k.split(' ').pop());
    assert.ok(names.includes('crypto:symmetric'), names.join(', '));
    assert.ok(!names.includes('Encrypt') && !names.includes('Decrypt'), names.join(', '));
  });

  it('BYOK of 20 keys at AWS quotas: exactly 20 KMS keys, none scheduled for deletion', async () => {
    inj.configure({ latencyMs: 5, buckets: AWS_QUOTAS });
    inj.reset();
    const d = await openInstrumentedDriver(kms);
    const prefix = `${tag}-byok`;
    const ids: string[] = [];
    const failures = await pool(20, 20, async (i) => {
      ids[i] = await d.importKey!({ kind: 'symmetric', spec: 'aes256', secret: randomBytes(32) }, `${prefix}-${i}`);
    });
    await d.close?.();
    const s = inj.stats();
    console.log(`# byok: ${JSON.stringify(s.ops)}`);
    assert.deepEqual(failures.map(String), []);
    const keys = await kmsKeys(prefix);
    assert.equal(keys.length, 20, 'one KMS key per imported key');
    assert.deepEqual(
      keys.filter((k) => k.state !== 'Enabled'),
      [],
    );
    assert.deepEqual(new Set(keys.map((k) => k.id)), new Set(ids));
    assert.equal(s.ops.CreateKey!.forwarded, 20);
    assert.equal(s.ops.ScheduleKeyDeletion?.forwarded ?? 0, 0);
    assert.ok(s.ops.GetParametersForImport!.throttled > 0, 'GetParametersForImport was throttled and resumed');
  });

  it('plans match the target: local-kms declared import=aes256 — without --rekey EC keys are refused at plan time, nothing attempted', async () => {
    // local-kms documents import of symmetric keys only (no asymmetric EXTERNAL keys): its connection says so
    const target = `${kms};import=aes256`;
    const src = `sqlite:${join(dir, 'plan-ec.db')}`;
    const kr = await openKeyring(src);
    for (let i = 0; i < 3; i++) await kr.create(`${tag}-pe${i}`, { type: 'ec-p256' });
    await kr.create(`${tag}-pa`);
    await kr.close();
    inj.configure({});
    inj.reset();
    const dry = await migrate({ from: src, to: target, dryRun: true });
    assert.equal(dry.refused.length, 3);
    for (const r of dry.refused) assert.match(r.reason, /imports only aes256 keys.*not ec-p256: pass --rekey/);
    assert.deepEqual(
      dry.plan!.map((e) => [e.n, e.a, e.s ?? null]),
      [[`${tag}-pa`, 'migrate', 'import'], ...[0, 1, 2].map((i) => [`${tag}-pe${i}`, 'refuse', null])],
    );
    const r = await migrate({ from: src, to: target });
    assert.equal(r.refused.length, 3);
    assert.deepEqual([r.migrated, r.verified, r.failed.length], [1, 1, 0]);
    const ops = inj.stats().ops;
    assert.equal(ops.CreateKey?.forwarded, 1, 'one CreateKey: the aes256 import; none tried for the refused EC keys');
    assert.equal(ops.ScheduleKeyDeletion?.forwarded ?? 0, 0);
  });

  it('plans match the target: with --rekey EC keys are planned as re-keys up front, one CreateKey each, none wasted', async () => {
    const target = `${kms};import=aes256`;
    const src = `sqlite:${join(dir, 'plan-rekey.db')}`;
    const kr = await openKeyring(src);
    for (let i = 0; i < 5; i++) await kr.create(`${tag}-pr${i}`, { type: 'ec-p256' });
    await kr.create(`${tag}-pra`);
    await kr.close();
    inj.configure({});
    inj.reset();
    const dry = await migrate({ from: src, to: target, rekey: true, dryRun: true });
    assert.deepEqual(dry.strategies, { copy: 0, import: 1, rekey: 5 });
    assert.equal(inj.stats().ops.CreateKey?.forwarded ?? 0, 0, 'a dry run creates nothing');
    const r = await migrate({ from: src, to: target, rekey: true, concurrency: 8 });
    assert.deepEqual([r.failed, r.refused], [[], []], JSON.stringify(r.errors));
    assert.deepEqual([r.migrated, r.verified], [6, 6]);
    assert.deepEqual(r.strategies, { copy: 0, import: 1, rekey: 5 });
    const ops = inj.stats().ops;
    assert.equal(ops.CreateKey!.forwarded, 6, 'one CreateKey per key: no import attempted for the EC keys');
    assert.equal(ops.ScheduleKeyDeletion?.forwarded ?? 0, 0);
  });

  it('a re-key whose alias is taken in the KMS (not by this migration) fails naming the alias, never counted as done', async () => {
    const target = `${kms};import=aes256`;
    const src = `sqlite:${join(dir, 'taken.db')}`;
    const kr = await openKeyring(src);
    await kr.create(`${tag}-tk`, { type: 'ec-p256' });
    await kr.close();
    // an alias of that name left in the KMS by something else (an earlier run with another catalog)
    const d = await openInstrumentedDriver(kms);
    await direct.send(new CreateAliasCommand({ AliasName: `alias/${tag}-tk`, TargetKeyId: await d.generateSymmetricKey() }));
    await d.close?.();
    const r = await migrate({ from: src, to: target, rekey: true });
    assert.deepEqual(r.failed, [`${tag}-tk`]);
    assert.match(r.errors[0]!.error, /alias 'alias\/[^']+-tk' already exists/);
    assert.equal(r.migrated, 0);
    const orphans = (await kmsKeys(`${tag}-tk `)).filter((k) => k.state === 'Enabled');
    assert.deepEqual(orphans, [], 'the new key whose alias was taken is not left enabled');
  });

  it('an endpoint that imports less than its connection says (local-kms, undeclared): EC keys re-keyed after its refusal, aes256 imported, none fails', async () => {
    inj.configure({});
    const src = `sqlite:${join(dir, 'ec.db')}`;
    const kr = await openKeyring(src);
    for (let i = 0; i < 6; i++) await kr.create(`${tag}-ec${i}`, { type: 'ec-p256' });
    await kr.create(`${tag}-aes`);
    await kr.close();
    const r = await migrate({ from: src, to: kms, rekey: true });
    assert.deepEqual([r.failed, r.refused], [[], []], JSON.stringify(r.errors));
    assert.equal(r.migrated, 7);
    assert.equal(r.verified, 7);
    const map = readFileSync(r.rekeyMap!, 'utf8').trim().split('\n');
    assert.equal(map.length, 6, 'the six EC keys were re-keyed (the target cannot import them)');
    const ext = await openKeyring(kms);
    assert.equal((await ext.describe(`${tag}-aes`)).protection, 'external');
    await ext.close();
  });

  it('a CreateKey whose answer is lost ends with exactly one KMS key, adopted', async () => {
    inj.configure({ drop: { op: 'CreateKey', count: 1 } });
    inj.reset();
    const d = await openInstrumentedDriver(kms);
    const name = `${tag}-lost`;
    const id = await d.generateSigningKeyPair('ec-p256', name);
    const s = inj.stats();
    assert.equal(s.ops.CreateKey!.dropped, 1, 'the answer really was lost');
    const keys = await kmsKeys(name);
    assert.deepEqual(keys, [{ id, state: 'Enabled' }]);
    assert.equal((await direct.send(new DescribeKeyCommand({ KeyId: `alias/${name}` }))).KeyMetadata!.KeyId, id);
    await d.close?.();
  });

  it('a failed alias creation after CreateKey leaves no enabled orphan key', async () => {
    inj.configure({});
    const d = await openInstrumentedDriver(kms);
    const name = `${tag}-taken`;
    const first = await d.generateSymmetricKey(`${name}-a`);
    await direct.send(new CreateAliasCommand({ AliasName: `alias/${name}`, TargetKeyId: first }));
    await assert.rejects(d.generateSymmetricKey(name), (e) => isKeyportError(e, 'EXISTS'));
    const orphans = (await kmsKeys(`${name} `)).filter((k) => k.state === 'Enabled');
    assert.deepEqual(orphans, []);
    await d.close?.();
  });

  it('a migration into AWS KMS interrupted while imports are in flight leaves no enabled KMS key without its record; the re-run ends with one per key', async () => {
    const prefix = `${tag}-intr`;
    const src = `sqlite:${join(dir, 'intr.db')}`;
    const kr = await openKeyring(src);
    for (let i = 0; i < 24; i++) await kr.create(`${prefix}-${String(i).padStart(2, '0')}`);
    await kr.close();
    const journal = join(dir, 'intr.journal');
    // slow calls: each import is five of them, so a signal finds imports at every step (no quota, and
    // nothing learned from earlier tests' quotas: a fresh process's limiters)
    resetLimiters();
    inj.configure({ latencyMs: 120 });
    inj.reset();
    const ac = new AbortController();
    const running = migrate({ from: src, to: kms, pattern: `${prefix}-*`, journal, concurrency: 8, signal: ac.signal });
    while ((inj.stats().ops.ImportKeyMaterial?.forwarded ?? 0) < 3) await new Promise((r) => setTimeout(r, 5));
    ac.abort();
    const r = await running;
    assert.equal(r.interrupted, true);
    const target = (await openKeyring(kms)) as StoreKeyring;
    const referenced = new Set<string>();
    for (const name of (await target.list(`${prefix}-*`)).names)
      for (const v of (await target.store.get(name)).versions) if (v.external) referenced.add(v.external.keyId);
    await target.close();
    const made = await kmsKeys(`${prefix}-`);
    console.log(`# interrupted: ${referenced.size} records, KMS keys ${JSON.stringify(made.map((k) => k.state))}`);
    // every KMS key still live is one a record references: none imported and left behind
    const live = made.filter((k) => k.state !== 'PendingDeletion');
    assert.deepEqual(
      live.filter((k) => !referenced.has(k.id)),
      [],
    );
    inj.configure({});
    const again = await migrate({ from: src, to: kms, pattern: `${prefix}-*`, journal });
    assert.deepEqual([again.failed, again.interrupted, again.verified], [[], false, 24 - r.verified], JSON.stringify(again.errors));
    const end = (await kmsKeys(`${prefix}-`)).filter((k) => k.state !== 'PendingDeletion');
    assert.equal(end.length, 24, 'one live KMS key per key');
    assert.deepEqual(
      end.filter((k) => k.state !== 'Enabled'),
      [],
    );
  });
});
