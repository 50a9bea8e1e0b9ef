/**
 * The PostgreSQL shared store against a real PostgreSQL 15 (Debian package, private cluster started by
 * scripts/testbed/postgres.sh): the generic RecordStore conformance suite, then what is particular to a
 * store several replicas share (schema creation races, visibility across pools, error mapping).
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { skipUnless, serviceEnv } from '../support/testbed.js';
import { runStoreConformance, aesRecord } from '../support/store-conformance.js';
import { openPostgresStore, parseConnection } from '../../src/store/postgres.js';
import { openRecordStore } from '../../src/store/open.js';
import { isKeyportError } from '../../src/errors.js';
import type { RecordStore } from '../../src/store/types.js';
import { join } from 'node:path';
import { protectRace } from '../support/protect-race.js';
import { tempDir } from '../support/tmp.js';

const skip = skipUnless('postgres');
const url = () => serviceEnv('postgres')['PG_URL']!;
const tables: string[] = [];
const freshTable = () => {
  const t = `kp_t_${randomBytes(6).toString('hex')}`;
  tables.push(t);
  return t;
};

async function sql<T = Record<string, unknown>>(text: string, values: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: url() });
  await c.connect();
  try {
    return (await c.query(text, values)).rows as T[];
  } finally {
    await c.end();
  }
}

after(async () => {
  if (skip || tables.length === 0) return;
  await sql(tables.map((t) => `DROP TABLE IF EXISTS "${t}", "${t}_meta";`).join(' '));
});

runStoreConformance('postgres', () => openPostgresStore(url(), 'postgres:test', { table: freshTable() }), {
  skip,
  // PostgreSQL text cannot hold NUL: the whole batch must roll back
  poisonRecord: () => aesRecord('bad\u0000name'),
});

function expectCode(code: string, secret?: string) {
  return (e: unknown) => {
    assert.ok(isKeyportError(e), `a KeyportError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.ok(!e.message.includes('\n'), 'one line');
    assert.ok(
      !/\n\s+at /.test(
        String(e.stack ?? '')
          .split('\n')
          .slice(0, 1)
          .join(''),
      ),
      'no stack in the message',
    );
    if (secret) assert.ok(!e.message.includes(secret), `the message must not echo the secret: ${e.message}`);
    return true;
  };
}

describe('postgres store: shared by replicas', { skip }, () => {
  const open: RecordStore[] = [];
  after(async () => {
    for (const s of open) await s.close();
  });
  const replica = async (table: string, extra = '') => {
    const u = new URL(url());
    if (extra) for (const [k, v] of new URLSearchParams(extra)) u.searchParams.set(k, v);
    const s = await openPostgresStore(u.toString(), 'postgres:test', { table });
    open.push(s);
    return s;
  };

  test('schema: created on open, name collation "C", jsonb record, revision counts replaces', async () => {
    const t = freshTable();
    const s = await replica(t);
    const cols = await sql<{ column_name: string; data_type: string; collation_name: string | null }>(
      `SELECT column_name, data_type, collation_name FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position`,
      [t],
    );
    assert.deepEqual(
      cols.map((c) => [c.column_name, c.data_type]),
      [
        ['name', 'text'],
        ['record', 'jsonb'],
        ['revision', 'bigint'],
        ['updated_at', 'timestamp with time zone'],
      ],
    );
    assert.equal(cols[0]!.collation_name, 'C');
    const meta = await sql<{ column_name: string }>(
      `SELECT column_name FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position`,
      [`${t}_meta`],
    );
    assert.deepEqual(
      meta.map((c) => c.column_name),
      ['key', 'value'],
    );

    await s.create(aesRecord('rev'));
    await s.replace(aesRecord('rev', { version: 2 }));
    await s.putMany([aesRecord('rev', { version: 3 })]);
    const [row] = await sql<{ revision: string; type: string; n: number }>(
      `SELECT revision::text, record->>'type' AS type, jsonb_array_length(record->'versions') AS n FROM "${t}" WHERE name = 'rev'`,
    );
    assert.deepEqual(row, { revision: '3', type: 'aes256', n: 3 });
  });

  test('ten replicas opening a new table at once all succeed (advisory-locked DDL)', async () => {
    const t = freshTable();
    const stores = await Promise.all(Array.from({ length: 10 }, () => replica(t, 'pool-size=2')));
    await stores[3]!.create(aesRecord('one'));
    for (const s of stores) assert.deepEqual((await s.list()).names, ['one']);
    // opening again finds the tables and runs no DDL
    const again = await replica(t);
    assert.deepEqual((await again.list()).names, ['one']);
  });

  test("two replicas (two pools) see each other's writes at once", async () => {
    const t = freshTable();
    const a = await replica(t);
    const b = await replica(t);
    const r1 = aesRecord('shared');
    await a.create(r1);
    assert.equal((await b.get('shared')).versions[0]!.clear, r1.versions[0]!.clear);
    await assert.rejects(b.create(aesRecord('shared')), expectCode('EXISTS'));
    const r2 = aesRecord('shared', { version: 2 });
    await b.replace(r2);
    assert.equal((await a.get('shared')).versions.length, 2);
    await b.setMeta('protection', 'local:/w.key');
    assert.equal(await a.getMeta('protection'), 'local:/w.key');
    await a.putMany([aesRecord('x1'), aesRecord('x2')], { protection: undefined });
    assert.deepEqual((await b.list()).names, ['shared', 'x1', 'x2']);
    assert.equal(await b.getMeta('protection'), undefined);
    await b.delete('shared');
    await assert.rejects(a.get('shared'), expectCode('NOT_FOUND'));
    // concurrent creates across replicas: one winner
    const results = await Promise.allSettled([a, b, a, b].map((s) => s.create(aesRecord('contested'))));
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
  });

  test('putMany rolls back on a failure injected by the database (a trigger), leaving the other replica unaffected', async () => {
    const t = freshTable();
    const a = await replica(t);
    const b = await replica(t);
    await a.create(aesRecord('before'));
    // a real server-side failure in the middle of the batch: reject one name with a trigger
    await sql(`CREATE FUNCTION "${t}_reject"() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN IF NEW.name = 'poison' THEN RAISE EXCEPTION 'rejected by test trigger'; END IF; RETURN NEW; END $$`);
    await sql(`CREATE TRIGGER reject BEFORE INSERT OR UPDATE ON "${t}" FOR EACH ROW EXECUTE FUNCTION "${t}_reject"()`);
    try {
      const batch = [aesRecord('m1'), aesRecord('before', { version: 2 }), aesRecord('poison'), aesRecord('m2')];
      await assert.rejects(a.putMany(batch, { k: 'v' }), expectCode('INTERNAL'));
      assert.deepEqual((await b.list()).names, ['before']);
      assert.equal((await b.get('before')).versions.length, 1);
      assert.equal(await b.getMeta('k'), undefined);
    } finally {
      await sql(`DROP TRIGGER reject ON "${t}"; DROP FUNCTION "${t}_reject"()`);
    }
    await a.putMany([aesRecord('m1')]);
    assert.deepEqual((await b.list()).names, ['before', 'm1']);
  });

  test('a statement blocked past statement-timeout fails with TIMEOUT (retryable)', async () => {
    const t = freshTable();
    const s = await replica(t, 'statement-timeout=300');
    await s.create(aesRecord('locked'));
    const holder = new pg.Client({ connectionString: url() });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM "${t}" WHERE name = 'locked' FOR UPDATE`);
      await assert.rejects(s.replace(aesRecord('locked', { version: 2 })), (e: unknown) => {
        expectCode('TIMEOUT')(e);
        assert.equal((e as { retryable: boolean }).retryable, true);
        return true;
      });
    } finally {
      await holder.query('ROLLBACK').catch(() => {});
      await holder.end();
    }
    await s.replace(aesRecord('locked', { version: 2 }));
    assert.equal((await s.get('locked')).versions.length, 2);
  });

  test('a replica survives the server killing its pooled connections', async () => {
    const t = freshTable();
    const appName = `kp_${randomBytes(4).toString('hex')}`;
    const s = await replica(t, `application_name=${appName}&pool-size=4`);
    await Promise.all([s.create(aesRecord('r1')), s.create(aesRecord('r2')), s.list(), s.getMeta('m')]);
    const killed = await sql<{ ok: boolean }>(
      `SELECT pg_terminate_backend(pid, 10000) AS ok FROM pg_stat_activity WHERE application_name = $1`,
      [appName],
    );
    assert.ok(killed.length >= 1 && killed.every((k) => k.ok), 'the pooled connections were terminated');
    // reads and writes go on (dead idle clients are dropped; a read that hits one is retried once)
    assert.deepEqual((await s.list()).names, ['r1', 'r2']);
    await s.replace(aesRecord('r1', { version: 2 }));
    assert.equal((await s.get('r1')).versions.length, 2);
  });

  test('wrong password -> AUTH, one line, the password never echoed', async () => {
    const u = new URL(url());
    const bad = `Wr0ng-${randomBytes(6).toString('hex')}`;
    u.password = bad;
    await assert.rejects(openPostgresStore(u.toString(), 'postgres:test', { table: freshTable() }), (e: unknown) => {
      expectCode('AUTH', bad)(e);
      assert.equal((e as { retryable: boolean }).retryable, false);
      assert.ok(!(e as Error).message.includes(new URL(url()).password), 'nor the real one');
      return true;
    });
  });

  test('unknown user -> AUTH', async () => {
    const u = new URL(url());
    u.username = 'nobody_here';
    await assert.rejects(openPostgresStore(u.toString(), 'postgres:test'), expectCode('AUTH', u.password));
  });

  test('closed port -> UNAVAILABLE (retryable), no password in the message', async () => {
    const net = await import('node:net');
    const port = await new Promise<number>((res) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => res(p));
      });
    });
    const u = new URL(url());
    u.port = String(port);
    await assert.rejects(openPostgresStore(u.toString(), 'postgres:test'), (e: unknown) => {
      expectCode('UNAVAILABLE', u.password)(e);
      assert.equal((e as { retryable: boolean }).retryable, true);
      return true;
    });
  });

  test('a database that does not exist -> UNAVAILABLE, not retryable', async () => {
    const u = new URL(url());
    u.pathname = '/no_such_db';
    await assert.rejects(openPostgresStore(u.toString(), 'postgres:test'), (e: unknown) => {
      expectCode('UNAVAILABLE', u.password)(e);
      assert.equal((e as { retryable: boolean }).retryable, false);
      return true;
    });
  });

  test('a closed store refuses work; close is idempotent', async () => {
    const s = await openPostgresStore(url(), 'postgres:test', { table: freshTable() });
    await s.create(aesRecord('c'));
    await s.close();
    await s.close();
    await assert.rejects(s.get('c'), expectCode('UNAVAILABLE'));
  });

  test('through openRecordStore: postgres:URL with keyport parameters, uri redacted', async () => {
    const t = freshTable();
    const u = new URL(url());
    u.searchParams.set('table', t);
    u.searchParams.set('pool-size', '3');
    const s = await openRecordStore(`postgres:${u.toString()}`);
    open.push(s);
    assert.equal(s.capabilities.kind, 'postgres');
    assert.equal(s.capabilities.transactions, true);
    assert.ok(!s.uri.includes(u.password), `uri is redacted: ${s.uri}`);
    await s.create(aesRecord('via-opener'));
    const rows = await sql<{ name: string }>(`SELECT name FROM "${t}"`);
    assert.deepEqual(rows, [{ name: 'via-opener' }]);
  });

  test('libpq keyword/value connection strings work too', async () => {
    const u = new URL(url());
    const kv = `host=${u.hostname} port=${u.port} user=${u.username} password='${u.password}' dbname=${u.pathname.slice(1)} pool-size=2`;
    const s = await openPostgresStore(kv, 'postgres:test', { table: freshTable() });
    open.push(s);
    await s.create(aesRecord('kv'));
    assert.deepEqual((await s.list()).names, ['kv']);
  });

  test('bad keyport parameters are USAGE errors', async () => {
    assert.throws(() => parseConnection('host=x bogus=1'), expectCode('USAGE'));
    await assert.rejects(openPostgresStore(`${url()}?pool-size=0`, 'postgres:test'), expectCode('USAGE'));
    await assert.rejects(openPostgresStore(url(), 'postgres:test', { table: 'Robert"; DROP TABLE x' }), expectCode('USAGE'));
    const p = parseConnection('postgresql://u:s3cret@db.example:6543/keys?pool-size=4&sslmode=disable');
    assert.equal(p.params['pool-size'], '4');
    assert.equal(p.label, 'u@db.example:6543/keys');
    assert.ok(!String(p.config.connectionString).includes('pool-size'));
  });
});

test('protect enable / rotate / disable racing rotations and deletes through another keyring: nothing lost (row locks)', {
  skip,
}, async () => {
  const t = freshTable();
  const u = new URL(url());
  u.searchParams.set('table', t);
  await protectRace(`postgres:${u.toString()}`, join(tempDir(), 'pg'));
});
