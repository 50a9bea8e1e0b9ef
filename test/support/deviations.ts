/**
 * The conformance kit against an emulator that is not AWS / a real HSM: every check must pass except
 * the listed deviations, each of which must still happen exactly as described (so a fixed emulator, or
 * a driver change, shows up as a failing test rather than a stale list). Returns the labels that passed.
 */
import assert from 'node:assert/strict';
import type { CheckResult } from '../../src/kms/conformance.js';

export interface Deviation {
  check: string;
  spec?: string;
  outcome: 'fail' | 'skip';
  /** the check's detail must match this */
  detail: RegExp;
  /** why the emulator behaves so (from its source) */
  why?: string;
}

export const checkLabel = (r: { check: string; spec?: string }) => `${r.check}${r.spec ? `[${r.spec}]` : ''}`;

export function assertOnlyDeviations(results: CheckResult[], listed: Deviation[]): string[] {
  const known = new Map(listed.map((k) => [checkLabel(k), k]));
  const unexpected = results
    .filter((r) => r.outcome !== 'pass' && !known.has(checkLabel(r)))
    .map((r) => `${r.outcome} ${checkLabel(r)}: ${r.detail ?? ''}`);
  assert.deepEqual(unexpected, []);
  for (const k of listed) {
    const r = results.find((x) => checkLabel(x) === checkLabel(k));
    assert.ok(r, `${checkLabel(k)} did not run`);
    assert.equal(
      r.outcome,
      k.outcome,
      `${checkLabel(k)} is now ${r.outcome} (${r.detail ?? ''})${k.why ? `; it was listed because ${k.why}` : ''}`,
    );
    assert.match(r.detail ?? '', k.detail, `${checkLabel(k)}: ${r.detail}`);
  }
  return results.filter((r) => r.outcome === 'pass').map(checkLabel);
}
