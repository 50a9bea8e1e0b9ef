/** A closed pipe ends the CLI quietly (issue 9 item 14): `keyport key ls --json | head -1`. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { openKeyring } from '../../src/keys/open.js';
import { tempDir } from '../support/tmp.js';
import { BIN } from '../support/kp.js';

const dir = tempDir();

test('key ls --json | head -1: exit 0, nothing on stderr; the same for every reader that stops early', async () => {
  const db = join(dir, 'many.db');
  const kr = await openKeyring(`sqlite:${db}`);
  // far more output than a pipe buffer holds (64 KiB), so the writer meets the closed pipe
  for (let i = 0; i < 800; i++) await kr.create(`key-${i}`);
  await kr.close();
  for (const reader of ['head -1', 'head -c 1', 'true']) {
    const r = spawnSync(
      'bash',
      ['-c', `"${process.execPath}" "${BIN}" key ls --json --store "sqlite:${db}" | ${reader}; echo "rc=\${PIPESTATUS[0]}" >&2`],
      {
        encoding: 'utf8',
        env: { ...process.env, KEYPORT_STORE: '', KEYPORT_SERVER: '', KES_SERVER: '' },
      },
    );
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.pop(), 'rc=0', `${reader}: ${r.stderr}`);
    assert.deepEqual(lines, [], `${reader}: no EPIPE trace`);
  }
});

test('endless input (/dev/zero, `yes |`) is refused at a bound, one line, exit 2; a slow pipe on stdin is read whole', async () => {
  const db = join(dir, 'in.db');
  const kr = await openKeyring(`sqlite:${db}`);
  await kr.create('sym');
  await kr.create('ec', { type: 'ec-p256' });
  await kr.close();
  const sh = (cmd: string) =>
    spawnSync('bash', ['-c', cmd.replaceAll('KP', `"${process.execPath}" "${BIN}"`)], {
      encoding: 'utf8',
      env: { ...process.env, KEYPORT_STORE: `sqlite:${db}`, KEYPORT_SERVER: '', KES_SERVER: '' },
    });
  for (const [cmd, what] of [
    ['KP key import k --file /dev/zero', 'key /dev/zero'],
    ['yes | KP key import k --file -', 'key from stdin'],
    ['KP key verify ec --in /dev/null --sig /dev/zero', 'signature /dev/zero'],
  ] as const) {
    const r = sh(cmd);
    assert.equal(r.status, 2, `${cmd}: ${r.stderr}`);
    assert.equal(r.stderr, `keyport: cannot read ${what}: larger than 1 MiB\n`, cmd);
  }
  const list = sh('KP key ls --json');
  assert.deepEqual(
    (JSON.parse(list.stdout) as { name: string }[]).map((k) => k.name),
    ['ec', 'sym'],
    'no key was imported',
  );
  // stdin from a writer that is not ready yet (a non-blocking pipe): waited for, not EAGAIN
  const slow = sh('(sleep 0.3; echo slow) | KP key encrypt sym | KP key decrypt sym');
  assert.equal(slow.status, 0, slow.stderr);
  assert.equal(slow.stdout, 'slow\n');
});
