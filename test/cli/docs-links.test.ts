/**
 * The user documentation travels in the npm package (README.md, docs/): every relative link in it must
 * name a file the package itself holds, as `npm pack` lists it — a reader of an installed copy has no
 * clone beside it, and nothing may point outside the package (../shared, absolute paths).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { ROOT } from '../support/testbed.js';

test('every relative link of README.md and docs/*.md names a file npm pack puts in the package', () => {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const packed = new Set((JSON.parse(r.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path));
  const docs = [...packed].filter((p) => p === 'README.md' || (p.startsWith('docs/') && p.endsWith('.md')));
  assert.ok(docs.length > 1, 'README.md and docs/ are packed');
  const broken: string[] = [];
  for (const doc of docs) {
    const text = readFileSync(join(ROOT, doc), 'utf8');
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!.split('#')[0]!;
      if (!target || /^[a-z]+:/i.test(target)) continue; // an anchor, or https:/mailto:
      const path = normalize(join(dirname(doc), target)).replace(/\/$/, '');
      if (target.startsWith('/') || path.startsWith('..') || !packed.has(path)) broken.push(`${doc}: ${m[1]}`);
    }
  }
  assert.deepEqual(broken, [], 'links to files the package does not hold');
});
