/**
 * Conformance tests for ANY RecordStore (src/store/types.ts): what every backend must do the same way.
 *
 *   runStoreConformance('sqlite', async () => openSqliteStore(join(tempDir(), 'k.db'), 'sqlite:…'));
 *
 * `open` must return a store that is EMPTY (no records, no meta); it is called once per test and the
 * store is closed at the end of that test. Records are aes256 keys with one clear version, valid for
 * every store (KeyRecordSchema).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { isKeyportError, type ErrorCode } from '../../src/errors.js';
import { allNames, type KeyRecord, type RecordStore } from '../../src/store/types.js';

export interface StoreConformanceOptions {
  /** skip the whole suite: false, or the reason (e.g. from skipUnless) */
  skip?: false | string;
  /** how many names the paging test writes (default 1100: more than one 1024 page) */
  manyNames?: number;
  /**
   * a record this store refuses to write (a name the backend cannot hold, an oversize record, …): used
   * to check that putMany is all-or-none where capabilities.transactions. Without it that test is skipped.
   */
  poisonRecord?: () => KeyRecord;
  /** the store lists in byte order only for names of the contract alphabet; extra names to include */
  extraNames?: string[];
  /** per-test timeout in ms (default 120 s) */
  timeout?: number;
}

/** an aes256 record with one clear version: valid for every store */
export function aesRecord(
  name: string,
  opts: { version?: number; meta?: Record<string, string>; state?: 'active' | 'disabled' } = {},
): KeyRecord {
  const version = opts.version ?? 1;
  const rec: KeyRecord = {
    name,
    type: 'aes256',
    purpose: 'symmetric',
    usage: [],
    state: opts.state ?? 'active',
    createdAt: '2024-05-01T12:00:00.000Z',
    createdBy: 'conformance',
    versions: [],
  };
  for (let v = 1; v <= version; v++) {
    rec.versions.push({
      version: v,
      createdAt: `2024-05-0${Math.min(v, 9)}T12:00:00.000Z`,
      fingerprint: randomBytes(8).toString('hex'),
      clear: randomBytes(32).toString('base64'),
    });
  }
  if (opts.meta) rec.meta = opts.meta;
  return rec;
}

/** compare as a store sees it: JSON values (key order and undefined fields do not matter) */
function same(a: KeyRecord, b: KeyRecord): void {
  assert.deepEqual(JSON.parse(JSON.stringify(a)), JSON.parse(JSON.stringify(b)));
}

async function rejectsWith(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isKeyportError(e), `expected a KeyportError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, `expected ${code}, got ${e.code}: ${e.message}`);
    assert.ok(!e.message.includes('\n'), 'error messages are one line');
    return true;
  });
}

/** valid key names that are awkward for ordering and prefix matching */
export const AWKWARD_NAMES = [
  'a',
  'A',
  'b',
  'B',
  'Z',
  'z',
  '_',
  '__',
  '_a',
  'a_',
  'a_b',
  'a-b',
  'ab',
  'aB',
  'aa',
  'a0',
  'a9',
  'a_0',
  'a-0',
  '0',
  '00',
  '0a',
  '9',
  'x'.repeat(80),
  'x'.repeat(79),
  'A_B-C',
  'a__',
  'ab_',
  'abc',
  'abcd',
  'ABC',
  'key',
  'key_1',
  'key-1',
  'key1',
  'key10',
  'key2',
  'KEY',
  'Key',
];

async function withStore(open: () => Promise<RecordStore>, fn: (s: RecordStore) => Promise<void>): Promise<void> {
  const s = await open();
  try {
    await fn(s);
  } finally {
    await s.close();
  }
}

async function listAll(s: RecordStore, prefix: string | undefined, limit: number): Promise<string[]> {
  const out: string[] = [];
  let after: string | undefined;
  for (let i = 0; i < 100_000; i++) {
    const page = await s.list({ prefix, after, limit });
    assert.ok(page.names.length <= limit, `a page holds at most limit (${limit}) names, got ${page.names.length}`);
    out.push(...page.names);
    if (!page.next) return out;
    assert.ok(page.names.length > 0, 'a page with next set is not empty');
    assert.equal(page.next, page.names[page.names.length - 1], 'next is the last name of the page');
    after = page.next;
  }
  throw new Error('list never ended');
}

const byteOrder = (names: string[]) => [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));

export function runStoreConformance(name: string, open: () => Promise<RecordStore>, opts: StoreConformanceOptions = {}): void {
  const timeout = opts.timeout ?? 120_000;
  const many = opts.manyNames ?? 1100;

  describe(`${name}: RecordStore conformance`, { skip: opts.skip ?? false }, () => {
    test('capabilities and uri', { timeout }, () =>
      withStore(open, async (s) => {
        assert.equal(typeof s.capabilities.kind, 'string');
        assert.ok(s.capabilities.kind.length > 0);
        assert.equal(typeof s.capabilities.transactions, 'boolean');
        assert.equal(typeof s.uri, 'string');
        const first = await s.list();
        assert.deepEqual(first.names, [], 'open() gives an empty store');
        assert.equal(first.next, undefined);
      }),
    );

    test('a cancelled caller (aborted signal): every call fails with TIMEOUT, nothing is written', { timeout }, () =>
      withStore(open, async (s) => {
        const kept = aesRecord('kept');
        await s.create(kept);
        const ac = new AbortController();
        ac.abort();
        const o = { signal: ac.signal };
        await rejectsWith(s.create(aesRecord('gone'), o), 'TIMEOUT');
        await rejectsWith(s.get('kept', o), 'TIMEOUT');
        await rejectsWith(s.list({ signal: ac.signal }), 'TIMEOUT');
        await rejectsWith(s.replace(aesRecord('kept', { version: 2 }), o), 'TIMEOUT');
        await rejectsWith(s.putMany([aesRecord('gone2')], { k: 'v' }, o), 'TIMEOUT');
        await rejectsWith(s.setMeta('k', 'v', o), 'TIMEOUT');
        await rejectsWith(s.getMeta('k', o), 'TIMEOUT');
        await rejectsWith(s.delete('kept', o), 'TIMEOUT');
        if (s.createMany) await rejectsWith(s.createMany([aesRecord('gone3')], o), 'TIMEOUT');
        if (s.update)
          await rejectsWith(
            s.update('kept', () => assert.fail('fn runs for a cancelled caller'), o),
            'TIMEOUT',
          );
        if (s.updateMany)
          await rejectsWith(
            s.updateMany(['kept'], () => assert.fail('fn runs for a cancelled caller'), undefined, o),
            'TIMEOUT',
          );
        assert.deepEqual((await s.list()).names, ['kept']);
        same(await s.get('kept'), kept);
        assert.equal(await s.getMeta('k'), undefined);
      }),
    );

    test('create then get returns the same record', { timeout }, () =>
      withStore(open, async (s) => {
        const r = aesRecord('alpha', { version: 3, meta: { created_by: 'test', note: 'x y' } });
        await s.create(r);
        same(await s.get('alpha'), r);
        const d = aesRecord('beta', { state: 'disabled' });
        await s.create(d);
        same(await s.get('beta'), d);
        same(await s.get('alpha'), r);
      }),
    );

    test('create of a taken name fails with EXISTS and keeps the first record', { timeout }, () =>
      withStore(open, async (s) => {
        const r = aesRecord('taken');
        await s.create(r);
        await rejectsWith(s.create(aesRecord('taken')), 'EXISTS');
        same(await s.get('taken'), r);
        assert.deepEqual((await s.list()).names, ['taken']);
      }),
    );

    test('concurrent creates of one name: exactly one wins', { timeout }, () =>
      withStore(open, async (s) => {
        const recs = Array.from({ length: 8 }, () => aesRecord('race'));
        const results = await Promise.allSettled(recs.map((r) => s.create(r)));
        const won = results.flatMap((x, i) => (x.status === 'fulfilled' ? [i] : []));
        assert.equal(won.length, 1, 'one create succeeds');
        for (const x of results) if (x.status === 'rejected') assert.ok(isKeyportError(x.reason, 'EXISTS'), String(x.reason));
        same(await s.get('race'), recs[won[0]!]!);
      }),
    );

    test('many concurrent creates: each caller gets its own outcome, a caller cancelled while queued writes nothing', { timeout }, () =>
      withStore(open, async (s) => {
        await s.create(aesRecord('old'));
        const ac = new AbortController();
        const recs = Array.from({ length: 40 }, (_, i) => aesRecord(`k${String(i).padStart(2, '0')}`));
        const calls = [
          ...recs.map((r) => s.create(r)),
          s.create(aesRecord('old')),
          s.create(aesRecord('cancelled'), { signal: ac.signal }),
        ];
        // aborted after the call was made, before the store wrote anything (stores that queue writes)
        ac.abort();
        const out = await Promise.allSettled(calls);
        const ok = out.slice(0, 40).filter((x) => x.status === 'fulfilled').length;
        assert.equal(ok, 40, 'every distinct new name is created');
        const taken = out[40]!;
        assert.ok(taken.status === 'rejected' && isKeyportError(taken.reason, 'EXISTS'), 'a taken name fails with EXISTS');
        const last = out[41]!;
        const names = (await s.list()).names;
        if (last.status === 'rejected') {
          assert.ok(isKeyportError(last.reason, 'TIMEOUT'), String(last.reason));
          assert.ok(!names.includes('cancelled'), 'a cancelled create wrote its record');
        } else assert.ok(names.includes('cancelled'), 'a create that succeeded is stored');
        assert.equal(names.length, 41 + (last.status === 'fulfilled' ? 1 : 0));
        for (const r of recs) same(await s.get(r.name), r);
      }),
    );

    test('NOT_FOUND from get, delete and replace of a missing name', { timeout }, () =>
      withStore(open, async (s) => {
        await rejectsWith(s.get('missing'), 'NOT_FOUND');
        await rejectsWith(s.delete('missing'), 'NOT_FOUND');
        await rejectsWith(s.replace(aesRecord('missing')), 'NOT_FOUND');
        await rejectsWith(s.get('missing'), 'NOT_FOUND'); // replace did not create it
        assert.deepEqual((await s.list()).names, []);
      }),
    );

    test('replace swaps the whole record', { timeout }, () =>
      withStore(open, async (s) => {
        await s.create(aesRecord('rot'));
        await s.create(aesRecord('other'));
        const next = aesRecord('rot', { version: 2, meta: { rotated: 'yes' } });
        await s.replace(next);
        same(await s.get('rot'), next);
        const back = aesRecord('rot', { version: 1 }); // fields dropped by a replace are gone
        await s.replace(back);
        same(await s.get('rot'), back);
        assert.deepEqual((await s.list()).names, ['other', 'rot']);
      }),
    );

    test('delete removes the record; the name can be created again', { timeout }, () =>
      withStore(open, async (s) => {
        await s.create(aesRecord('gone'));
        await s.create(aesRecord('stays'));
        await s.delete('gone');
        await rejectsWith(s.get('gone'), 'NOT_FOUND');
        assert.deepEqual((await s.list()).names, ['stays']);
        await rejectsWith(s.delete('gone'), 'NOT_FOUND');
        const again = aesRecord('gone');
        await s.create(again);
        same(await s.get('gone'), again);
      }),
    );

    test(`list pages through ${many} + awkward names in byte order, never truncating`, { timeout }, () =>
      withStore(open, async (s) => {
        const names = new Set<string>([...AWKWARD_NAMES, ...(opts.extraNames ?? [])]);
        for (let i = 0; names.size < many + AWKWARD_NAMES.length; i++) {
          names.add(`k${i.toString(36)}`);
          names.add(`K_${i}`);
          if (i % 3 === 0) names.add(`k-${i}`);
        }
        const expected = byteOrder([...names]);
        // ASCII names: byte order is JS string order
        assert.deepEqual(expected, [...names].sort());
        const recs = expected.map((n) => aesRecord(n));
        for (let i = 0; i < recs.length; i += 250) await s.putMany(recs.slice(i, i + 250));

        for (const limit of [1, 7, 100, 1024, expected.length, expected.length + 5]) {
          if (limit === 1 && expected.length > 400) {
            // one-name pages over the start only (a full walk would be slow on remote stores)
            const p1 = await s.list({ limit: 1 });
            assert.deepEqual(p1.names, expected.slice(0, 1));
            assert.equal(p1.next, expected[0]);
            const p2 = await s.list({ limit: 1, after: p1.next });
            assert.deepEqual(p2.names, expected.slice(1, 2));
            continue;
          }
          assert.deepEqual(await listAll(s, undefined, limit), expected, `paging with limit ${limit}`);
        }
        const exact = await s.list({ limit: expected.length });
        assert.equal(exact.names.length, expected.length);
        assert.equal(exact.next, undefined, 'no next when nothing remains');
        const firstPage = await s.list();
        assert.ok(firstPage.next !== undefined || firstPage.names.length === expected.length, 'a default page never truncates silently');
        const walked: string[] = [];
        for await (const n of allNames(s)) walked.push(n);
        assert.deepEqual(walked, expected);
      }),
    );

    test('prefix is literal (`_` and `-` are not wildcards), case-sensitive, and pages', { timeout }, () =>
      withStore(open, async (s) => {
        const names = byteOrder([
          ...AWKWARD_NAMES,
          ...Array.from({ length: 30 }, (_, i) => `a_p${String(i).padStart(2, '0')}`),
          'aXb',
          'a1b',
          'a-b_c',
        ]);
        await s.putMany(names.map((n) => aesRecord(n)));
        for (const prefix of [
          'a',
          'A',
          'a_',
          'a-',
          '_',
          '__',
          'ab',
          'abc',
          'abcd',
          'abcde',
          'key',
          'key1',
          'KEY',
          'x'.repeat(79),
          'q',
          '',
        ]) {
          const want = names.filter((n) => n.startsWith(prefix));
          assert.deepEqual(await listAll(s, prefix || undefined, 1000), want, `prefix '${prefix}'`);
          assert.deepEqual(await listAll(s, prefix || undefined, 4), want, `prefix '${prefix}' in pages of 4`);
        }
        // prefix with after: continues inside the prefix only
        const inA_ = names.filter((n) => n.startsWith('a_'));
        const page = await s.list({ prefix: 'a_', after: inA_[5], limit: 3 });
        assert.deepEqual(page.names, inA_.slice(6, 9));
        assert.equal(page.next, inA_[8]);
      }),
    );

    test('after is exclusive and need not name an existing key', { timeout }, () =>
      withStore(open, async (s) => {
        const names = ['a', 'b', 'ba', 'c', 'd'];
        await s.putMany(names.map((n) => aesRecord(n)));
        assert.deepEqual((await s.list({ after: 'b' })).names, ['ba', 'c', 'd']);
        assert.deepEqual((await s.list({ after: 'bb' })).names, ['c', 'd']);
        assert.deepEqual((await s.list({ after: 'A' })).names, names);
        assert.deepEqual((await s.list({ after: 'd' })).names, []);
        assert.equal((await s.list({ after: 'd' })).next, undefined);
        assert.deepEqual((await s.list({ after: 'zzz' })).names, []);
        assert.deepEqual((await s.list({ after: 'a', limit: 2 })).names, ['b', 'ba']);
      }),
    );

    test('putMany creates and replaces, with meta in the same call', { timeout }, () =>
      withStore(open, async (s) => {
        const old = aesRecord('existing');
        await s.create(old);
        await s.setMeta('drop-me', '1');
        const batch = [aesRecord('new1'), aesRecord('existing', { version: 2 }), aesRecord('new2', { meta: { m: 'v' } })];
        await s.putMany(batch, { protection: 'wrapper-uri', 'drop-me': undefined });
        for (const r of batch) same(await s.get(r.name), r);
        assert.deepEqual((await s.list()).names, ['existing', 'new1', 'new2']);
        assert.equal(await s.getMeta('protection'), 'wrapper-uri');
        assert.equal(await s.getMeta('drop-me'), undefined);
        await s.putMany([]); // an empty batch is fine
        assert.deepEqual((await s.list()).names, ['existing', 'new1', 'new2']);
      }),
    );

    test(
      'putMany is all or none where the store has transactions',
      { timeout, skip: opts.poisonRecord ? false : 'no poisonRecord given for this store' },
      () =>
        withStore(open, async (s) => {
          if (!s.capabilities.transactions) return;
          const old = aesRecord('keep');
          await s.create(old);
          await s.setMeta('state', 'before');
          const batch = [aesRecord('p1'), aesRecord('keep', { version: 2 }), opts.poisonRecord!(), aesRecord('p2')];
          await assert.rejects(s.putMany(batch, { state: 'after' }), (e: unknown) => {
            assert.ok(isKeyportError(e), `a KeyportError, got ${String(e)}`);
            assert.ok(!e.message.includes('\n'));
            return true;
          });
          assert.deepEqual((await s.list()).names, ['keep'], 'no record of the failed batch was written');
          same(await s.get('keep'), old);
          assert.equal(await s.getMeta('state'), 'before', 'meta of the failed batch was not applied');
          // the store still works after the failure
          await s.putMany([aesRecord('p1')]);
          assert.deepEqual((await s.list()).names, ['keep', 'p1']);
        }),
    );

    test('meta: unset is undefined; set, overwrite, remove', { timeout }, () =>
      withStore(open, async (s) => {
        assert.equal(await s.getMeta('protection'), undefined);
        await s.setMeta('protection', 'awskms:region=us-east-1;key-id=alias/w');
        assert.equal(await s.getMeta('protection'), 'awskms:region=us-east-1;key-id=alias/w');
        await s.setMeta('protection', 'local:/tmp/w.key');
        assert.equal(await s.getMeta('protection'), 'local:/tmp/w.key');
        await s.setMeta('other', '');
        assert.equal(await s.getMeta('other'), '');
        await s.setMeta('protection', undefined);
        assert.equal(await s.getMeta('protection'), undefined);
        await s.setMeta('never-set', undefined); // removing an unset key is fine
        assert.deepEqual((await s.list()).names, [], 'meta are not records');
      }),
    );

    test('createMany (where offered) skips taken names and creates the rest', { timeout }, () =>
      withStore(open, async (s) => {
        if (!s.createMany) return;
        const old = aesRecord('c2');
        await s.create(old);
        const skipped = await s.createMany([aesRecord('c1'), aesRecord('c2'), aesRecord('c3')]);
        assert.deepEqual(skipped, ['c2']);
        same(await s.get('c2'), old);
        assert.deepEqual((await s.list()).names, ['c1', 'c2', 'c3']);
      }),
    );

    test('records from the store are independent copies', { timeout }, () =>
      withStore(open, async (s) => {
        const r = aesRecord('copy');
        await s.create(r);
        r.state = 'disabled'; // mutating the caller's object after create changes nothing stored
        assert.equal((await s.get('copy')).state, 'active');
      }),
    );
  });
}
