/**
 * `keyport server --json`: everything the server prints is one JSON object per line — the start-up
 * line, notices, the request log, KES's audit and error logs, the shutdown lines and errors — with
 * stable field names, and never a secret (the --dev admin API key only on the start that made it, as a
 * field). Every line of stdout and stderr is parsed with JSON.parse.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcessByStdio, spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { RemoteKeyring } from '../../src/client/remote.js';
import { ROOT } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';

const BIN = join(ROOT, 'bin', 'keyport.js');
const dir = tempDir('keyport-srvjson-');
const env = { ...process.env, KEYPORT_HOME: join(dir, 'home'), KEYPORT_STORE: '', KES_SERVER: '', KEYPORT_SERVER: '' };

type Line = Record<string, unknown> & { time: string; event?: string };

/** every line parsed; a line that is not one JSON object fails the test */
function parseLines(text: string, stream: string): Line[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      let v: unknown;
      assert.doesNotThrow(() => (v = JSON.parse(l)), `${stream}: not JSON: ${l}`);
      assert.ok(v && typeof v === 'object' && !Array.isArray(v), `${stream}: not one object: ${l}`);
      assert.equal(typeof (v as Line).time, 'string', `${stream}: no time: ${l}`);
      return v as Line;
    });
}

interface Running {
  child: ChildProcessByStdio<null, Readable, Readable>;
  url: string;
  out: () => string;
  err: () => string;
  exit: Promise<number | null>;
}

async function start(args: string[]): Promise<Running> {
  const child = spawn(process.execPath, [BIN, 'server', '--json', '--addr', '127.0.0.1:0', ...args], {
    env,
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let errText = '';
  child.stderr.on('data', (d: Buffer) => (errText += d.toString()));
  const exit = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const first = out.split('\n')[0]!;
      if (out.includes('\n')) resolve(String((JSON.parse(first) as Line)['url']));
    });
    void exit.then((c) => reject(new Error(`server exited ${c}: ${out} ${errText}`)));
  });
  return { child, url, out: () => out, err: () => errText, exit };
}

async function stop(r: Running): Promise<void> {
  r.child.kill('SIGTERM');
  assert.equal(await r.exit, 0);
}

test('--dev --json: start-up, shutdown and stopped lines; the admin key as a field on the first start only', async () => {
  const first = await start(['--dev']);
  const apiKey = readFileSync(join(dir, 'home', 'dev', 'admin.key'), 'utf8').trim();
  const kr = new RemoteKeyring(first.url, { apiKey, insecure: true });
  await kr.create('json-dev');
  await kr.close();
  await stop(first);
  const lines = parseLines(first.out(), 'stdout');
  assert.deepEqual(
    lines.map((l) => l.event),
    ['listening', 'shutdown', 'stopped'],
  );
  const up = lines[0]!;
  assert.equal(up['url'], first.url);
  assert.equal(up['workers'], 1);
  assert.equal(up['state'], join(dir, 'home', 'dev'));
  assert.equal(up['adminKeyFile'], join(dir, 'home', 'dev', 'admin.key'));
  assert.equal(up['adminKey'], apiKey, 'the new admin key is printed once, as a field');
  assert.equal(lines[1]!['signal'], 'SIGTERM');
  parseLines(first.err(), 'stderr');

  const again = await start(['--dev']);
  await stop(again);
  const l2 = parseLines(again.out(), 'stdout');
  assert.equal(l2[0]!.event, 'listening');
  assert.equal(l2[0]!['adminKeyFile'], join(dir, 'home', 'dev', 'admin.key'));
  assert.ok(!('adminKey' in l2[0]!), 'no adminKey field on a later start');
  assert.ok(!again.out().includes(apiKey) && !again.err().includes(apiKey), 'the admin key is not printed again');
});

test('--config --json with log.requests, audit and error logs: JSON lines only, no body, no API key', async () => {
  // the --dev state of the first test gives a certificate and an admin key to configure
  const devDir = join(dir, 'home', 'dev');
  const apiKey = readFileSync(join(devDir, 'admin.key'), 'utf8').trim();
  const cfg = join(dir, 'server.yml');
  writeFileSync(
    cfg,
    [
      'address: 127.0.0.1:7373',
      `admin:\n  identity: ${apiKey}`,
      `tls:\n  key: ${join(devDir, 'server.key')}\n  cert: ${join(devDir, 'server.cert')}`,
      // an allow rule for an API KES v0.24 dropped: a start-up notice
      "policy:\n  old:\n    allow: ['/v1/key/bulk/decrypt/*']",
      'log:\n  error: on\n  audit: on\n  requests: on',
      `keystore:\n  fs:\n    path: ${join(dir, 'kes-keys')}`,
      '',
    ].join('\n'),
  );
  const r = await start(['--config', cfg]);
  const secret = 'plaintext that must never be logged';
  const kr = new RemoteKeyring(r.url, { apiKey, insecure: true });
  await kr.create('json-cfg');
  await kr.encrypt('json-cfg', Buffer.from(secret));
  await assert.rejects(kr.describe('missing-key'));
  await kr.close();
  const anon = new RemoteKeyring(r.url, { insecure: true });
  await assert.rejects(anon.describe('json-cfg'));
  await anon.close();
  await stop(r);

  const out = parseLines(r.out(), 'stdout');
  const err = parseLines(r.err(), 'stderr');
  for (const text of [r.out(), r.err()]) {
    assert.ok(!text.includes(apiKey), 'the API key from the config is never printed');
    assert.ok(!text.includes(secret) && !text.includes(Buffer.from(secret).toString('base64')), 'no request body');
  }
  assert.equal(out[0]!.event, 'listening');
  assert.ok(!('adminKey' in out[0]!));
  assert.deepEqual(
    out.slice(-2).map((l) => l.event),
    ['shutdown', 'stopped'],
  );
  // KES's audit log keeps KES's own JSON shape
  const audit = out.filter((l) => l.event === undefined);
  assert.ok(audit.some((l) => (l['request'] as { path?: string })?.path === '/v1/key/create/json-cfg'));

  const notices = err.filter((l) => l.event === 'notice');
  assert.equal(notices.length, 1);
  assert.match(String(notices[0]!['message']), /\/v1\/key\/bulk\/decrypt/);
  const requests = err.filter((l) => l.event === 'request');
  const seen = requests.map((l) => `${l['method']} ${l['path']} ${l['status']}`);
  assert.ok(seen.includes('POST /v1/key/create/json-cfg 200') || seen.includes('PUT /v1/key/create/json-cfg 200'), seen.join('\n'));
  assert.ok(
    seen.some((s) => /^(PUT|POST) \/v1\/key\/encrypt\/json-cfg 200$/.test(s)),
    seen.join('\n'),
  );
  assert.ok(seen.includes('GET /v1/key/describe/missing-key 404'), seen.join('\n'));
  assert.ok(seen.includes('GET /v1/key/describe/json-cfg 400'), seen.join('\n'));
  for (const l of requests) {
    assert.deepEqual(Object.keys(l).sort(), ['event', 'identity', 'ip', 'method', 'ms', 'path', 'status', 'time']);
    assert.equal(typeof l['ms'], 'number');
    assert.equal(typeof l['status'], 'number');
  }
  assert.equal(requests.find((l) => l['status'] === 400)!['identity'], null, 'an anonymous request has identity null');
});

test('--json errors are JSON lines too: usage errors (exit 2) and start-up failures (exit 1)', () => {
  const run = (args: string[]) => spawnSync(process.execPath, [BIN, 'server', ...args], { env, cwd: dir, encoding: 'utf8' });
  for (const [args, code, match] of [
    [['--json', '--no-such-option'], 2, /unknown option '--no-such-option'/],
    [['--json'], 2, /give --config FILE, or --dev/],
    [['--json', '--dev', '--addr', 'nonsense'], 2, /--addr 'nonsense' is not HOST:PORT/],
    [['--json', '--config', join(dir, 'missing.yml')], null, /missing\.yml/],
  ] as const) {
    const r = run([...args]);
    if (code !== null) assert.equal(r.status, code, r.stderr);
    else assert.notEqual(r.status, 0);
    assert.equal(r.stdout, '');
    const lines = parseLines(r.stderr, 'stderr');
    assert.equal(lines.length, 1, r.stderr);
    assert.equal(lines[0]!.event, 'error');
    assert.equal(typeof lines[0]!['code'], 'string');
    assert.match(String(lines[0]!['message']), match);
  }
  // a port already taken: a start-up failure after the config was read
  const busy = spawn(
    process.execPath,
    ['-e', "require('net').createServer().listen(0,'127.0.0.1',function(){console.log(this.address().port)})"],
    {
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  );
  return new Promise<void>((resolve, reject) => {
    busy.stdout.once('data', (d: Buffer) => {
      try {
        const r = run(['--json', '--dev', '--addr', `127.0.0.1:${String(d).trim()}`]);
        assert.equal(r.status, 1, r.stderr);
        const lines = parseLines(r.stderr, 'stderr');
        assert.equal(lines.length, 1, r.stderr);
        assert.equal(lines[0]!.event, 'error');
        assert.equal(lines[0]!['code'], 'UNAVAILABLE');
        assert.match(String(lines[0]!['message']), /already in use/);
        resolve();
      } catch (e) {
        reject(e);
      } finally {
        busy.kill();
      }
    });
  });
});

test('an address this machine does not have, or a host name that does not resolve: one error line saying so, exit 1', () => {
  const run = (args: string[]) => spawnSync(process.execPath, [BIN, 'server', ...args], { env, cwd: dir, encoding: 'utf8' });
  for (const [addr, why] of [
    ['192.0.2.1:7373', /no network interface of this machine has that address/],
    ['no-such-host.invalid:7373', /host name does not resolve/],
  ] as const) {
    for (const json of [false, true]) {
      const r = run([...(json ? ['--json'] : []), '--dev', '--addr', addr]);
      assert.equal(r.status, 1, r.stderr);
      assert.equal(r.stdout, '', 'nothing says it listens');
      const message = json ? String(parseLines(r.stderr, 'stderr')[0]!['message']) : r.stderr;
      assert.match(message, why);
      assert.doesNotMatch(message, /internal error/);
      if (!json) assert.equal(r.stderr.split('\n').filter(Boolean).length, 1, r.stderr);
    }
  }
});

test('--workers 2 --json: "listening" once every worker listens, with the port they got; a port in use: errors, exit 1, no "listening"', async () => {
  const r = await start(['--dev', '--workers', '2']);
  const up = parseLines(r.out(), 'stdout')[0]!;
  assert.equal(up.event, 'listening');
  assert.equal(up['workers'], 2);
  assert.notEqual(new URL(r.url).port, '0', 'the real port, not the 0 asked for');
  const apiKey = readFileSync(join(dir, 'home', 'dev', 'admin.key'), 'utf8').trim();
  const kr = new RemoteKeyring(r.url, { apiKey, insecure: true });
  await kr.create('json-workers');
  await kr.close();
  // the same port again: every worker fails to listen; the server says so and exits 1
  const busy = spawnSync(
    process.execPath,
    [BIN, 'server', '--json', '--dev', '--workers', '2', '--addr', `127.0.0.1:${new URL(r.url).port}`],
    {
      env,
      cwd: dir,
      encoding: 'utf8',
      timeout: 120_000,
    },
  );
  await stop(r);
  assert.equal(busy.status, 1, busy.stderr);
  assert.equal(busy.stdout, '', 'no "listening" when nothing listens');
  const errs = parseLines(busy.stderr, 'stderr');
  assert.ok(errs.length >= 1);
  for (const l of errs) {
    assert.equal(l.event, 'error');
    assert.match(String(l['message']), /already in use/);
  }
});
