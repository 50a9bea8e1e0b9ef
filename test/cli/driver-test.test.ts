/**
 * `keyport driver-test` and `keyport doctor` as users call them: the built CLI (bin/keyport.js runs
 * dist/, built by `npm test` / `npm run build`), exit codes, JSON, one-line errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';

const BIN = join(ROOT, 'bin', 'keyport.js');

function kp(args: string[], cwd = ROOT) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, KEYPORT_STORE: '', KEYPORT_KMS_AUDIT: '' },
    timeout: 180_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function oneLineError(stderr: string) {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one-line error, got:\n${stderr}`);
  assert.match(lines[0]!, /^keyport: /);
}

interface Out {
  uri: string;
  passed: number;
  failed: number;
  skipped: number;
  results: { check: string; spec?: string; outcome: string; ms: number; detail?: string }[];
}

test('driver-test local:DIR/ --json: exit 0, one JSON object, every check passes, no keys left', () => {
  const dir = tempDir();
  const r = kp(['driver-test', `local:${dir}/`, '--json']);
  assert.equal(r.code, 0, r.stderr + r.stdout.slice(0, 2000));
  const out = JSON.parse(r.stdout) as Out;
  assert.equal(out.uri, `local:${dir}/`);
  assert.equal(out.failed, 0);
  assert.ok(out.passed >= 50, `passed ${out.passed}`);
  assert.equal(out.passed + out.failed + out.skipped, out.results.length);
  assert.ok(out.results.every((x) => ['pass', 'skip'].includes(x.outcome) && typeof x.ms === 'number'));
  assert.deepEqual(readdirSync(dir), []);
});

test('driver-test table output and the example driver: module', () => {
  const r = kp(['driver-test', 'driver:./examples/driver-example']);
  assert.equal(r.code, 0, r.stderr + r.stdout.slice(0, 2000));
  const lines = r.stdout.split('\n');
  assert.match(lines[0]!, /^CHECK\s+SPEC\s+RESULT\s+TIME\s+DETAIL$/);
  assert.match(r.stdout, /signing\.sign-verify\s+ed25519\s+PASS/);
  assert.match(r.stdout, /\d+ passed, 0 failed, \d+ skipped/);
});

test('driver-test exits 1 when a check fails (a driver module that signs wrongly)', () => {
  const dir = tempDir();
  writeFileSync(
    join(dir, 'bad.mjs'),
    `import { factory as f } from ${JSON.stringify(join(ROOT, 'examples', 'driver-example', 'index.js'))};\n` +
      `export const factory = async (p, u) => { const d = await f(p, u); const s = d.sign.bind(d); d.sign = async (id, data, a) => s(id, Buffer.concat([data, Buffer.from('!')]), a); return d; };\n`,
  );
  const r = kp(['driver-test', `driver:${join(dir, 'bad.mjs')}`, '--json']);
  assert.equal(r.code, 1, r.stderr);
  const out = JSON.parse(r.stdout) as Out;
  assert.ok(out.failed > 0);
  assert.ok(out.results.some((x) => x.check === 'signing.sign-verify' && x.outcome === 'fail'));
});

test('driver-test: a bogus scheme is a usage error (exit 2, one line); a missing module exits 2 too', () => {
  const r = kp(['driver-test', 'bogus:x=1']);
  assert.equal(r.code, 2);
  oneLineError(r.stderr);
  assert.match(r.stderr, /not a KMS/);
  const m = kp(['driver-test', 'driver:./no/such/module.js']);
  assert.equal(m.code, 2);
  oneLineError(m.stderr);
  assert.equal(kp(['driver-test']).code, 2);
});

test('doctor: a working local wrapper key exits 0; a missing KMS key and a bad URI exit 1 with one-line fixes; a missing store is reported, not created; a clear store warns', () => {
  const dir = tempDir();
  writeFileSync(join(dir, 'wrapper.key'), randomBytes(32), { mode: 0o600 });
  const ok = kp(['doctor', `local:${join(dir, 'wrapper.key')}`, '--json']);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  const rep = JSON.parse(ok.stdout) as { ok: boolean; checks: { check: string; status: string; fix?: string }[] };
  assert.equal(rep.ok, true);
  assert.deepEqual(
    rep.checks.filter((c) => c.status === 'ok').map((c) => c.check),
    ['reachable', 'key', 'key probe'],
  );

  // the directory as a KMS (no key named): listing is checked; table output
  const table = kp(['doctor', `local:${dir}/`]);
  assert.equal(table.code, 0, table.stdout + table.stderr);
  assert.match(table.stdout, /^CHECK\s+STATUS\s+DETAIL\s+FIX$/m);

  const bad = kp(['doctor', 'kmip:host=127.0.0.1;port=1;cert=/nonexistent.pem;key=/nonexistent.pem;ca=/nonexistent.pem', '--json']);
  assert.equal(bad.code, 1);
  const badRep = JSON.parse(bad.stdout) as { ok: boolean; checks: { status: string; fix?: string }[] };
  assert.equal(badRep.ok, false);
  const problem = badRep.checks.find((c) => c.status === 'problem')!;
  assert.ok(problem.fix && !problem.fix.includes('\n'));

  // a store that is not there is a problem, and the doctor does not create it
  const missing = kp(['doctor', `sqlite:${join(dir, 'x.db')}`, '--json']);
  assert.equal(missing.code, 1, missing.stdout + missing.stderr);
  const missRep = JSON.parse(missing.stdout) as { ok: boolean; checks: { check: string; status: string; fix?: string }[] };
  assert.equal(missRep.checks[0]!.check, 'store');
  assert.equal(missRep.checks[0]!.status, 'problem');
  assert.ok(!existsSync(join(dir, 'x.db')), 'doctor must not create the store');
  // an existing clear store: readable, with a warning that secrets are not sealed (exit 0)
  assert.equal(kp(['key', 'create', 'k1', '--type', 'aes256', '--store', `sqlite:${join(dir, 'y.db')}`]).code, 0);
  const clear = kp(['doctor', `sqlite:${join(dir, 'y.db')}`, '--json']);
  assert.equal(clear.code, 0, clear.stdout + clear.stderr);
  const clearRep = JSON.parse(clear.stdout) as { ok: boolean; checks: { check: string; status: string; detail: string }[] };
  assert.equal(clearRep.checks.find((c) => c.check === 'keys')!.detail, '1 key(s)');
  assert.equal(clearRep.checks.find((c) => c.check === 'protection')!.status, 'warning');
  const bogus = kp(['doctor', 'bogus:x']);
  assert.notEqual(bogus.code, 0);
  oneLineError(bogus.stderr);
});
