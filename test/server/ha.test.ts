/**
 * High availability: several `keyport server` replicas (separate processes, `node bin/keyport.js
 * server --config FILE`) over ONE PostgreSQL database, with the envelope wrapper key in a KMS all of
 * them share (moto's AWS KMS when the moto testbed is there, else a shared local: wrapper file).
 *
 *  1. consistency: keys created, rotated and deleted through different replicas; every replica answers
 *     describe / list / encrypt / decrypt from the one shared state.
 *  2. a replica killed with SIGKILL mid-request loses nothing it acknowledged.
 *  3. a keystore outage (PostgreSQL stopped with the testbed script) gives KES-style 502/504 JSON errors,
 *     never a 500 or a crash; the replica recovers by itself when PostgreSQL is back; with
 *     `cache.expiry.offline` a key used just before the outage keeps working during it.
 *
 * Caching. KES caches every key it reads for `cache.expiry.any` (default 5m) on each replica, so with
 * KES-style caching a key deleted through replica A keeps encrypting and decrypting on replica B until
 * B's cache entry expires, and a rotation through A is invisible to B for as long (B keeps encrypting
 * under the old version). The replicas here run with `cache.expiry.any: 0s`: every operation reads the
 * shared record, so all replicas agree at once. One extra replica with `any: 1h` shows the KES
 * behaviour (a deleted key still encrypts there), which is what operators trade for fewer store reads.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { mkdtempSync, writeFileSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { ROOT, skipUnless, serviceEnv, startService } from '../support/testbed.js';
import { agentFor, raw } from '../support/server.js';
import { devSetup } from '../../src/server/dev.js';
import { parseApiKey, type ApiKey } from '../../src/server/identity.js';
import { RemoteKeyring } from '../../src/client/remote.js';
import { isKeyportError } from '../../src/errors.js';
import type { Agent } from 'node:https';

const uniq = () => `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;

// ---- the shared KMS for the wrapper key ----------------------------------------------------------

interface Kms {
  wrapper: string;
  env: Record<string, string>;
  what: string;
}

/** a wrapper key in moto's AWS KMS if the moto testbed is available, else a shared local: file */
async function sharedKms(dir: string): Promise<Kms> {
  const moto = startService('moto');
  if (!('unavailable' in moto)) {
    const { KMSClient, CreateKeyCommand } = await import('@aws-sdk/client-kms');
    const c = new KMSClient({
      region: moto.MOTO_REGION!,
      endpoint: moto.MOTO_ENDPOINT!,
      credentials: { accessKeyId: moto.MOTO_ACCESS_KEY_ID!, secretAccessKey: moto.MOTO_SECRET_ACCESS_KEY! },
    });
    const k = await c.send(
      new CreateKeyCommand({ KeySpec: 'SYMMETRIC_DEFAULT', KeyUsage: 'ENCRYPT_DECRYPT', Description: 'keyport ha test wrapper' }),
    );
    c.destroy();
    return {
      wrapper: `awskms:region=${moto.MOTO_REGION};endpoint=${moto.MOTO_ENDPOINT};key-id=${k.KeyMetadata!.KeyId}`,
      // the replicas find the credentials the way a deployment would: the SDK's default chain
      env: { AWS_ACCESS_KEY_ID: moto.MOTO_ACCESS_KEY_ID!, AWS_SECRET_ACCESS_KEY: moto.MOTO_SECRET_ACCESS_KEY! },
      what: `AWS KMS (moto at ${moto.MOTO_ENDPOINT})`,
    };
  }
  return { wrapper: `local:${join(dir, 'wrapper.key')}`, env: {}, what: `local wrapper file (moto unavailable: ${moto.unavailable})` };
}

// ---- one fresh table per run in the shared database ----------------------------------------------

/** the store's own `table` parameter: every run starts on an empty store (keys in T, settings in T_meta) */
function withTable(url: string, table: string): string {
  const u = new URL(url);
  u.searchParams.set('table', table);
  return u.toString();
}

async function dropTables(url: string, table: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  try {
    await c.connect();
    await c.query(`DROP TABLE IF EXISTS "${table}", "${table}_meta"`);
  } catch {
    /* best effort */
  } finally {
    await c.end().catch(() => undefined);
  }
}

// ---- replicas as processes -----------------------------------------------------------------------

interface Replica {
  name: string;
  url: string;
  child: ChildProcess;
  kr: RemoteKeyring;
  agent: Agent;
  stderr: () => string;
  alive: () => boolean;
}

interface Cluster {
  dir: string;
  admin: ApiKey;
  keyPath: string;
  certPath: string;
  kms: Kms;
}

async function makeCluster(kms: Kms, dir: string): Promise<Cluster> {
  const dev = await devSetup({ dir: join(dir, 'tls'), host: '127.0.0.1', port: 0 });
  return { dir, admin: parseApiKey(dev.apiKey), keyPath: join(dir, 'tls', 'server.key'), certPath: dev.certPath, kms };
}

function writeConfig(c: Cluster, name: string, store: string, cache: { any: string; offline?: string }): string {
  const path = join(c.dir, `${name}.yaml`);
  const q = (s: string) => JSON.stringify(s); // a JSON string is a YAML double-quoted scalar
  writeFileSync(
    path,
    [
      'version: v1',
      'address: 127.0.0.1:0',
      'admin:',
      `  identity: ${q(c.admin.key)}`,
      'tls:',
      `  key: ${q(c.keyPath)}`,
      `  cert: ${q(c.certPath)}`,
      'cache:',
      '  expiry:',
      `    any: ${cache.any}`,
      '    unused: 0s',
      `    offline: ${cache.offline ?? '0s'}`,
      'log:',
      '  error: on',
      '  audit: off',
      'keystore:',
      '  keyport:',
      `    store: ${q(store)}`,
      '    envelope:',
      `      wrapper: ${q(c.kms.wrapper)}`,
      '',
    ].join('\n'),
  );
  return path;
}

const running = new Set<ChildProcess>();
after(() => {
  for (const ch of running) ch.kill('SIGKILL');
});

async function startReplica(c: Cluster, name: string, config: string): Promise<Replica> {
  const child = spawn(process.execPath, [join(ROOT, 'bin/keyport.js'), 'server', '--config', config], {
    env: { ...process.env, ...c.kms.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  child.on('exit', () => running.delete(child));
  let out = '';
  let errText = '';
  child.stderr!.on('data', (d: Buffer) => (errText += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (https:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (code, sig) => reject(new Error(`replica ${name} exited (${code ?? sig}) before listening: ${errText.trim()}`)));
  });
  return {
    name,
    url,
    child,
    kr: new RemoteKeyring(url, { apiKey: c.admin.key, insecure: true }),
    agent: agentFor(c.admin),
    stderr: () => errText,
    alive: () => child.exitCode === null && child.signalCode === null,
  };
}

async function stopReplica(r: Replica): Promise<void> {
  await r.kr.close();
  r.agent.destroy();
  if (!r.alive()) return;
  const exited = new Promise<void>((res) => r.child.once('exit', () => res()));
  r.child.kill('SIGTERM');
  await exited;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return isKeyportError(e) ? e.code : `foreign: ${String(e)}`;
  }
}

const b64 = (b: Buffer) => b.toString('base64');

/** a raw KES call with the admin identity: status and parsed JSON body */
async function call(r: Replica, method: string, path: string, body?: unknown): Promise<{ status: number; json: any; text: string }> {
  const res = await raw(
    r.url,
    r.agent,
    method,
    path,
    body === undefined ? undefined : JSON.stringify(body),
    body === undefined ? {} : { 'Content-Type': 'application/json' },
  );
  let json: any;
  try {
    json = res.body ? JSON.parse(res.body) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text: res.body };
}

// ---------------------------------------------------------------------------------------------------

describe('HA: three keyport replicas over one PostgreSQL database', { skip: skipUnless('postgres') }, () => {
  let cluster: Cluster;
  let pgUrl: string;
  let table: string | undefined;
  let store: string;
  let dir: string | undefined;
  let A: Replica;
  let B: Replica;
  let C: Replica;

  before(async () => {
    const env = serviceEnv('postgres');
    pgUrl = env.PG_URL!;
    dir = mkdtempSync(join(tmpdir(), 'keyport-ha-'));
    const kms = await sharedKms(dir);
    cluster = await makeCluster(kms, dir);
    table = `ha_${uniq()}`;
    store = `postgres:${withTable(pgUrl, table)}`;
    // started at the same time on an empty database: each one sets up the schema and the envelope
    // protection setting; they must agree and none may fail
    [A, B, C] = await Promise.all(['A', 'B', 'C'].map((n) => startReplica(cluster, n, writeConfig(cluster, n, store, { any: '0s' }))));
  });

  after(async () => {
    for (const r of [A, B, C]) if (r) await stopReplica(r);
    if (table) await dropTables(pgUrl, table);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('create, rotate and delete through different replicas: every replica sees one state', async (t) => {
    t.diagnostic(`wrapper KMS: ${cluster.kms.what}`);
    const all = [A, B, C];
    const name = `k-${uniq()}`;

    // create through A: B and C describe the same key, sealed under the shared wrapper
    await A.kr.create(name);
    const d0 = await Promise.all(all.map((r) => r.kr.describe(name)));
    for (const d of d0) {
      assert.equal(d.fingerprint, d0[0]!.fingerprint);
      assert.equal(d.version, 1);
      assert.equal(d.protection, 'sealed');
    }

    // a ciphertext from any replica decrypts on every replica
    const pt = randomBytes(40);
    const ctx = Buffer.from('ha-context');
    const cts = await Promise.all(all.map((r) => r.kr.encrypt(name, pt, ctx)));
    for (const ct of cts) for (const r of all) assert.deepEqual(await r.kr.decrypt(name, ct, ctx), pt, `${r.name} decrypts`);

    // rotate through B: A and C encrypt under version 2 at once (no stale cache), old ciphertexts still open
    const rot = await B.kr.rotate(name);
    assert.equal(rot.version, 2);
    const d1 = await Promise.all(all.map((r) => r.kr.describe(name)));
    for (const d of d1) {
      assert.equal(d.version, 2);
      assert.equal(d.versions, 2);
      assert.equal(d.fingerprint, rot.fingerprint);
      assert.notEqual(d.fingerprint, d0[0]!.fingerprint);
    }
    const ct2 = await A.kr.encrypt(name, pt);
    const ct3 = await C.kr.encrypt(name, pt);
    for (const r of all) {
      assert.deepEqual(await r.kr.decrypt(name, ct2), pt);
      assert.deepEqual(await r.kr.decrypt(name, ct3), pt);
      for (const ct of cts) assert.deepEqual(await r.kr.decrypt(name, ct, ctx), pt, 'a pre-rotation ciphertext still opens');
    }

    // list agrees
    const other = `k-${uniq()}`;
    await C.kr.create(other);
    for (const r of all)
      assert.deepEqual((await r.kr.list('k-*')).names.filter((n) => n === name || n === other).sort(), [name, other].sort());

    // delete through C: gone on A and B immediately, for every operation
    await C.kr.delete(name);
    for (const r of all) {
      assert.equal(await codeOf(r.kr.describe(name)), 'NOT_FOUND', `${r.name} describe`);
      assert.equal(await codeOf(r.kr.encrypt(name, pt)), 'NOT_FOUND', `${r.name} encrypt`);
      assert.equal(await codeOf(r.kr.decrypt(name, ct2)), 'NOT_FOUND', `${r.name} decrypt`);
      assert.ok(!(await r.kr.list('k-*')).names.includes(name));
      const res = await call(r, 'GET', `/v1/key/describe/${name}`);
      assert.equal(res.status, 404);
      assert.deepEqual(res.json, { message: 'key does not exist', code: 'NOT_FOUND' });
    }

    // the name is free again: re-created through A, a new key everywhere; old ciphertexts do not open
    await A.kr.create(name);
    for (const r of all) {
      const d = await r.kr.describe(name);
      assert.equal(d.version, 1);
      assert.notEqual(d.fingerprint, rot.fingerprint);
      assert.equal(await codeOf(r.kr.decrypt(name, ct2)), 'INVALID_CIPHERTEXT');
    }

    // a name created on two replicas at once: exactly one wins, the other gets KES's "already exists"
    const race = `race-${uniq()}`;
    const codes = await Promise.all(all.map((r) => codeOf(r.kr.create(race))));
    assert.deepEqual(codes.filter((c) => c === 'ok').length, 1, codes.join(','));
    assert.deepEqual(codes.filter((c) => c === 'EXISTS').length, 2, codes.join(','));
  });

  // rotate is a read-modify-write: the new version is numbered inside a row-locked transaction
  // (SELECT … FOR UPDATE), so racing rotations through three replicas all land
  it('concurrent rotations through different replicas lose no version', async () => {
    const name = `rot-${uniq()}`;
    await A.kr.create(name);
    const pt = Buffer.from('rotated');
    // each rotation is followed by an encryption on the same replica: a version that a later
    // rotation overwrote would leave that ciphertext undecryptable
    const rounds = 4;
    const results = await Promise.all(
      [A, B, C].flatMap((r) =>
        Array.from({ length: rounds }, async () => {
          const code = await codeOf(r.kr.rotate(name));
          if (code !== 'ok') return { code, ct: undefined };
          return { code, ct: await r.kr.encrypt(name, pt) };
        }),
      ),
    );
    const okCount = results.filter((x) => x.code === 'ok').length;
    // a rotation may be refused (CONFLICT) under contention, but may never be silently lost
    for (const x of results) assert.ok(x.code === 'ok' || x.code === 'CONFLICT', x.code);
    const d = await B.kr.describe(name);
    assert.equal(d.versions, 1 + okCount, `${okCount} rotations acknowledged, ${d.versions - 1} versions stored`);
    for (const x of results) if (x.ct) for (const r of [A, B, C]) assert.deepEqual(await r.kr.decrypt(name, x.ct), pt);
  });

  it('KES-style caching (cache.expiry.any: 1h) keeps a deleted key usable on a replica that cached it', async () => {
    const D = await startReplica(cluster, 'D', writeConfig(cluster, 'D', store, { any: '1h' }));
    try {
      const name = `cached-${uniq()}`;
      await A.kr.create(name);
      const pt = Buffer.from('cached');
      const ct = await D.kr.encrypt(name, pt); // D now holds the key in its cache
      await A.kr.delete(name);
      assert.equal(await codeOf(B.kr.encrypt(name, pt)), 'NOT_FOUND', 'B (any: 0s) sees the delete');
      // D (any: 1h) does what KES does: it serves the cached key until the entry expires
      assert.deepEqual(await D.kr.decrypt(name, ct), pt);
      assert.equal(await codeOf(D.kr.encrypt(name, pt)), 'ok');
      // metadata reads are never served from that cache
      assert.equal(await codeOf(D.kr.describe(name)), 'NOT_FOUND');
    } finally {
      await stopReplica(D);
    }
  });

  it('a replica killed with SIGKILL mid-request loses nothing it acknowledged', async (t) => {
    const shared = `kill-shared-${uniq()}`;
    await B.kr.create(shared);
    const victim = await startReplica(cluster, 'victim', writeConfig(cluster, 'victim', store, { any: '0s' }));
    const prefix = `kill-${uniq()}-`;
    const created: string[] = [];
    const sealedBy: { key: string; pt: Buffer; ct: Buffer }[] = [];
    let failed = 0;
    let stop = false;
    const WORKERS = 16;
    let killAt!: () => void;
    const enough = new Promise<void>((r) => (killAt = r));
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const name = `${prefix}${w}-${i}`;
        const pt = randomBytes(24);
        try {
          await victim.kr.create(name);
          created.push(name);
          const ct = await victim.kr.encrypt(name, pt);
          sealedBy.push({ key: name, pt, ct });
          const ct2 = await victim.kr.encrypt(shared, pt);
          sealedBy.push({ key: shared, pt, ct: ct2 });
        } catch (e) {
          assert.ok(
            isKeyportError(e) && (e.code === 'UNAVAILABLE' || e.code === 'TIMEOUT'),
            `a request cut by the kill fails as unreachable, got ${String(e)}`,
          );
          failed++;
          return;
        }
        if (created.length >= 60) killAt();
      }
    };
    const workers = Array.from({ length: WORKERS }, (_, w) => worker(w));
    await enough;
    const exited = new Promise<NodeJS.Signals | null>((r) => victim.child.once('exit', (_c, s) => r(s)));
    victim.child.kill('SIGKILL');
    assert.equal(await exited, 'SIGKILL');
    stop = true;
    await Promise.all(workers);
    await victim.kr.close();
    victim.agent.destroy();
    t.diagnostic(
      `victim acknowledged ${created.length} creates and ${sealedBy.length} encryptions; ${failed} requests were cut by the kill`,
    );
    // the kill really hit requests in flight (every worker always has one outstanding)
    assert.ok(failed > 0, 'some requests were in flight when the replica died');
    assert.ok(created.length >= 60);

    // every acknowledged create exists (listed and described) and every returned ciphertext opens on B and C
    const listed = new Set((await B.kr.list(`${prefix}*`)).names);
    for (const n of created) assert.ok(listed.has(n), `acknowledged key ${n} is listed`);
    for (const n of created) assert.equal((await C.kr.describe(n)).name, n);
    for (const s of sealedBy) {
      assert.deepEqual(await B.kr.decrypt(s.key, s.ct), s.pt);
      assert.deepEqual(await C.kr.decrypt(s.key, s.ct), s.pt);
    }
    // keys whose create was cut off either do not exist or are complete and usable — never half-written
    for (const n of listed) {
      if (created.includes(n)) continue;
      const pt = Buffer.from('late');
      assert.deepEqual(await C.kr.decrypt(n, await B.kr.encrypt(n, pt)), pt, `unacknowledged but stored key ${n} is whole`);
    }
  });
});

// ---- keystore outage -------------------------------------------------------------------------------

/**
 * A private PostgreSQL cluster for the outage test, run by the project's own testbed script with its
 * own state directory: stopping it cannot break other test files that share the testbed's cluster.
 */
class PrivatePostgres {
  constructor(readonly state: string) {}
  private run(cmd: 'start' | 'stop'): Record<string, string> {
    const r = spawnSync('bash', [join(ROOT, 'scripts', 'testbed', 'postgres.sh'), cmd], {
      encoding: 'utf8',
      timeout: 300_000,
      env: { ...process.env, KEYPORT_TESTBED_STATE: this.state },
    });
    if (r.status !== 0)
      throw new Error(`postgres.sh ${cmd} failed (${r.status}): ${(r.stderr || '').trim().split('\n').slice(-3).join(' | ')}`);
    const env: Record<string, string> = {};
    for (const line of r.stdout.split('\n')) {
      const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
      if (m) env[m[1]!] = m[2]!;
    }
    return env;
  }
  start(): Record<string, string> {
    return this.run('start');
  }
  stop(): void {
    this.run('stop');
  }
}

/**
 * A TCP forwarder on a fixed local port in front of PostgreSQL: the stable address a deployment has
 * (a service IP, a DNS name). The testbed script restarts PostgreSQL on its previous port when that
 * port is still free, else on a new one; the forwarder is pointed at whatever port it got, so R0 and R1
 * recover in either case without touching their connection string. R2 connects straight to the port.
 * The forwarder relays bytes and closes; when nothing listens behind it, it resets the client connection.
 */
class Forwarder {
  private server: Server;
  private socks = new Set<Socket>();
  port = 0;
  constructor(public target: number) {
    this.server = createServer((client) => {
      this.socks.add(client);
      const up = connect(this.target, '127.0.0.1');
      this.socks.add(up);
      client.on('close', () => this.socks.delete(client));
      up.on('close', () => this.socks.delete(up));
      client.on('error', () => up.destroy());
      // destroy, not resetAndDestroy: a reset of a socket already shutting down fails inside libuv and
      // leaves its handle half-closed, and the test process then spun at exit in Node's handle cleanup
      // (seen once in CI: all tests passed, the process never exited). The replica sees the connection
      // end either way, as when PostgreSQL goes away.
      up.on('error', () => client.destroy());
      client.pipe(up);
      up.pipe(client);
    });
  }
  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as { port: number }).port;
    return this.port;
  }
  async close(): Promise<void> {
    for (const s of this.socks) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

function viaPort(url: string, port: number): string {
  const u = new URL(url);
  u.port = String(port);
  return u.toString();
}

describe('HA: keystore outage and recovery', { skip: skipUnless('postgres') }, () => {
  let cluster: Cluster;
  let pgp: PrivatePostgres;
  let fwd: Forwarder;
  let R0: Replica; // through the forwarder, no offline cache
  let R1: Replica; // through the forwarder, cache.expiry.offline: 1h
  let R2: Replica; // straight to PostgreSQL's port (sees connection refused), no offline cache

  let dir: string | undefined;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'keyport-ha-outage-'));
    chmodSync(dir, 0o755); // as root the cluster runs as the postgres user, which must reach its state
    pgp = new PrivatePostgres(join(dir, 'testbed'));
    const env = pgp.start();
    fwd = new Forwarder(Number(env.PG_PORT));
    await fwd.listen();
    cluster = await makeCluster(await sharedKms(dir), join(dir, 'srv'));
    const proxied = `postgres:${viaPort(env.PG_URL!, fwd.port)}`;
    [R0, R1, R2] = await Promise.all([
      startReplica(cluster, 'R0', writeConfig(cluster, 'R0', proxied, { any: '0s' })),
      startReplica(cluster, 'R1', writeConfig(cluster, 'R1', proxied, { any: '0s', offline: '1h' })),
      startReplica(cluster, 'R2', writeConfig(cluster, 'R2', `postgres:${env.PG_URL!}`, { any: '0s' })),
    ]);
  });

  after(async () => {
    for (const r of [R0, R1, R2]) if (r) await stopReplica(r);
    await fwd?.close();
    try {
      pgp?.stop();
    } catch {
      /* already down */
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const seen = new Map<string, Set<number>>();
  const down = (res: { status: number; json: any; text: string }, what: string) => {
    const k = what.split(' ')[0]!;
    seen.set(k, (seen.get(k) ?? new Set()).add(res.status));
    assert.ok(res.status === 502 || res.status === 504, `${what}: expected 502/504, got ${res.status} ${res.text}`);
    assert.equal(typeof res.json?.message, 'string', `${what}: a KES JSON error, got ${res.text}`);
    // KES's message and keyport's stable code, nothing else
    assert.deepEqual(Object.keys(res.json), ['message', 'code']);
    assert.ok(res.json.code === 'UNAVAILABLE' || res.json.code === 'TIMEOUT', res.text);
  };

  it('answers 502/504 during the outage, serves offline-cached keys, and recovers without a restart', async (t) => {
    t.diagnostic(`wrapper KMS: ${cluster.kms.what}`);
    const warm = `warm-${uniq()}`;
    const cold = `cold-${uniq()}`;
    await R0.kr.create(warm);
    await R0.kr.create(cold);
    const pt = Buffer.from('before the outage');
    const ctR0 = await R0.kr.encrypt(warm, pt);
    const ctR1 = await R1.kr.encrypt(warm, pt); // R1 uses `warm` just before the outage; it never touches `cold`
    for (const r of [R0, R1, R2]) assert.equal((await call(r, 'GET', '/v1/ready')).status, 200);

    pgp.stop();

    const during: Buffer[] = [];
    // twice: the first round meets the pool's dead connections, the second opens new ones
    for (let round = 0; round < 2; round++) {
      for (const r of [R0, R1, R2]) {
        const w = `${r.name} round ${round}`;
        down(await call(r, 'GET', '/v1/ready'), `${w} ready`);
        down(await call(r, 'PUT', `/v1/key/create/new-${uniq()}`), `${w} create`);
        down(await call(r, 'GET', `/v1/key/describe/${cold}`), `${w} describe`);
        down(await call(r, 'GET', '/v1/key/list/*'), `${w} list`);
        down(await call(r, 'PUT', `/v1/key/encrypt/${cold}`, { plaintext: b64(pt) }), `${w} encrypt (cold key)`);
        down(await call(r, 'DELETE', `/v1/key/delete/${cold}`), `${w} delete`);
        const st = await call(r, 'GET', '/v1/status');
        assert.equal(st.status, 200);
        assert.equal(st.json.keystore_unreachable, true);
        if (r === R1) {
          // KES's offline cache: the key R1 used just before the outage keeps working
          const enc = await call(r, 'PUT', `/v1/key/encrypt/${warm}`, { plaintext: b64(pt) });
          assert.equal(enc.status, 200, enc.text);
          during.push(Buffer.from(enc.json.ciphertext, 'base64'));
          for (const ct of [ctR0, ctR1, ...during]) {
            const dec = await call(r, 'PUT', `/v1/key/decrypt/${warm}`, { ciphertext: b64(ct) });
            assert.equal(dec.status, 200, dec.text);
            assert.deepEqual(Buffer.from(dec.json.plaintext, 'base64'), pt);
          }
        } else {
          down(await call(r, 'PUT', `/v1/key/encrypt/${warm}`, { plaintext: b64(pt) }), `${w} encrypt (no offline cache)`);
          down(await call(r, 'PUT', `/v1/key/decrypt/${warm}`, { ciphertext: b64(ctR0) }), `${w} decrypt (no offline cache)`);
        }
        assert.ok(r.alive(), `${r.name} is still running`);
      }
    }
    t.diagnostic(`outage answers: ${[...seen].map(([k, v]) => `${k} ${[...v].join('/')}`).join(', ')}`);
    const env = pgp.start();
    const samePort = Number(env.PG_PORT) === fwd.target;
    t.diagnostic(`PostgreSQL restarted on port ${env.PG_PORT} (was ${fwd.target}); the forwarder on ${fwd.port} follows it`);
    fwd.target = Number(env.PG_PORT);
    // R2 has PostgreSQL's own port in its connection string: it can only come back if the port is the same
    const recovering = samePort ? [R0, R1, R2] : [R0, R1];
    if (!samePort) t.diagnostic('the old port was taken: R2 (direct connection) cannot reconnect and is not checked after the restart');

    // the same processes, no restart: the pools reconnect on the next request
    for (const r of recovering) {
      assert.ok(r.alive(), `${r.name} survived the outage`);
      const ready = await call(r, 'GET', '/v1/ready');
      assert.equal(ready.status, 200, `${r.name} ready after the outage: ${ready.text}`);
      assert.equal((await r.kr.describe(cold)).name, cold);
      for (const ct of [ctR0, ctR1, ...during])
        assert.deepEqual(await r.kr.decrypt(warm, ct), pt, `${r.name} decrypts what R1 sealed offline`);
    }
    const after1 = `after-${uniq()}`;
    await R1.kr.create(after1);
    assert.equal((await R0.kr.describe(after1)).name, after1);
    assert.deepEqual(await R1.kr.decrypt(cold, await R0.kr.encrypt(cold, pt)), pt);
    assert.equal(
      (await R0.kr.list('*')).names.filter((n) => n.startsWith('new-')).length,
      0,
      'no create made during the outage was stored',
    );

    // error log lines are one-line JSON events: no stack trace ever reached stderr
    for (const r of [R0, R1, R2]) assert.doesNotMatch(r.stderr(), /\n\s+at /, `${r.name} stderr has no stack trace`);
  });
});
