/**
 * 10 000+ malformed requests (paths, methods, JSON, base64, sizes, identities, TLS without a client
 * certificate): no crash, no 500, every error a KES-style JSON error `{"message": …}`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:tls';
import { parseApiKey } from '../../src/server/identity.js';
import { testServer, agentFor, raw } from '../support/server.js';

const N = Number(process.env.KEYPORT_FUZZ_REQUESTS ?? 10_000);

let seed = 0x2545f491;
const rnd = (n: number) => {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) % n;
};
const pick = <T>(a: readonly T[]): T => a[rnd(a.length)]!;

const PREFIXES = [
  '/v1/key/create/',
  '/v1/key/import/',
  '/v1/key/describe/',
  '/v1/key/list/',
  '/v1/key/delete/',
  '/v1/key/encrypt/',
  '/v1/key/decrypt/',
  '/v1/key/generate/',
  '/v1/key/hmac/',
  '/v1/key/sign/',
  '/v1/key/verify/',
  '/v1/key/public/',
  '/v1/key/rotate/',
  '/v1/key/versions/',
  '/v1/policy/describe/',
  '/v1/policy/read/',
  '/v1/policy/list/',
  '/v1/identity/describe/',
  '/v1/identity/list/',
  '/v1/identity/self/describe',
  '/v1/status',
  '/v1/api',
  '/version',
  '/v1/ready',
  '/v1/',
  '/',
  '/v2/key/create/x',
  '//v1/key/create/x',
];
const NAMES = [
  '',
  'k',
  'fz',
  'a-',
  '-a',
  '_',
  '*',
  'a*',
  '%00',
  '%ff%fe',
  '..%2f..%2fetc',
  'x'.repeat(81),
  'x'.repeat(5000),
  'ä',
  '%E2%82%AC',
  'a b',
  'a%20b',
  'key?x=1',
  'key#frag',
  'k/../k',
  '%',
  '%zz',
  'sig',
  'rsa',
];
const METHODS = ['GET', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS'];

function body(): string | Buffer | undefined {
  switch (rnd(14)) {
    case 0:
      return undefined;
    case 1:
      return randomBytes(rnd(300));
    case 2:
      return '{';
    case 3:
      return 'null';
    case 4:
      return '[]';
    case 5:
      return JSON.stringify({ plaintext: 'not base64!!', context: 5 });
    case 6:
      return JSON.stringify({ ciphertext: randomBytes(rnd(100)).toString('base64'), context: randomBytes(4).toString('base64') });
    case 7:
      return JSON.stringify({ plaintext: randomBytes(rnd(64)).toString('base64') });
    case 8:
      return JSON.stringify({
        key: randomBytes(pick([0, 16, 31, 32, 33, 64, 200])).toString('base64'),
        cipher: pick(['AES256', 'ChaCha20', 'DES', '', 7]),
        type: pick([undefined, 'ec-p256', 'bogus', 3]),
      });
    case 9:
      return JSON.stringify({ message: 12, signature: {}, format: pick(['der', 'raw', 'bad']) });
    case 10:
      return '{"a":' + '['.repeat(2000) + ']'.repeat(2000) + '}';
    case 11:
      return JSON.stringify({ type: pick(['rsa-2048', 'aes256', 'nope', null]), usage: pick([['namespace'], 'x', [1], null]) });
    case 12:
      return Buffer.alloc(rnd(3) === 0 ? (1 << 20) + 10 : 5000, 0x61);
    default:
      return JSON.stringify({ ciphertext: 'e30=', context: '' });
  }
}

test(`${N} malformed requests: never a crash, never a 500, always a JSON error`, async () => {
  const t = await testServer();
  const agents = [agentFor(), agentFor(t.app), agentFor(parseApiKey(t.admin)), agentFor(t.stranger)];
  // a few real keys so some requests reach deep into the handlers
  const admin = agents[2]!;
  await raw(t.url, admin, 'PUT', '/v1/key/create/k');
  await raw(t.url, admin, 'PUT', '/v1/key/create/sig', JSON.stringify({ type: 'ec-p256' }));
  await raw(t.url, admin, 'PUT', '/v1/key/create/rsa', JSON.stringify({ type: 'rsa-2048' }));
  const bad: string[] = [];
  let done = 0;
  const worker = async () => {
    while (done < N) {
      done++;
      const path =
        pick(PREFIXES) +
        (rnd(2) ? pick(NAMES) : '') +
        (rnd(10) === 0 ? '?after=' + pick(NAMES) + '&limit=' + pick(['-1', 'x', '5', '1e9']) : '');
      const method = pick(METHODS);
      const b = method === 'GET' && rnd(2) ? undefined : body();
      const headers: Record<string, string> = {};
      if (rnd(8) === 0)
        headers['Authorization'] = pick([
          'Bearer kes:v1:AAAA',
          'Bearer ' + t.app.key,
          'Basic xyz',
          'Bearer kes:v1:' + randomBytes(33).toString('base64'),
        ]);
      if (rnd(10) === 0) headers['Content-Type'] = 'text/plain';
      let r;
      try {
        r = await raw(t.url, pick(agents), method, path, b, headers);
      } catch (e) {
        bad.push(`${method} ${path.slice(0, 60)}: transport error ${(e as Error).message}`);
        continue;
      }
      if (r.status >= 500 && r.status !== 501 && r.status !== 502 && r.status !== 503 && r.status !== 504)
        bad.push(`${method} ${path.slice(0, 60)} → ${r.status} ${r.body.slice(0, 80)}`);
      if (r.status === 500) bad.push(`${method} ${path.slice(0, 60)} → 500`);
      if (r.status >= 400) {
        try {
          const j = JSON.parse(r.body);
          // KES's {"message": …} plus keyport's stable error code, nothing else
          if (typeof j.message !== 'string' || typeof j.code !== 'string' || Object.keys(j).length !== 2)
            bad.push(`${method} ${path.slice(0, 60)} → error body ${r.body.slice(0, 80)}`);
        } catch {
          bad.push(`${method} ${path.slice(0, 60)} → ${r.status} non-JSON error ${r.body.slice(0, 80)}`);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  // TLS handshakes without a client certificate, and garbage instead of TLS
  for (let i = 0; i < 20; i++) {
    await new Promise<void>((resolve) => {
      const s = connect({ host: '127.0.0.1', port: t.s.port, rejectUnauthorized: false }, () => {
        s.write(i % 2 ? 'GET /v1/key/list/* HTTP/1.1\r\nHost: x\r\n\r\n' : 'garbage\r\n\r\n');
        setTimeout(() => s.destroy(), 20);
      });
      s.on('error', () => resolve());
      s.on('close', () => resolve());
    });
  }
  assert.deepEqual(bad.slice(0, 20), []);
  const alive = await raw(t.url, admin, 'GET', '/version');
  assert.equal(alive.status, 200);
});
