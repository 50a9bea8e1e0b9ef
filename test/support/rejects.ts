/** Shared assertion: a promise rejects with a one-line KeyportError of the given code. */
import assert from 'node:assert/strict';
import { isKeyportError, type ErrorCode, type KeyportError } from '../../src/errors.js';

/** await p; it must fail with a KeyportError `code` on one line (and `retryable` when given); returns it */
export async function rejectsCode(p: Promise<unknown>, code: ErrorCode, retryable?: boolean): Promise<KeyportError> {
  try {
    await p;
  } catch (e) {
    assert.ok(isKeyportError(e), `expected a KeyportError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, `expected ${code}, got ${e.code}: ${e.message}`);
    assert.ok(!e.message.includes('\n'), `one-line message: ${e.message}`);
    if (retryable !== undefined) assert.equal(e.retryable, retryable, `${code} retryable must be ${retryable}`);
    return e;
  }
  assert.fail(`expected ${code}, but it resolved`);
}

/** await p; it must fail with a one-line KeyportError (any code); returns it */
export async function rejectsKeyport(p: Promise<unknown>): Promise<KeyportError> {
  try {
    await p;
  } catch (e) {
    assert.ok(isKeyportError(e), `expected a KeyportError, got ${String(e)}`);
    assert.ok(!e.message.includes('\n'), 'one-line message');
    return e;
  }
  assert.fail('expected a rejection');
}
