/**
 * KMS outages against a real PyKMIP (a private instance, see test/support/outage.ts): an envelope
 * keyring whose wrapper key lives in the KMS, the KMS stopped / frozen / restarted under it, and wrong
 * credentials. node:crypto checks every signature independently.
 *
 * What must hold: while the KMS is down every operation that needs it fails with ONE line, a
 * KeyportError UNAVAILABLE or TIMEOUT with retryable true, nothing secret in it; operations work again
 * once the KMS is back (same port, see outage.ts); the unsealed-key cache keeps serving signs of keys
 * it already holds through the outage; bad credentials fail with AUTH (not retryable) after exactly one
 * connection per call (no retry storm), counted by a TCP relay in front of the server.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPublicKey, randomBytes, verify } from 'node:crypto';
import { isKeyportError, type KeyportError } from '../../src/errors.js';
import { openDriver } from '../../src/kms/registry.js';
import { instrument } from '../../src/kms/instrument.js';
import type { AuditRecord } from '../../src/kms/audit.js';
import { openKeyring } from '../../src/keys/open.js';
import type { StoreKeyring } from '../../src/keys/keyring.js';
import type { Driver } from '../../src/kms/driver.js';
import { skipUnless } from '../support/testbed.js';
import { privatePykmip, countingRelay, type PrivateKmip } from '../support/outage.js';

const SECRETISH = /BEGIN|PRIVATE|pin|password/i;

/** a clean outage error: one line, retryable, UNAVAILABLE or TIMEOUT, nothing secret */
async function assertOutage(p: Promise<unknown>, what: string, codes: string[] = ['UNAVAILABLE', 'TIMEOUT']): Promise<KeyportError> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught, `${what}: succeeded while the KMS was down`);
  assert.ok(isKeyportError(caught), `${what}: not a KeyportError: ${String(caught)}`);
  const e = caught as KeyportError;
  assert.ok(codes.includes(e.code), `${what}: code ${e.code} (${e.message}), expected ${codes.join('/')}`);
  assert.equal(e.retryable, true, `${what}: not retryable`);
  assert.ok(!e.message.includes('\n'), `${what}: message is not one line: ${e.message}`);
  assert.ok(e.message.length < 400, `${what}: message too long`);
  assert.ok(!SECRETISH.test(e.message), `${what}: message looks secret: ${e.message}`);
  return e;
}

async function verifiedSign(kr: StoreKeyring, name: string): Promise<void> {
  const msg = randomBytes(64);
  const sig = await kr.sign(name, msg);
  const pub = createPublicKey({ key: await kr.publicKey(name), format: 'der', type: 'spki' });
  assert.ok(
    verify((await kr.describe(name)).type === 'ec-p384' ? 'sha384' : 'sha256', msg, pub, sig),
    `signature of '${name}' does not verify with node:crypto`,
  );
}

describe('KMS outage: envelope keyring on a private PyKMIP', { skip: skipUnless('pykmip') }, () => {
  let kmip: PrivateKmip;
  let dir: string;
  let wrapper: string;
  let admin: Driver;

  before(async () => {
    kmip = await privatePykmip('kms');
    dir = mkdtempSync(join(tmpdir(), 'keyport-outage-'));
    // every driver the keyring opens is instrument()ed: its audit trail counts the attempts per call
    process.env.KEYPORT_KMS_AUDIT = join(dir, 'kms-audit.jsonl');
    // a short per-call timeout so a frozen KMS answers TIMEOUT quickly
    admin = await openDriver(kmip.kmsUri({ timeout: '5s' }));
    const id = await admin.generateSymmetricKey(`outage-wrapper-${randomBytes(4).toString('hex')}`);
    wrapper = `${kmip.kmsUri({ timeout: '2s' })};key-id=${id}`;
  });

  const audit = (): AuditRecord[] =>
    existsSync(join(dir, 'kms-audit.jsonl'))
      ? readFileSync(join(dir, 'kms-audit.jsonl'), 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as AuditRecord)
      : [];

  after(async () => {
    delete process.env.KEYPORT_KMS_AUDIT;
    await admin?.close?.().catch(() => undefined);
    await kmip?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('without the cache: stopped KMS -> one-line retryable errors for sign, decrypt and create; all work again after a restart', async () => {
    const kr = await openKeyring({ store: `sqlite:${join(dir, 'nocache.db')}`, envelope: { wrapper } }, { cacheTtlMs: 0 });
    try {
      await kr.create('sig', { type: 'ec-p256' });
      await kr.create('aes');
      assert.equal((await kr.describe('sig')).protection, 'sealed');
      await verifiedSign(kr, 'sig');
      const ct = await kr.encrypt('aes', Buffer.from('hello'));

      await kmip.stop();
      const seen = audit().length;
      const e1 = await assertOutage(kr.sign('sig', Buffer.from('x')), 'sign');
      // bounded retries, not a storm: one audit line for the call, at most 1 + 4 attempts
      const lines = audit().slice(seen);
      assert.deepEqual(
        lines.map((l) => [l.operation, l.outcome, l.code]),
        [['decryptSymmetric', 'error', 'UNAVAILABLE']],
      );
      assert.ok(lines[0]!.attempts >= 2 && lines[0]!.attempts <= 5, `attempts ${lines[0]!.attempts}`);
      await assertOutage(kr.decrypt('aes', ct), 'decrypt');
      await assertOutage(kr.encrypt('aes', Buffer.from('x')), 'encrypt');
      await assertOutage(kr.create('sig2', { type: 'ed25519' }), 'create (seal)');
      // the failed create left nothing behind
      await assert.rejects(kr.describe('sig2'), (e) => isKeyportError(e, 'NOT_FOUND'));
      // public-key operations need no KMS
      assert.ok((await kr.publicKey('sig')).length > 0);
      assert.match(e1.message, /KMIP|127\.0\.0\.1/);

      await kmip.restart();
      await verifiedSign(kr, 'sig');
      assert.equal((await kr.decrypt('aes', ct)).toString(), 'hello');
      await kr.create('sig2', { type: 'ed25519' });
      const msg = randomBytes(32);
      const pub = createPublicKey({ key: await kr.publicKey('sig2'), format: 'der', type: 'spki' });
      assert.ok(verify(null, msg, pub, await kr.sign('sig2', msg)));
    } finally {
      await kr.close();
    }
  });

  it('with the cache (default): a key already unsealed keeps signing through the outage; sealing new keys fails cleanly until the KMS is back', async () => {
    const kr = await openKeyring({ store: `sqlite:${join(dir, 'cache.db')}`, envelope: { wrapper } });
    const cold = await openKeyring({ store: `sqlite:${join(dir, 'cache.db')}`, envelope: { wrapper } });
    try {
      await kr.create('sig', { type: 'ec-p256' });
      await kr.create('other', { type: 'ec-p384' });
      await verifiedSign(kr, 'sig'); // unsealed once, now cached

      await kmip.stop();
      for (let i = 0; i < 20; i++) await verifiedSign(kr, 'sig'); // served from the cache
      // a key never unsealed by this keyring, and another keyring with a cold cache, need the KMS
      await assertOutage(kr.sign('other', Buffer.from('x')), 'sign of an uncached key');
      await assertOutage(cold.sign('sig', Buffer.from('x')), 'sign on a cold keyring');
      await assertOutage(kr.create('new', { type: 'ec-p256' }), 'create (seal)');

      await kmip.restart();
      await verifiedSign(kr, 'other');
      await verifiedSign(cold, 'sig');
      await kr.create('new', { type: 'ec-p256' });
      await verifiedSign(kr, 'new');
    } finally {
      await kr.close();
      await cold.close();
    }
  });

  it('a frozen KMS (accepts, never answers) -> TIMEOUT, retryable, one line; recovers when it answers again', async () => {
    const fast = wrapper.replace(';timeout=2s', ';timeout=1s');
    const kr = await openKeyring({ store: `sqlite:${join(dir, 'frozen.db')}`, envelope: { wrapper: fast } }, { cacheTtlMs: 0 });
    try {
      await kr.create('sig', { type: 'ec-p256' });
      await verifiedSign(kr, 'sig');
      kmip.freeze();
      try {
        const seen = audit().length;
        await assertOutage(kr.sign('sig', Buffer.from('x')), 'sign on a frozen KMS', ['TIMEOUT']);
        const lines = audit().slice(seen);
        assert.equal(lines.length, 1);
        assert.equal(lines[0]!.code, 'TIMEOUT');
        assert.ok(lines[0]!.attempts <= 5, `attempts ${lines[0]!.attempts}`);
      } finally {
        kmip.thaw();
      }
      await verifiedSign(kr, 'sig');
    } finally {
      await kr.close();
    }
  });

  it('wrong credentials: AUTH, one line, not retryable, one connection per call (no retry storm)', async () => {
    const relay = await countingRelay(kmip.port);
    try {
      const id = wrapper.split('key-id=')[1]!;
      const rogueKms = kmip.kmsUri({ port: relay.port, cert: kmip.env.KMIP_ROGUE_CERT!, key: kmip.env.KMIP_ROGUE_KEY! });
      // protecting a store with a wrapper we may not use: refused before anything is sealed
      let caught: unknown;
      try {
        await openKeyring({ store: `sqlite:${join(dir, 'rogue.db')}`, envelope: { wrapper: `${rogueKms};key-id=${id}` } });
      } catch (e) {
        caught = e;
      }
      assert.ok(isKeyportError(caught, 'AUTH'), `expected AUTH, got ${String(caught)}`);
      const e = caught as KeyportError;
      assert.equal(e.retryable, false);
      assert.ok(!e.message.includes('\n') && !SECRETISH.test(e.message), e.message);
      assert.match(e.message, /cert/i, 'the message should say what to fix');
      assert.equal(relay.connections, 1, `one refused handshake, not ${relay.connections}`);
      const authLines = audit().filter((l) => l.code === 'AUTH');
      assert.equal(authLines.length, 1);
      assert.equal(authLines[0]!.attempts, 1, 'AUTH is never retried');

      // the same driver behind instrument(): no retry of a non-retryable error, one audit line with attempts 1
      const lines: AuditRecord[] = [];
      const d = instrument(await openDriver(rogueKms), {
        kmsUri: rogueKms,
        retries: 4,
        baseDelayMs: 1,
        audit: { write: (r) => lines.push(r) },
      });
      for (let i = 0; i < 3; i++) await assert.rejects(d.decryptSymmetric(id, randomBytes(60)), (x) => isKeyportError(x, 'AUTH'));
      await d.close?.();
      assert.equal(lines.length, 3);
      assert.deepEqual(
        lines.map((l) => [l.operation, l.outcome, l.code, l.attempts]),
        Array(3).fill(['decryptSymmetric', 'error', 'AUTH', 1]),
      );
      assert.equal(relay.connections, 1 + 3, `three calls must open three connections, not ${relay.connections - 1}`);

      // and a retryable failure IS retried by instrument(), visibly: a stopped relay target = UNAVAILABLE
      const dead = await countingRelay(1); // port 1: nothing listens, every connection is reset at once
      const lines2: AuditRecord[] = [];
      const d2 = instrument(await openDriver(kmip.kmsUri({ port: dead.port })), {
        kmsUri: 'kmip:dead',
        retries: 2,
        baseDelayMs: 1,
        audit: { write: (r) => lines2.push(r) },
      });
      await assertOutage(d2.decryptSymmetric(id, randomBytes(60)), 'instrumented call to a dead KMS');
      await d2.close?.();
      await dead.close();
      assert.equal(lines2.length, 1);
      assert.equal(lines2[0]!.attempts, 3, 'retries: 2 means three attempts in all');
      assert.equal(dead.connections, 3);
    } finally {
      await relay.close();
    }
  });
});
