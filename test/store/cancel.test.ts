/**
 * Issue 8 item 5: a caller's AbortSignal cancels a store call instead of racing it. Each store is
 * made to wait on something real — SQLite's write lock held by another connection, a directory store's
 * key lock held by another owner, a PostgreSQL row lock held by another session — and the caller gives
 * up while it waits: the call fails with TIMEOUT (not THROTTLED / CONFLICT after the store's own
 * wait), and once the blocker is gone the cancelled write has not landed. (The aborted-before-the-call
 * case runs for every store in test/support/store-conformance.ts.) The key ring hands its caller's signal
 * to every store and KMS call it makes (a cancelled caller never reaches the store; a deadline that fires
 * mid-operation cancels the unsealing under the wrapper key).
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { hostname } from 'node:os';
import { writeFileSync, unlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import pg from 'pg';
import { isKeyportError } from '../../src/errors.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import { openFsStore } from '../../src/store/fs.js';
import { openPostgresStore } from '../../src/store/postgres.js';
import type { RecordStore } from '../../src/store/types.js';
import { openKeyring } from '../../src/keys/open.js';
import { StoreKeyring } from '../../src/keys/keyring.js';
import { protectEnable } from '../../src/keys/protect.js';
import { aesRecord } from '../support/store-conformance.js';
import { skipUnless, serviceEnv } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';

const dir = tempDir();
const isTimeout = (e: unknown) => {
  assert.ok(isKeyportError(e), String(e));
  assert.equal(e.code, 'TIMEOUT', e.message);
  return true;
};
/** a signal that fires once the call is surely waiting */
const soon = () => AbortSignal.timeout(150);

describe('a cancelled caller stops a store call that is waiting', () => {
  it('sqlite: a create waiting for another connection’s write lock is cancelled, and never lands', async () => {
    const path = join(dir, 'c.db');
    const s = await openSqliteStore(path, 'sqlite:c.db');
    const other = new Database(path, { timeout: 0 });
    other.prepare('BEGIN IMMEDIATE').run();
    try {
      await assert.rejects(s.create(aesRecord('late'), { signal: soon() }), isTimeout);
    } finally {
      other.prepare('ROLLBACK').run();
      other.close();
    }
    await assert.rejects(s.get('late'), (e) => isKeyportError(e, 'NOT_FOUND'));
    await s.create(aesRecord('after'));
    assert.deepEqual((await s.list()).names, ['after']);
    await s.close();
  });

  it('fs: an update waiting for the key’s lock (another owner) is cancelled; its change is never made', async () => {
    const root = join(dir, 'fs');
    const s = await openFsStore(root, 'fs:fs');
    const rec = aesRecord('k');
    await s.create(rec);
    // held by a live owner on this host (this process, another nonce): not stale, so it is waited for
    const lock = join(root, '.lock-k');
    writeFileSync(lock, `${process.pid} ${hostname()} ${randomBytes(8).toString('hex')}`);
    try {
      await assert.rejects(
        s.update!('k', () => assert.fail('the change of a cancelled caller is made'), { signal: soon() }),
        isTimeout,
      );
    } finally {
      unlinkSync(lock);
    }
    assert.equal((await s.get('k')).versions[0]!.fingerprint, rec.versions[0]!.fingerprint);
    await s.close();
  });

  const skip = skipUnless('postgres');
  describe('postgres', { skip }, () => {
    const url = () => serviceEnv('postgres')['PG_URL']!;
    const table = `kp_c_${randomBytes(6).toString('hex')}`;
    after(async () => {
      if (skip) return;
      const c = new pg.Client({ connectionString: url() });
      await c.connect();
      await c.query(`DROP TABLE IF EXISTS "${table}", "${table}_meta"`);
      await c.end();
    });

    it('an update blocked on a row lock is cancelled in PostgreSQL (not left queued), and never commits', async () => {
      const s = await openPostgresStore(url(), 'postgres:test', { table });
      const rec = aesRecord('row');
      await s.create(rec);
      const other = new pg.Client({ connectionString: url() });
      await other.connect();
      await other.query('BEGIN');
      await other.query(`SELECT 1 FROM "${table}" WHERE name = 'row' FOR UPDATE`);
      let ran = false;
      try {
        await assert.rejects(
          s.update!(
            'row',
            (cur) => {
              ran = true;
              return { ...cur, state: 'disabled' };
            },
            { signal: soon() },
          ),
          isTimeout,
        );
        // cancelled on the server: no statement of ours is still waiting for the lock
        const waiting = await other.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%' AND pid <> pg_backend_pid()`,
        );
        assert.equal(waiting.rows[0].n, 0);
      } finally {
        await other.query('ROLLBACK');
        await other.end();
      }
      assert.equal(ran, false);
      assert.equal((await s.get('row')).state, 'active', 'the cancelled update did not land after the lock was released');
      await s.close();
    });
  });
});

/** the store, counting the calls made to it */
function counted(store: RecordStore, onGet?: () => void): { store: RecordStore; calls: string[] } {
  const calls: string[] = [];
  const wrapped = new Proxy(store, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      return async (...args: unknown[]) => {
        calls.push(String(prop));
        const r: unknown = await (v as (...a: unknown[]) => unknown).apply(target, args);
        if (prop === 'get') onGet?.();
        return r;
      };
    },
  });
  return { store: wrapped, calls };
}

describe('the key ring passes its caller’s signal to every store and KMS call', () => {
  it('a call whose signal has fired fails with TIMEOUT and never reaches the store; without a signal nothing changes', async () => {
    const setup = await openKeyring(`sqlite:${join(dir, 'kr.db')}`);
    await setup.create('s', { type: 'ec-p256' });
    await setup.create('a');
    const ct = await setup.encrypt('a', Buffer.from('hi'));
    const sig = await setup.sign('s', Buffer.from('m'));
    const { store, calls } = counted(setup.store);
    const kr = new StoreKeyring(store);
    const o = { signal: AbortSignal.abort() };
    const m = Buffer.from('m');
    const ops: [string, () => Promise<unknown>][] = [
      ['sign', () => kr.sign('s', m, o)],
      ['decrypt', () => kr.decrypt('a', ct, undefined, o)],
      ['encrypt', () => kr.encrypt('a', m, undefined, o)],
      ['generate', () => kr.generate('a', undefined, o)],
      ['hmac', () => kr.hmac('a', m, o)],
      ['verify', () => kr.verify('s', m, sig, o)],
      ['describe', () => kr.describe('a', o)],
      ['list', () => kr.list('*', o)],
      ['versions', () => kr.versions('a', o)],
      ['publicKey', () => kr.publicKey('s', undefined, o)],
      ['export', () => kr.export('a', o)],
      ['rotate', () => kr.rotate('a', o)],
      ['delete', () => kr.delete('a', o)],
    ];
    for (const [what, op] of ops) await assert.rejects(op(), isTimeout, what);
    assert.deepEqual(calls, [], 'no store call was made for a cancelled caller');
    // no signal: as before
    assert.equal((await kr.decrypt('a', ct)).toString(), 'hi');
    assert.ok(await kr.verify('s', m, await kr.sign('s', m)));
    assert.equal((await kr.describe('a')).versions, 1, 'the cancelled rotate did not run');
    await setup.close();
  });

  it('envelope: a deadline that fires while the record is read cancels the unsealing under the wrapper key', async () => {
    const uri = `sqlite:${join(dir, 'env.db')}`;
    const wrapper = `local:${join(dir, 'w.key')}`;
    const setup = await openKeyring(uri);
    await setup.create('a');
    const ct = await setup.encrypt('a', Buffer.from('hi'));
    await protectEnable(setup, wrapper);
    await setup.close();
    const sealed = await openKeyring(uri, { kms: [wrapper] });
    const ac = new AbortController();
    // the store answers, and the caller's time is up just then: the KMS call that unseals must not run on
    const { store, calls } = counted(sealed.store, () => ac.abort());
    const kr = new StoreKeyring(store, { connections: sealed.connections });
    await assert.rejects(kr.decrypt('a', ct, undefined, { signal: ac.signal }), (e) => isTimeout(e) && /cancel/.test((e as Error).message));
    assert.ok(calls.includes('get'), 'the record was read');
    // nothing half-done is cached: the next caller unseals and decrypts
    assert.equal((await kr.decrypt('a', ct)).toString(), 'hi');
    await sealed.close();
  });
});
