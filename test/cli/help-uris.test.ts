/** `keyport help uris` prints docs/uris.md: every scheme keyport opens has a section, with attributes and an example. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../support/testbed.js';
import { STORE_SCHEMES } from '../../src/store/open.js';
import { KMS_SCHEMES } from '../../src/kms/registry.js';

const kp = (args: string[]) => spawnSync(process.execPath, [join(ROOT, 'bin', 'keyport.js'), ...args], { encoding: 'utf8' });

test('keyport help uris is docs/uris.md, with a section, an attribute table and an example per scheme', () => {
  const r = kp(['help', 'uris']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, readFileSync(join(ROOT, 'docs', 'uris.md'), 'utf8'));
  const sections = r.stdout.split(/^### /m).slice(1);
  for (const scheme of [...STORE_SCHEMES, ...KMS_SCHEMES]) {
    const s = sections.find((x) => x.startsWith(`\`${scheme}:`));
    assert.ok(s, `a section for ${scheme}:`);
    assert.match(s, /\| attribute \| default \| meaning \|/, `${scheme}: attribute table with defaults`);
    assert.match(s, new RegExp(`^ {4}${scheme}:\\S`, 'm'), `${scheme}: an example`);
  }
});

test('keyport help: commands and topics; an unknown topic is a usage error', () => {
  assert.match(kp(['--help']).stdout, /keyport help uris/);
  assert.match(kp(['help', 'key', 'create']).stdout, /Usage: keyport key create/);
  const bad = kp(['help', 'nope']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /topics: uris/);
});
