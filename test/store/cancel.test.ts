/**
 * Issue 8 item 5: a caller's AbortSignal cancels a store call instead of racing it. Each store is
 * made to wait on something real — SQLite's write lock held by another connection, a directory store's
 * key lock held by another owner, a PostgreSQL row lock held by another session — and the caller gives
 * up while it waits: the call fails with TIMEOUT (not THROTTLED / CONFLICT after the store's own
 * wait), and once the blocker is gone the cancelled write has not landed. (The aborted-before-the-call
 * case runs for every store in test/support/store-conformance.ts.)
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
