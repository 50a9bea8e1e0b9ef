/**
 * Bounded resources (issue 9, items 8 and 9): a stalled /v1/log/audit reader cannot grow the server's
 * memory (lines are dropped and counted instead); connections that never start TLS, sit idle after it,
 * or stop half-way through a request are closed; a connection limit holds; and TLS offers KES's cipher
 * policy only — checked with OpenSSL's own client, suite by suite.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'node:https';
import { connect as tcpConnect, createServer as createTcpServer, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { PassThrough } from 'node:stream';
import { agentFor, raw, testServer } from '../support/server.js';
import { parseApiKey } from '../../src/server/identity.js';
import { devSetup } from '../../src/server/dev.js';
import { startServer } from '../../src/server/index.js';
import { ROOT } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** resolves when the server closes the socket; rejects if it is still open after `ms` (generous) */
function closedWithin(sock: Socket, ms: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      sock.destroy();
      reject(new Error(`${what}: still open after ${ms} ms`));
    }, ms);
    sock.on('error', () => undefined);
    sock.on('close', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

const port = (url: string) => Number(new URL(url).port);

/** a TLS connection that has finished its handshake (fails, not hangs, if the server closes it first) */
function tlsOpen(p: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ port: p, host: '127.0.0.1', rejectUnauthorized: false });
    s.once('secureConnect', () => resolve(s));
    s.once('error', reject);
    s.once('close', () => reject(new Error('closed before the handshake finished')));
  });
}

test('a stalled audit subscriber: memory stays bounded, dropped lines are counted in a metric', async () => {
  const t = await testServer();
  const admin = agentFor(parseApiKey(t.admin));
  // subscribe and never read: the socket's buffers fill and stay full
  const sub = request(t.url + '/v1/log/audit', { agent: agentFor(parseApiKey(t.admin)), method: 'GET' }, (res) => res.pause());
  sub.on('error', () => undefined);
  sub.end();
  await new Promise((r) => setTimeout(r, 300));
  gc();
  const before = process.memoryUsage();
  // anonymous requests with 15 KB paths: each one an audit line of about 15 KB (60 MB in all)
  const anon = agentFor();
  const long = '/v1/key/describe/' + 'a'.repeat(15_000);
  for (let i = 0; i < 4000; i += 20) await Promise.all(Array.from({ length: 20 }, () => raw(t.url, anon, 'GET', long)));
  gc();
  const after = process.memoryUsage();
  const grown = after.heapUsed + after.external - (before.heapUsed + before.external);
  sub.destroy();
  const metrics = (await raw(t.url, admin, 'GET', '/v1/metrics')).body;
  const dropped = Number(/^kes_log_audit_dropped_events (\d+)/m.exec(metrics)?.[1] ?? 'NaN');
  assert.ok(dropped > 1000, `dropped lines are counted: ${dropped}`);
  assert.ok(grown < 20 * 1024 * 1024, `memory grew by ${(grown / 1048576).toFixed(1)} MB for 60 MB of audit lines`);
});

test('audit log on stdout, a pipe nobody reads: the server keeps answering, lines are dropped and counted, never queued', async () => {
  const dir = tempDir('keyport-auditpipe-');
  const dev = await devSetup({ dir: join(dir, 'dev') });
  const p = await new Promise<number>((resolve) => {
    const srv = createTcpServer();
    srv.listen(0, '127.0.0.1', () => {
      const got = (srv.address() as { port: number }).port;
      srv.close(() => resolve(got));
    });
  });
  const cfg = join(dir, 'kes.yml');
  writeFileSync(
    cfg,
    `address: 127.0.0.1:${p}\nadmin:\n  identity: ${parseApiKey(dev.apiKey).identity}\ntls:\n  key: ${join(dir, 'dev', 'server.key')}\n` +
      `  cert: ${dev.certPath}\nkeystore:\n  fs:\n    path: ${join(dir, 'keys')}\nlog:\n  audit: on\n  error: on\n`,
  );
  // stdout is a pipe (a socket pair, as node makes it) this process does not read until the end
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'keyport.js'), 'server', '--config', cfg], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.pause();
  let errText = '';
  child.stderr.on('data', (c: Buffer) => (errText += c.toString()));
  try {
    const url = `https://127.0.0.1:${p}`;
    const anon = agentFor();
    for (let i = 0; ; i++) {
      if (child.exitCode !== null) assert.fail(`server exited: ${errText}`);
      const up = await raw(url, anon, 'GET', '/version').then(
        (r) => r.status === 200,
        () => false,
      );
      if (up) break;
      assert.ok(i < 300, `server did not start: ${errText}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    // 2,000 anonymous requests with 15 KB paths: 30 MB of audit lines for a reader that takes none
    const N = 2000;
    const long = '/v1/key/describe/flood-' + 'a'.repeat(15_000);
    for (let i = 0; i < N; i += 20) {
      const rs = await Promise.all(Array.from({ length: 20 }, () => raw(url, anon, 'GET', long)));
      for (const r of rs) assert.equal(r.status, 400);
    }
    const admin = agentFor(parseApiKey(dev.apiKey));
    const metrics = (await raw(url, admin, 'GET', '/v1/metrics')).body;
    const dropped = Number(/^kes_log_audit_dropped_events (\d+)/m.exec(metrics)?.[1] ?? 'NaN');
    // now read everything that was kept, up to a marker request made after the flood
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stdout.resume();
    for (let i = 0; !out.includes('/v1/key/describe/marker'); i++) {
      if (i % 20 === 0) await raw(url, admin, 'GET', '/v1/key/describe/marker');
      assert.ok(i < 400, 'the marker never reached stdout');
      await new Promise((r) => setTimeout(r, 50));
    }
    const kept = out.split('\n').filter((l) => l.includes('/v1/key/describe/flood-')).length;
    assert.equal(kept + dropped, N, `every audit line was either written or counted as dropped (kept ${kept}, dropped ${dropped})`);
    assert.ok(kept * 15_000 < 8 * 1024 * 1024, `at most the bounded buffer (and the pipe's own) was kept: ${kept} lines`);
    assert.ok(dropped > N / 2, `lines were dropped: ${dropped}`);
    // the reader goes away (EPIPE on the next audit line): the server keeps serving, lines are dropped
    child.stdout.destroy();
    for (let i = 0; i < 50; i++) assert.equal((await raw(url, anon, 'GET', '/v1/key/describe/after-close')).status, 400);
    assert.equal((await raw(url, admin, 'GET', '/v1/key/describe/after-close')).status, 404);
    assert.equal(child.exitCode, null, `the server exited when its stdout closed: ${errText}`);
  } finally {
    child.kill('SIGKILL');
  }
});

test('a client that goes away half-way through its body is its mistake: no 5xx counted, no error-log line; a huge announced body is refused at once', async () => {
  const dir = tempDir('keyport-gone-');
  const dev = await devSetup({ dir: join(dir, 'dev'), host: '127.0.0.1', port: 0 });
  dev.config.log = { error: true, audit: false };
  let errText = '';
  const stderr = new PassThrough();
  stderr.on('data', (c: Buffer) => (errText += c.toString()));
  const s = await startServer(dev.config, { outputs: { stdout: new PassThrough(), stderr } });
  after(() => s.close());
  const admin = agentFor(parseApiKey(dev.apiKey));
  const head = (length: number) =>
    `PUT /v1/key/encrypt/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${dev.apiKey}\r\nContent-Length: ${length}\r\n\r\n`;
  const metric = async (name: string, code: number) =>
    Number(new RegExp(`^${name}\\{code="${code}"\\} (\\d+)`, 'm').exec((await raw(s.url, admin, 'GET', '/v1/metrics')).body)?.[1] ?? 0);

  // half a body, then the client hangs up
  const gone = await tlsOpen(s.port);
  gone.on('error', () => undefined);
  gone.write(head(1000) + '{"plaintext":');
  await new Promise((r) => setTimeout(r, 200));
  gone.destroy();
  for (let i = 0; (await metric('kes_http_request_error', 400)) === 0; i++) {
    assert.ok(i < 200, 'the abandoned request was never counted');
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(await metric('kes_http_request_failure', 500), 0, 'a client hanging up is not a server failure');
  assert.doesNotMatch(errText, /internal error|aborted/, 'nor an error-log line');

  // 100 GB announced, one byte sent: answered 413 without waiting for the rest
  const huge = await tlsOpen(s.port);
  let reply = '';
  huge.on('data', (c: Buffer) => (reply += c.toString()));
  huge.write(head(100_000_000_000) + '{');
  await closedWithin(huge, 30_000, 'a request announcing 100 GB');
  assert.match(reply, /^HTTP\/1\.1 413 /);
  assert.match(reply, /request body too large/);
  assert.equal((await raw(s.url, admin, 'GET', '/version')).status, 200, 'the server keeps serving');
});

describe('connection limits and TLS policy', async () => {
  const t = await testServer((c) => {
    c.connections = { max: 8, idleTimeoutMs: 1_000, handshakeTimeoutMs: 1_000 };
  });

  test('a connection that never starts TLS is closed (handshake timeout)', async () => {
    const s = tcpConnect(port(t.url), '127.0.0.1');
    await closedWithin(s, 8_000, 'silent TCP connection');
  });

  test('a TLS connection that sends no request is closed (idle timeout)', async () => {
    const s = await tlsOpen(port(t.url));
    await closedWithin(s, 8_000, 'idle TLS connection');
  });

  test('a request that stops half-way through its headers, or its body, is closed', async () => {
    const h = await tlsOpen(port(t.url));
    h.write('GET /version HTTP/1.1\r\nHost: x\r\n');
    await closedWithin(h, 8_000, 'half-sent headers');
    const b = await tlsOpen(port(t.url));
    b.write('PUT /v1/key/encrypt/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"plaintext":');
    await closedWithin(b, 8_000, 'half-sent body');
  });

  test('the connection limit holds: past it, new connections are closed; below it, they are served', async () => {
    await new Promise((r) => setTimeout(r, 1_500)); // earlier tests' connections have timed out
    const held: Socket[] = [];
    for (let i = 0; i < 8; i++) held.push(await tlsOpen(port(t.url)));
    for (const s of held) s.on('error', () => undefined);
    const extra = tcpConnect(port(t.url), '127.0.0.1');
    await closedWithin(extra, 8_000, 'connection past the limit');
    for (const s of held) s.destroy();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await raw(t.url, agentFor(), 'GET', '/version')).status, 200);
  });

  test("TLS offers KES's policy only: TLS 1.2 ECDHE with AES-GCM or ChaCha20-Poly1305, TLS 1.3; nothing else (openssl s_client)", async (tc) => {
    const ciphers = spawnSync('openssl', ['ciphers', '-tls1_2', 'ALL:COMPLEMENTOFALL:@SECLEVEL=0'], { encoding: 'utf8' });
    if (ciphers.status !== 0) return tc.skip('openssl is not installed');
    const all = ciphers.stdout.trim().split(':');
    // the server runs in this process: s_client must run asynchronously
    const handshake = (args: string[]) =>
      new Promise<string | undefined>((resolve) => {
        const c = execFile('openssl', ['s_client', '-connect', `127.0.0.1:${port(t.url)}`, ...args], { timeout: 20_000 }, (_e, stdout) => {
          const m = /Cipher is (\S+)/.exec(stdout) ?? /Cipher\s*:\s*(\S+)/.exec(stdout);
          resolve(m && m[1] !== '(NONE)' && m[1] !== '0000' ? m[1]! : undefined);
        });
        c.stdin?.end();
      });
    // the dev certificate is ECDSA P-256: the ECDHE-RSA suites are allowed but cannot be negotiated with it
    const allowed = ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305'];
    const accepted: string[] = [];
    for (const c of all) if ((await handshake(['-tls1_2', '-cipher', `${c}:@SECLEVEL=0`])) === c) accepted.push(c);
    assert.deepEqual(accepted.sort(), allowed.sort(), `TLS 1.2 suites accepted out of ${all.length} tried`);
    for (const c of ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'])
      assert.equal(await handshake(['-tls1_3', '-ciphersuites', c]), c);
    for (const c of ['TLS_AES_128_CCM_SHA256', 'TLS_AES_128_CCM_8_SHA256'])
      assert.equal(await handshake(['-tls1_3', '-ciphersuites', c]), undefined);
    for (const v of ['-tls1', '-tls1_1']) assert.equal(await handshake([v, '-cipher', 'ALL:@SECLEVEL=0']), undefined, `${v} is refused`);
  });
});
