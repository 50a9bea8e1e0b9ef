/**
 * The server config's errors: a missing section or key is named in words, and a value that may be a
 * secret (a misspelled API key) is never echoed back. With log.requests, one line per request.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadServerConfig } from '../../src/server/config.js';
import { generateApiKey, parseApiKey } from '../../src/server/identity.js';
import { isKeyportError } from '../../src/errors.js';
import { tempDir } from '../support/tmp.js';
import { agentFor, raw, testServer } from '../support/server.js';

function loadError(yaml: string): string {
  const dir = tempDir();
  const f = join(dir, 'server.yml');
  writeFileSync(f, yaml);
  try {
    loadServerConfig(f);
  } catch (e) {
    assert.ok(isKeyportError(e, 'INVALID_INPUT'), String(e));
    assert.ok(!e.message.includes('\n'), 'one line');
    return e.message;
  }
  assert.fail('the config was accepted');
}

test('a missing tls section or key is named in words', () => {
  const noTls = loadError('address: 127.0.0.1:7373\nkeystore:\n  fs:\n    path: ./keys\n');
  assert.match(noTls, /the 'tls' section is missing: give tls\.key and tls\.cert/);
  const noCert = loadError('tls:\n  key: server.key\nkeystore:\n  fs:\n    path: ./keys\n');
  assert.match(noCert, /'tls\.cert' is missing: the file with the server's certificate/);
  assert.match(loadError(''), /the file is empty/);
});

test('a misspelled API key in the config is never echoed', () => {
  const key = generateApiKey().key;
  // one character dropped, one changed: both are still mostly the secret
  for (const typo of [key.slice(0, -1), key.slice(0, 12) + '!' + key.slice(13), key.replace('kes:v1:', 'kes:v1')]) {
    for (const where of [`admin:\n  identity: ${typo}\n`, `policy:\n  app:\n    allow: ['/v1/key/*']\n    identities: ['${typo}']\n`]) {
      const msg = loadError(`${where}tls:\n  key: k\n  cert: c\nkeystore:\n  fs:\n    path: ./keys\n`);
      assert.match(msg, /value not shown/);
      // no 6 characters in a row of the secret part appear in the message
      const secret = typo.replace(/^kes:v1:?/, '');
      for (let i = 0; i + 6 <= secret.length; i++) assert.ok(!msg.includes(secret.slice(i, i + 6)), `echoed: ${msg}`);
    }
  }
});

test('log.requests: one line per request (method, path, status), nothing from the body', async () => {
  const t = await testServer((c) => {
    c.log = { error: false, audit: false, requests: true };
  });
  const lines: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
    lines.push(String(chunk));
    return write(chunk, ...rest);
  }) as typeof process.stderr.write;
  const secret = Buffer.from('plaintext that must not be logged').toString('base64');
  try {
    const admin = agentFor(parseApiKey(t.admin));
    assert.equal((await raw(t.url, admin, 'PUT', '/v1/key/create/logged')).status, 200);
    assert.equal((await raw(t.url, admin, 'PUT', '/v1/key/encrypt/logged', JSON.stringify({ plaintext: secret }))).status, 200);
    assert.equal((await raw(t.url, agentFor(), 'GET', '/v1/key/describe/logged')).status, 400);
  } finally {
    process.stderr.write = write;
  }
  const log = lines.join('');
  assert.match(log, /PUT "\/v1\/key\/create\/logged" 200 /);
  assert.match(log, /PUT "\/v1\/key\/encrypt\/logged" 200 /);
  assert.match(log, / - GET "\/v1\/key\/describe\/logged" 400 /);
  assert.ok(!log.includes(secret));
  assert.equal(log.trim().split('\n').length, 3);
});
