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
