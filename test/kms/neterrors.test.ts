/**
 * The one network-error classifier (src/kms/neterrors.ts) on real socket failures made here on
 * loopback: a refused connection (never sent: a create may be retried) and a connection reset after
 * the request was written (outcome unknown: a create must be looked up first), as node's http client
 * reports them, bare and wrapped in a KeyportError as the drivers do.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { request } from 'node:http';
import { classifyNetworkError, mayHaveReachedKms } from '../../src/kms/neterrors.js';
import { err } from '../../src/errors.js';

function post(port: number): Promise<unknown> {
  return new Promise((resolve) => {
    const r = request({ host: '127.0.0.1', port, method: 'POST', path: '/' }, () => resolve(undefined));
    r.on('error', resolve);
    r.end('{}');
  });
}

test('refused: UNAVAILABLE, never sent; reset after sending: UNAVAILABLE, outcome unknown', async () => {
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const refused = await post(port);
  assert.deepEqual(classifyNetworkError(refused), { code: 'UNAVAILABLE', errno: 'ECONNREFUSED', sent: false });
  assert.equal(mayHaveReachedKms(err('UNAVAILABLE', 'x', { cause: refused })), false);

  const resetter = createServer((s) => s.once('data', () => s.resetAndDestroy()));
  await new Promise<void>((r) => resetter.listen(0, '127.0.0.1', r));
  const reset = await post((resetter.address() as AddressInfo).port);
  resetter.close();
  const c = classifyNetworkError(reset);
  assert.equal(c?.code, 'UNAVAILABLE');
  assert.equal(c?.sent, true);
  assert.equal(mayHaveReachedKms(err('UNAVAILABLE', 'x', { cause: reset })), true);
  assert.equal(mayHaveReachedKms(err('THROTTLED', 'Rate exceeded')), false);
  assert.equal(classifyNetworkError(Object.assign(new Error('t'), { code: 'ETIMEDOUT' }))?.code, 'TIMEOUT');
  assert.equal(classifyNetworkError(new Error('AccessDeniedException')), undefined);
});
