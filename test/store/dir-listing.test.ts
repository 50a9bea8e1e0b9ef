/** Paged listing of a directory store: byte order, one directory read per listing, own writes seen. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DirListing, byteCompare } from '../../src/store/dir-listing.js';
import { openRecordStore } from '../../src/store/open.js';
import { tempDir } from '../support/tmp.js';

test('byteCompare is UTF-8 byte order, also where UTF-16 order differs (astral vs U+E000–U+FFFF)', () => {
  const names = ['b', 'a', '\u{1F600}', '\uFF21', 'a\u00e9', 'aa'];
  const bytes = [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
  assert.deepEqual([...names].sort(byteCompare), bytes);
  assert.ok(byteCompare('\uFF21', '\u{1F600}') < 0, 'U+FF21 sorts before U+1F600 in bytes (not in UTF-16)');
});

test('DirListing: pages follow one snapshot (one directory read), continue by binary search, and start over after invalidate()', () => {
  let reads = 0;
  let dir = Array.from({ length: 2500 }, (_, i) => `k${String(i).padStart(5, '0')}`).reverse();
  const l = new DirListing(() => {
    reads++;
    return [...dir];
  });
  const seen: string[] = [];
  let after: string | undefined;
  for (;;) {
    const p = l.page({ after, limit: 1000 });
    seen.push(...p.names);
    if (!p.next) break;
    after = p.next;
  }
  assert.equal(reads, 1);
  assert.equal(seen.length, 2500);
  assert.deepEqual(seen, [...seen].sort(byteCompare));
  // a cursor that is not itself a name continues after where it would sort
  assert.deepEqual(l.page({ after: 'k00002x', limit: 2 }).names, ['k00003', 'k00004']);
  assert.deepEqual(l.page({ prefix: 'k0249' }).names.length, 10);
  dir = [...dir, 'k00002y'];
  l.invalidate();
  assert.deepEqual(l.page({ after: 'k00002x', limit: 2 }).names, ['k00002y', 'k00003']);
});

test('fs and kes-fs stores see their own writes in the next listing', async () => {
  const d = tempDir();
  for (const uri of [`fs:${join(d, 'fs')}`, `kes-fs:${join(d, 'kes')}`]) {
    const s = await openRecordStore(uri);
    try {
      assert.deepEqual((await s.list()).names, []);
      const now = new Date().toISOString();
      const rec = (name: string) => ({
        name,
        type: 'aes256' as const,
        purpose: 'symmetric' as const,
        usage: ['any' as const],
        state: 'active' as const,
        createdAt: now,
        createdBy: 'test',
        versions: [{ version: 1, createdAt: now, fingerprint: '', clear: Buffer.alloc(64, 7).toString('base64') }],
      });
      await s.create(rec('b'));
      assert.deepEqual((await s.list({ after: 'a' })).names, ['b']);
      await s.createMany!([rec('c'), rec('a')]);
      assert.deepEqual((await s.list({ after: '' })).names, ['a', 'b', 'c']);
      await s.delete('b');
      assert.deepEqual((await s.list({ after: 'a' })).names, ['c']);
    } finally {
      await s.close();
    }
  }
});
