/**
 * One client must not stall everyone (issue 9, items 6 and 7): 40 rsa-3072 creates and another process
 * holding the SQLite write lock are in flight together, and `/version` keeps answering within a second
 * throughout (an outcome of the design — key generation and lock waits off the event loop — checked
 * generously, not a benchmark). A write that needs the locked database gets a 503 while the lock is
 * still held; reads go on; a create the store cannot hold is refused with a 4xx before any key is made.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { ROOT } from '../support/testbed.js';
import { agentFor, raw, testServer } from '../support/server.js';
import { parseApiKey } from '../../src/server/identity.js';
import { kesDecrypt } from '../../src/crypto/kes-ciphertext.js';
import { RemoteKeyring } from '../../src/client/remote.js';
import { isKeyportError } from '../../src/errors.js';

/** another process (better-sqlite3, as `protect rotate` or `sqlite3` would) takes the write lock and holds it */
function holdWriteLock(db: string, ms: number): Promise<{ released: Promise<void>; holding: () => boolean }> {
  const script = `
    const Database = require('better-sqlite3');
    const db = new Database(${JSON.stringify(db)});
    db.exec('BEGIN IMMEDIATE');
    db.prepare("INSERT INTO meta (key, value) VALUES ('lock-holder', 'x') ON CONFLICT(key) DO UPDATE SET value = 'y'").run();
    process.stdout.write('locked\\n');
    setTimeout(() => { db.exec('ROLLBACK'); db.close(); process.exit(0); }, ${ms});`;
  const child = spawn(process.execPath, ['-e', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let running = true;
  const released = new Promise<void>((r) =>
    child.on('exit', () => {
      running = false;
      r();
    }),
  );
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('locked')) resolve({ released, holding: () => running });
    });
    child.on('exit', (c) => (running ? undefined : c !== 0 && reject(new Error(`lock holder exited ${c}`))));
  });
}

test('/version answers within 1 s while 40 rsa-3072 creates and a held SQLite write lock are in flight', async () => {
  const t = await testServer();
  const admin = agentFor(parseApiKey(t.admin));
  const db = (t.config.store as { store: string }).store.replace(/^sqlite:/, '');
  assert.equal((await raw(t.url, admin, 'PUT', '/v1/key/create/before-lock')).status, 200);

  const latencies: number[] = [];
  let done = false;
  const probe = (async () => {
    const anon = agentFor();
    while (!done) {
      const t0 = performance.now();
      const r = await raw(t.url, anon, 'GET', '/version');
      latencies.push(performance.now() - t0);
      assert.equal(r.status, 200);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();

  // held three times as long as a write waits for it, so a loaded machine still sees the refusal inside the window
  const lock = await holdWriteLock(db, 15_000);
  const creates = Array.from({ length: 40 }, (_, i) =>
    raw(t.url, admin, 'PUT', `/v1/key/create/rsa-${i}`, JSON.stringify({ type: 'rsa-3072' })).then((r) => ({ i, ...r })),
  );
  // a write that needs the locked database is refused while the lock is still held, not frozen until it goes
  const blocked = await raw(t.url, admin, 'PUT', '/v1/key/create/during-lock');
  const stillHeld = lock.holding();
  assert.ok(stillHeld, `the answer (${blocked.status}) came while the other process still held the lock`);
  assert.equal(blocked.status, 503, blocked.body);
  assert.equal(JSON.parse(blocked.body).code, 'THROTTLED');
  // reads do not need the write lock
  assert.equal((await raw(t.url, admin, 'GET', '/v1/key/describe/before-lock')).status, 200);
  await lock.released;

  const results = await Promise.all(creates);
  done = true;
  await probe;
  for (const r of results) assert.ok(r.status === 200 || r.status === 503, `create ${r.i}: ${r.status} ${r.body}`);
  for (const r of results.filter((x) => x.status === 200)) {
    const d = JSON.parse((await raw(t.url, admin, 'GET', `/v1/key/describe/rsa-${r.i}`)).body);
    assert.equal(d.type, 'rsa-3072');
  }
  assert.ok(
    results.some((r) => r.status === 200),
    'some rsa creates went through',
  );
  // after the lock, writes work again
  assert.equal((await raw(t.url, admin, 'PUT', '/v1/key/create/after-lock')).status, 200);
  const worst = Math.max(...latencies);
  assert.ok(latencies.length >= 10, `${latencies.length} probes`);
  assert.ok(worst < 1000, `/version took up to ${worst.toFixed(0)} ms (probes: ${latencies.length})`);
});

test('a create the store cannot hold is refused with 400 before a key is generated (KES fs keystore, rsa-3072)', async () => {
  const t = await testServer((c, dir) => {
    mkdirSync(join(dir, 'kes-keys'));
    c.store = `kes-fs:${join(dir, 'kes-keys')}`;
  });
  const app = agentFor(t.app);
  const r = await raw(t.url, app, 'PUT', '/v1/key/create/my-app-rsa', JSON.stringify({ type: 'rsa-3072' }));
  assert.equal(r.status, 400, r.body);
  assert.equal(JSON.parse(r.body).code, 'UNSUPPORTED');
  assert.match(JSON.parse(r.body).message, /aes256/);
  // a name that is taken is refused before generating too
  assert.equal((await raw(t.url, app, 'PUT', '/v1/key/create/my-app-aes')).status, 200);
  const again = await raw(t.url, app, 'PUT', '/v1/key/create/my-app-aes');
  assert.equal(again.status, 400);
  assert.deepEqual(JSON.parse(again.body), { message: 'key already exists', code: 'EXISTS' });
});

test('a create or import that timed out for its client is cancelled, not left to land later: its retry is answered 200, anyone else "exists"', async () => {
  // creates and imports time out after 1.5 s; another process holds the SQLite write lock for 4 s (a write
  // waits up to 5 s for it), so the store write is waiting when the client is answered 503: the request's
  // signal cancels it (issue 8 item 5), so nothing lands after the 503 (a write that committed as its
  // deadline fired is still remembered for the retry: src/server, docs/kes.md)
  const t = await testServer((c) => {
    c.routes['/v1/key/create/'] = { timeoutMs: 1_500 };
    c.routes['/v1/key/import/'] = { timeoutMs: 1_500 };
  });
  const admin = agentFor(parseApiKey(t.admin));
  const app = agentFor(t.app);
  const db = (t.config.store as { store: string }).store.replace(/^sqlite:/, '');
  assert.equal((await raw(t.url, admin, 'PUT', '/v1/key/create/warm-up')).status, 200);
  const material = randomBytes(32);
  const lock = await holdWriteLock(db, 4_000);
  const [created, imported, byApp] = await Promise.all([
    raw(t.url, admin, 'PUT', '/v1/key/create/my-app-late'),
    raw(t.url, admin, 'PUT', '/v1/key/import/late-import', JSON.stringify({ key: material.toString('base64') })),
    raw(t.url, app, 'PUT', '/v1/key/create/my-app-replaced'),
  ]);
  const stillHeld = lock.holding();
  for (const r of [created, imported, byApp]) {
    assert.equal(r.status, 503, r.body);
    assert.equal(JSON.parse(r.body).message, 'request timed out');
  }
  assert.ok(stillHeld, 'the 503s came while the lock was held (the writes were still waiting for it)');
  await lock.released;
  // the waiting writes were cancelled with their requests: nothing appears once the lock is gone
  await new Promise((r) => setTimeout(r, 300));
  for (const n of ['my-app-late', 'late-import', 'my-app-replaced'])
    assert.equal((await raw(t.url, admin, 'GET', `/v1/key/describe/${n}`)).status, 404, `${n} was written after its 503`);
  const status = async (agent: typeof admin, path: string, body?: string) => {
    const r = await raw(t.url, agent, 'PUT', path, body);
    return r.status === 200 ? 200 : `${r.status} ${JSON.parse(r.body).code}`;
  };
  // the retry makes the key; after that anyone, the same identity too, is told it exists
  assert.equal(await status(admin, '/v1/key/create/my-app-late'), 200);
  assert.equal(await status(app, '/v1/key/create/my-app-late'), '400 EXISTS');
  assert.equal(await status(admin, '/v1/key/create/my-app-late'), '400 EXISTS');
  assert.equal(await status(admin, '/v1/key/import/late-import', JSON.stringify({ key: material.toString('base64') })), 200);
  assert.equal(
    await status(admin, '/v1/key/import/late-import', JSON.stringify({ key: randomBytes(32).toString('base64') })),
    '400 EXISTS',
  );
  assert.equal(await status(admin, '/v1/key/import/late-import', JSON.stringify({ key: material.toString('base64') })), '400 EXISTS');
  // and it is the key that was imported
  const ct = JSON.parse((await raw(t.url, admin, 'PUT', '/v1/key/encrypt/late-import', JSON.stringify({ plaintext: 'aGk=' }))).body);
  assert.equal(kesDecrypt(material, Buffer.from(ct.ciphertext, 'base64')).toString(), 'hi');
  assert.equal(await status(app, '/v1/key/create/my-app-replaced'), 200);
});

test('every route passes its deadline to the key ring: a rotate or delete waiting for the SQLite write lock is answered 503 and cancelled, and so is one whose remote caller gave up', async () => {
  // rotate and delete time out after 1.5 s; another process holds the write lock for 4 s (a write waits up to
  // 5 s for it): without the request's signal reaching the store, the waiting writes would land once the lock goes
  const t = await testServer((c) => {
    c.routes['/v1/key/rotate/'] = { timeoutMs: 1_500 };
    c.routes['/v1/key/delete/'] = { timeoutMs: 1_500 };
  });
  const admin = agentFor(parseApiKey(t.admin));
  const remote = new RemoteKeyring(t.url, { apiKey: t.admin, insecure: true });
  const db = (t.config.store as { store: string }).store.replace(/^sqlite:/, '');
  for (const n of ['rot', 'del', 'by-remote']) assert.equal((await raw(t.url, admin, 'PUT', `/v1/key/create/${n}`)).status, 200);
  // a caller whose signal already fired sends nothing
  await assert.rejects(remote.rotate('by-remote', { signal: AbortSignal.abort() }), (e) => isKeyportError(e, 'TIMEOUT'));
  const lock = await holdWriteLock(db, 4_000);
  const [rotated, deleted, remoteGaveUp] = await Promise.all([
    raw(t.url, admin, 'PUT', '/v1/key/rotate/rot'),
    raw(t.url, admin, 'DELETE', '/v1/key/delete/del'),
    // the remote key ring's own signal aborts its HTTP request; the server sees its client go and cancels the store write
    remote.rotate('by-remote', { signal: AbortSignal.timeout(500) }).then(
      () => 'answered',
      (e: unknown) => (isKeyportError(e) ? e.code : String(e)),
    ),
  ]);
  const stillHeld = lock.holding();
  for (const r of [rotated, deleted]) {
    assert.equal(r.status, 503, r.body);
    assert.equal(JSON.parse(r.body).message, 'request timed out');
  }
  assert.equal(remoteGaveUp, 'TIMEOUT');
  assert.ok(stillHeld, 'the answers came while the lock was held (the writes were still waiting for it)');
  await lock.released;
  await new Promise((r) => setTimeout(r, 300));
  // nothing landed after its caller was answered or went away
  assert.equal((await raw(t.url, admin, 'GET', '/v1/key/describe/del')).status, 200, 'the cancelled delete was made');
  for (const n of ['rot', 'by-remote']) assert.equal((await remote.describe(n)).version, 1, `the cancelled rotate of ${n} was made`);
  // and the same calls work once the lock is gone
  assert.equal((await remote.rotate('rot')).version, 2);
  await remote.delete('del');
  assert.equal((await raw(t.url, admin, 'GET', '/v1/key/describe/del')).status, 404);
  await remote.close();
});
