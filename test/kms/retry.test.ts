/**
 * runKmsCall's deadline without a caller signal: calls share deadline signals (one controller and
 * timer for calls that end about together), and the deadline still holds. What is under test is the
 * retry layer itself; the calls are plain promises.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { err, isKeyportError, type KeyportError } from '../../src/errors.js';
import { DEFAULT_RETRY_POLICY, runKmsCall, sharedDeadlines, type KmsCall } from '../../src/kms/retry.js';

const call = (deadlineMs: number, signal?: AbortSignal): KmsCall => ({
  op: 'Sign',
  kms: 'test:',
  idempotent: true,
  signal,
  policy: { ...DEFAULT_RETRY_POLICY, attemptTimeoutMs: 0, deadlineMs },
  map: (e) => (isKeyportError(e) ? e : err('INTERNAL', String(e))),
});

/** a KMS call that never answers but stops when its signal fires */
const hanging = (seen: (AbortSignal | undefined)[]) => (s: AbortSignal | undefined) => {
  seen.push(s);
  return new Promise<never>((_, reject) => s?.addEventListener('abort', () => reject(s.reason), { once: true }));
};

const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('retry: deadlines without a caller signal', () => {
  test('a hanging call without a caller signal stops at its deadline, and its signal reached the call', async () => {
    const seen: (AbortSignal | undefined)[] = [];
    await assert.rejects(
      runKmsCall(call(80), hanging(seen)),
      (e: KeyportError) => isKeyportError(e, 'TIMEOUT') && /did not complete Sign within 80 ms/.test(e.message),
    );
    assert.equal(seen.length, 1);
    assert.equal(seen[0]?.aborted, true);
    assert.equal(sharedDeadlines(), 0);
  });

  test('many concurrent hanging calls all stop at the deadline, sharing a few signals', async () => {
    const seen: (AbortSignal | undefined)[] = [];
    const results = await Promise.allSettled(Array.from({ length: 200 }, () => runKmsCall(call(100), hanging(seen))));
    assert.ok(results.every((r) => r.status === 'rejected' && isKeyportError(r.reason, 'TIMEOUT')));
    const distinct = new Set(seen);
    assert.ok(distinct.size >= 200 / 64 && distinct.size < 200, `${distinct.size} signals for 200 calls`);
    assert.equal(sharedDeadlines(), 0);
  });

  test('calls that end leave no timer behind (nothing holds the process open)', async () => {
    const before = timers();
    const values = await Promise.all(Array.from({ length: 300 }, (_, i) => runKmsCall(call(300_000), async (s) => (s?.aborted ? -1 : i))));
    assert.deepEqual(
      values.map((v) => v.value),
      Array.from({ length: 300 }, (_, i) => i),
    );
    assert.equal(sharedDeadlines(), 0);
    assert.equal(timers(), before);
  });

  test('an attempt the call bounds itself (attemptBoundMs) gets no signal while the deadline is further away', async () => {
    const seen: (AbortSignal | undefined)[] = [];
    const r = await runKmsCall({ ...call(300_000), attemptBoundMs: 10_000 }, async (s) => (seen.push(s), 7));
    assert.equal(r.value, 7);
    assert.equal(seen.length, 1);
    assert.equal(seen[0], undefined);
    // closer than the bound: the deadline's signal, and the deadline holds
    await assert.rejects(runKmsCall({ ...call(80), attemptBoundMs: 10_000 }, hanging(seen)), (e) => isKeyportError(e, 'TIMEOUT'));
    assert.equal(seen[1]?.aborted, true);
    // a caller's signal always reaches the attempt
    const ac = new AbortController();
    await runKmsCall({ ...call(300_000, ac.signal), attemptBoundMs: 10_000 }, async (s) => (seen.push(s), 7));
    assert.ok(seen[2] instanceof AbortSignal);
    assert.equal(sharedDeadlines(), 0);
  });

  test("a caller's signal still cancels a call (its own deadline timer)", async () => {
    const ac = new AbortController();
    const seen: (AbortSignal | undefined)[] = [];
    const p = runKmsCall(call(300_000, ac.signal), hanging(seen));
    setTimeout(() => ac.abort(), 10);
    await assert.rejects(p, (e: KeyportError) => isKeyportError(e, 'TIMEOUT') && /cancelled/.test(e.message));
    assert.equal(seen[0]?.aborted, true);
  });
});
