/**
 * instrument(): timeouts, retries with back-off, error mapping and the audit trail. The driver here is
 * a small scripted test double of the Driver interface: what is under test is the wrapper, not a KMS
 * (the wrapper over a real driver is exercised at the end with local:).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { err, isKeyportError, KeyportError } from '../../src/errors.js';
import type { Driver } from '../../src/kms/driver.js';
import { instrument, openInstrumentedDriver } from '../../src/kms/instrument.js';
import { auditSinkFromEnv, fileAuditSink, memoryAuditSink } from '../../src/kms/audit.js';
import { isOutcomeUnknown } from '../../src/kms/retry.js';
import { tempDir } from '../support/tmp.js';

type Step = 'ok' | Error | 'hang';

/** a Driver whose calls follow a script: each call takes the next step ('ok' = the normal answer) */
function scripted(steps: Step[] = [], answers: Partial<Record<string, unknown>> = {}) {
  const calls: string[] = [];
  const next = async <T>(op: string, value: T): Promise<T> => {
    calls.push(op);
    const s = steps.shift() ?? 'ok';
    if (s === 'hang') return new Promise<T>(() => undefined);
    if (s instanceof Error) throw s;
    return (answers[op] as T) ?? value;
  };
  const d: Driver = {
    name: 'scripted',
    health: async () => next('health', { state: 'ok' as const }),
    supportedSigningKeySpecs: () => ['ec-p256'],
    supportedSigningAlgoSpecs: () => ['ecdsa-sha256'],
    supportedEncryptionKeySpecs: () => [],
    supportedEncryptionAlgoSpecs: () => [],
    generateSigningKeyPair: () => next('generateSigningKeyPair', 'sig-1'),
    generateEncryptionKeyPair: () => next('generateEncryptionKeyPair', 'enc-1'),
    generateSymmetricKey: () => next('generateSymmetricKey', 'sym-1'),
    sign: () => next('sign', Buffer.alloc(70, 1)),
    decryptAsymmetric: () => next('decryptAsymmetric', Buffer.alloc(32, 2)),
    encryptSymmetric: (_k, pt) => next('encryptSymmetric', Buffer.concat([Buffer.alloc(12), pt.map((b) => b ^ 0x5a), Buffer.alloc(16)])),
    decryptSymmetric: (_k, ct) => next('decryptSymmetric', Buffer.from(ct.subarray(12, ct.length - 16).map((b) => b ^ 0x5a))),
    getPublicKey: () => next('getPublicKey', { spki: Buffer.alloc(91), spec: 'ec-p256' as const }),
    keyExistsAndIsActive: () => next('keyExistsAndIsActive', undefined),
    deleteKey: () => next('deleteKey', undefined),
  };
  return { d, calls };
}

const fast = {
  kmsUri: 'test:endpoint=http://127.0.0.1:9;secret-access-key=SHOULD-NOT-APPEAR',
  baseDelayMs: 1,
  maxDelayMs: 5,
  timeoutMs: 2000,
};

describe('instrument: retries', () => {
  test('a call failing retryably N times then succeeding is retried with back-off and succeeds', async () => {
    const audit = memoryAuditSink();
    const { d, calls } = scripted([err('UNAVAILABLE', 'refused'), err('THROTTLED', 'slow down'), err('TIMEOUT', 't'), 'ok']);
    const w = instrument(d, { ...fast, audit });
    await w.keyExistsAndIsActive('k1');
    assert.equal(calls.length, 4);
    assert.equal(audit.records.length, 1);
    assert.equal(audit.records[0]!.outcome, 'ok');
    assert.equal(audit.records[0]!.attempts, 4);
    assert.equal(audit.records[0]!.keyId, 'k1');
  });

  test('retries are bounded: the last retryable error comes out after retries+1 attempts', async () => {
    const audit = memoryAuditSink();
    const { d, calls } = scripted(Array.from({ length: 10 }, () => err('UNAVAILABLE', 'reset')));
    const w = instrument(d, { ...fast, retries: 2, audit });
    await assert.rejects(w.sign('k', Buffer.from('x'), 'ecdsa-sha256'), (e) => isKeyportError(e, 'UNAVAILABLE'));
    assert.equal(calls.length, 3);
    assert.equal(audit.records[0]!.attempts, 3);
    assert.equal(audit.records[0]!.code, 'UNAVAILABLE');
  });

  test('throttling is retried while the deadline allows, not a fixed number of times, then surfaces', async () => {
    const ok = scripted(Array.from({ length: 4 }, () => err('THROTTLED', 'rate exceeded')));
    await instrument(ok.d, { ...fast, kmsUri: 'test:throttle-a', retries: 2 }).sign('k', Buffer.from('x'), 'ecdsa-sha256');
    assert.equal(ok.calls.length, 5);
    const never = scripted(Array.from({ length: 100_000 }, () => err('THROTTLED', 'rate exceeded')));
    const w = instrument(never.d, { ...fast, kmsUri: 'test:throttle-b', deadlineMs: 300 });
    await assert.rejects(
      w.sign('k', Buffer.from('x'), 'ecdsa-sha256'),
      (e) => isKeyportError(e, 'THROTTLED') || isKeyportError(e, 'TIMEOUT'),
    );
  });

  test('a driver that retries its own requests gets one attempt per call, throttling included', async () => {
    for (const e of [err('THROTTLED', 'rate exceeded'), err('UNAVAILABLE', 'down')]) {
      const { d, calls } = scripted([e]);
      const w = instrument({ ...d, retriesRequests: true }, { ...fast, kmsUri: 'test:own' });
      await assert.rejects(w.sign('k', Buffer.from('x'), 'ecdsa-sha256'), (x) => x === e);
      assert.deepEqual(calls, ['sign']);
    }
  });

  test("a caller's AbortSignal cancels a waiting call and reaches the driver", async () => {
    let seen: AbortSignal | undefined;
    const { d } = scripted();
    const w = instrument({ ...d, sign: (_k, _d, _a, o) => ((seen = o?.signal), new Promise<Buffer>(() => undefined)) }, fast);
    const ac = new AbortController();
    const p = w.sign('k', Buffer.from('x'), 'ecdsa-sha256', { signal: ac.signal });
    setTimeout(() => ac.abort(), 20);
    await assert.rejects(p, (e) => isKeyportError(e, 'TIMEOUT') && /cancelled/.test((e as Error).message));
    assert.equal(seen?.aborted, true);
  });

  for (const code of ['AUTH', 'PERMISSION', 'NOT_FOUND', 'KEY_DISABLED', 'INVALID_CIPHERTEXT'] as const) {
    test(`no retry on ${code}`, async () => {
      const { d, calls } = scripted([err(code, 'no'), 'ok']);
      const w = instrument(d, fast);
      await assert.rejects(w.decryptSymmetric('k', Buffer.alloc(40)), (e) => isKeyportError(e, code));
      assert.equal(calls.length, 1);
    });
  }

  test('a non-keyport error becomes one-line INTERNAL and is not retried', async () => {
    const { d, calls } = scripted([new TypeError('boom\n    at somewhere (file.js:1:1)'), 'ok']);
    const w = instrument(d, fast);
    await assert.rejects(w.getPublicKey('k'), (e) => {
      assert.ok(isKeyportError(e, 'INTERNAL'));
      assert.doesNotMatch((e as Error).message, /\n/);
      assert.match((e as Error).message, /scripted/);
      return true;
    });
    assert.equal(calls.length, 1);
  });

  test('key creation is retried when the request never reached the KMS, never after an unknown outcome', async () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });
    const a = scripted([err('UNAVAILABLE', 'refused', { cause: refused }), err('THROTTLED', 'slow down'), 'ok']);
    assert.equal(await instrument(a.d, fast).generateSymmetricKey('n'), 'sym-1');
    assert.equal(a.calls.length, 3);
    const b = scripted([err('TIMEOUT', 'slow'), 'ok']);
    await assert.rejects(
      instrument(b.d, fast).generateSigningKeyPair('ec-p256', 'n'),
      (e) => isKeyportError(e, 'TIMEOUT') && isOutcomeUnknown(e),
    );
    assert.equal(b.calls.length, 1);
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    const c = scripted([err('UNAVAILABLE', 'reset', { cause: reset }), 'ok']);
    await assert.rejects(instrument(c.d, fast).generateSymmetricKey('n'), (e) => isKeyportError(e, 'UNAVAILABLE') && isOutcomeUnknown(e));
    assert.equal(c.calls.length, 1);
  });

  test('a retried delete whose first attempt may have worked treats NOT_FOUND as done', async () => {
    const { d, calls } = scripted([err('UNAVAILABLE', 'reset'), err('NOT_FOUND', 'gone')]);
    await instrument(d, fast).deleteKey('k');
    assert.equal(calls.length, 2);
    const plain = scripted([err('NOT_FOUND', 'gone')]);
    await assert.rejects(instrument(plain.d, fast).deleteKey('k'), (e) => isKeyportError(e, 'NOT_FOUND'));
  });
});

describe('instrument: timeouts and health', () => {
  test('a hanging call fails with TIMEOUT (retryable) and is retried', async () => {
    const audit = memoryAuditSink();
    const { d, calls } = scripted(['hang', 'hang', 'hang']);
    const w = instrument(d, { ...fast, timeoutMs: 30, retries: 1, audit });
    await assert.rejects(w.encryptSymmetric('k', Buffer.from('x')), (e) => {
      assert.ok(e instanceof KeyportError);
      assert.equal(e.code, 'TIMEOUT');
      assert.equal(e.retryable, true);
      return true;
    });
    assert.equal(calls.length, 2);
    assert.equal(audit.records[0]!.code, 'TIMEOUT');
  });

  test('health never throws: a throwing or hanging health reports failed', async () => {
    const t = scripted([new Error('socket hang up')]);
    const h1 = await instrument(t.d, fast).health();
    assert.equal(h1.state, 'failed');
    const h = scripted(['hang']);
    const h2 = await instrument(h.d, { ...fast, timeoutMs: 30 }).health();
    assert.equal(h2.state, 'failed');
    assert.equal((await instrument(scripted().d, fast).health()).state, 'ok');
  });

  test('optional methods stay absent when the driver lacks them', () => {
    const w = instrument(scripted().d, fast);
    assert.equal(w.importKey, undefined);
    assert.equal(w.listKeys, undefined);
  });
});

describe('instrument: audit', () => {
  test('audit lines hold sizes, never plaintexts, ciphertexts, signatures or key material', async () => {
    const dir = tempDir();
    const path = join(dir, 'audit.log');
    const file = fileAuditSink(path);
    const mem = memoryAuditSink();
    const both = { write: (r: Parameters<typeof file.write>[0]) => (file.write(r), mem.write(r)) };
    const { d } = scripted([], {});
    const secret = randomBytes(32);
    const imported = randomBytes(32);
    const w = instrument({ ...d, importKey: async () => 'imp-1' }, { ...fast, audit: both });
    const ct = await w.encryptSymmetric('wrap', secret);
    const back = await w.decryptSymmetric('wrap', ct);
    assert.ok(back.equals(secret));
    const sig = await w.sign('sig-1', secret, 'ecdsa-sha256');
    await w.importKey!({ kind: 'symmetric', spec: 'aes256', secret: imported }, 'imported-key');
    await w.health();

    const text = readFileSync(path, 'utf8');
    assert.equal(text, mem.text());
    const lines = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(
      lines.map((l) => l.operation),
      ['encryptSymmetric', 'decryptSymmetric', 'sign', 'importKey', 'health'],
    );
    for (const l of lines) {
      for (const f of ['time', 'kms', 'operation', 'latencyMs', 'outcome', 'attempts']) assert.ok(f in l, `${f} in ${JSON.stringify(l)}`);
    }
    assert.equal(lines[0]!.inputBytes, 32);
    assert.equal(lines[0]!.outputBytes, ct.length);
    assert.equal(lines[2]!.outputBytes, sig.length);
    assert.equal(lines[3]!.keyId, 'imp-1');
    for (const bytes of [secret, ct, sig, imported]) {
      for (const enc of [
        bytes.toString('hex'),
        bytes.toString('base64'),
        bytes.toString('base64url'),
        bytes.subarray(0, 12).toString('hex'),
      ]) {
        assert.ok(!text.toLowerCase().includes(enc.toLowerCase()), 'audit log holds key or data bytes');
      }
    }
    assert.doesNotMatch(text, /SHOULD-NOT-APPEAR/, 'the URI is redacted');
    assert.equal(statSync(path).mode & 0o777, 0o600);
  });

  test('KEYPORT_KMS_AUDIT: unset = off, set = a file sink', () => {
    assert.equal(auditSinkFromEnv({}), undefined);
    const path = join(tempDir(), 'a.log');
    const s = auditSinkFromEnv({ KEYPORT_KMS_AUDIT: path })!;
    s.write({ time: 't', kms: 'k', operation: 'op', latencyMs: 1, outcome: 'ok', attempts: 1 });
    assert.equal(JSON.parse(readFileSync(path, 'utf8')).operation, 'op');
  });

  test('openInstrumentedDriver wraps a real driver (local:) and audits its calls', async () => {
    const dir = tempDir();
    const audit = memoryAuditSink();
    const d = await openInstrumentedDriver(`local:${dir}/`, { audit });
    const id = await d.generateSymmetricKey('instrumented');
    const pt = randomBytes(24);
    assert.ok((await d.decryptSymmetric(id, await d.encryptSymmetric(id, pt))).equals(pt));
    await assert.rejects(d.keyExistsAndIsActive(`${dir}/missing.key`), (e) => isKeyportError(e, 'NOT_FOUND'));
    assert.deepEqual(
      audit.records.map((r) => [r.operation, r.outcome, r.attempts]),
      [
        ['generateSymmetricKey', 'ok', 1],
        ['encryptSymmetric', 'ok', 1],
        ['decryptSymmetric', 'ok', 1],
        ['keyExistsAndIsActive', 'error', 1],
      ],
    );
    assert.ok(!audit.text().includes(pt.toString('hex')));
  });
});
