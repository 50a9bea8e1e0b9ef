/** `keyport server --dev` as a user starts it: nothing to set up, state 0600, graceful shutdown. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { statSync, readFileSync } from 'node:fs';
import { RemoteKeyring } from '../../src/client/remote.js';
import { ROOT } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';

test('--dev starts on the embedded default, prints endpoint and admin key, and drains in-flight requests on SIGTERM', async () => {
  const home = tempDir();
  const child = spawn(process.execPath, [join(ROOT, 'bin/keyport.js'), 'server', '--dev', '--addr', '127.0.0.1:0'], {
    env: { ...process.env, KEYPORT_HOME: home },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (https:\/\/\S+)/.exec(out);
      if (m && /admin key: (kes:v1:\S+)/.test(out)) resolve(m[1]!);
    });
    child.on('exit', (c) => reject(new Error(`server exited ${c}: ${out}`)));
  });
  const apiKey = /admin key: (kes:v1:\S+)/.exec(out)![1]!;
  assert.equal(readFileSync(join(home, 'dev', 'admin.key'), 'utf8').trim(), apiKey);
  for (const f of ['admin.key', 'server.key', 'wrapper.key', 'keys.db'])
    assert.equal(statSync(join(home, 'dev', f)).mode & 0o077, 0, `${f} is private`);
  const kr = new RemoteKeyring(url, { apiKey, insecure: true });
  await kr.create('lifecycle');
  const inflight = Array.from({ length: 40 }, (_, i) =>
    kr.encrypt('lifecycle', Buffer.from(`m${i}`)).then(
      () => 'ok',
      (e: Error) => e.message,
    ),
  );
  await new Promise((r) => setTimeout(r, 5));
  child.kill('SIGTERM');
  const results = await Promise.all(inflight);
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  assert.equal(code, 0);
  // every request either completed or was never accepted — none failed half-way with a server error
  for (const r of results) assert.ok(r === 'ok' || /cannot reach server|ECONNRESET|socket hang up/.test(r), r);
  assert.ok(results.includes('ok'));
  assert.match(out, /shutting down/);
  assert.match(out, /keyport server stopped/);
  // the command to try is the installed one (`keyport`), not `npx keyport` (a project-local install)
  assert.match(out, /^\s+keyport key create my-key -k && keyport key ls -k$/m, out);
  assert.doesNotMatch(out, /npx keyport/);
  await kr.close();

  // the next start finds the key and says where it is, without printing the secret again
  const again = spawn(process.execPath, [join(ROOT, 'bin/keyport.js'), 'server', '--dev', '--addr', '127.0.0.1:0'], {
    env: { ...process.env, KEYPORT_HOME: home },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out2 = '';
  await new Promise<void>((resolve, reject) => {
    again.stdout.on('data', (d: Buffer) => {
      out2 += d.toString();
      if (/admin key: .*\n/.test(out2)) resolve();
    });
    again.on('exit', (c) => reject(new Error(`server exited ${c}: ${out2}`)));
  });
  again.kill('SIGTERM');
  await new Promise((r) => again.on('exit', r));
  assert.ok(!out2.includes(apiKey), `the admin key is printed again: ${out2}`);
  assert.ok(out2.includes(`admin key: in ${join(home, 'dev', 'admin.key')}`), out2);
});
