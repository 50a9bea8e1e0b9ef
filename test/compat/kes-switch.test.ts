/**
 * The switch a KES user makes: data sealed by a real KES v0.24.0, its FS keystore migrated with
 * `keyport migrate`, and keyport server answering the same decrypt and data-key requests.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { skipUnless, serviceEnv } from '../support/testbed.js';
import { migrate } from '../../src/migrate/index.js';
import { RemoteKeyring } from '../../src/client/remote.js';
import { testServer } from '../support/server.js';

describe('switching from a real KES to keyport server', { skip: skipUnless('kes') }, () => {
  test('ciphertexts and data keys made by KES decrypt through keyport after migrating its keystore', async () => {
    const env = serviceEnv('kes');
    const tls = {
      ca: readFileSync(env['KES_CA']!),
      cert: readFileSync(env['KES_CLIENT_CERT']!),
      key: readFileSync(env['KES_CLIENT_KEY']!),
    };
    const kes = (method: string, path: string, body?: unknown) =>
      new Promise<Record<string, string>>((resolve, reject) => {
        const req = request(env['KES_SERVER']! + path, { method, ...tls }, (res) => {
          let s = '';
          res.on('data', (d) => (s += d));
          res.on('end', () =>
            res.statusCode === 200 ? resolve(s ? JSON.parse(s) : {}) : reject(new Error(`KES ${path}: ${res.statusCode} ${s}`)),
          );
        });
        req.on('error', reject);
        req.end(body === undefined ? undefined : JSON.stringify(body));
      });
    const name = `minio-sse-${randomBytes(4).toString('hex')}`;
    await kes('POST', `/v1/key/create/${name}`);
    const ctx = Buffer.from('{"bucket":"photos","object":"cat.png"}');
    const sealed = await kes('POST', `/v1/key/encrypt/${name}`, {
      plaintext: Buffer.from('object encryption key').toString('base64'),
      context: ctx.toString('base64'),
    });
    const dek = await kes('POST', `/v1/key/generate/${name}`, { context: ctx.toString('base64') });
    const hmac = await kes('POST', `/v1/key/hmac/${name}`, { message: Buffer.from('m').toString('base64') });

    const t = await testServer();
    // the store behind the running keyport server, as a YAML store file
    const cfg = t.config.store as { store: string; envelope: { wrapper: string } };
    const target = join(t.dir, 'target.yaml');
    writeFileSync(target, `store: ${cfg.store}\nenvelope:\n  wrapper: ${cfg.envelope.wrapper}\n`);
    const r = await migrate({ from: `kes-fs:${env['KES_FS_DIR']}`, to: target, pattern: name });
    assert.deepEqual([r.migrated, r.verified, r.failed.length], [1, 1, 0]);
    const kp = new RemoteKeyring(t.url, { apiKey: t.admin, insecure: true });
    assert.equal((await kp.decrypt(name, Buffer.from(sealed['ciphertext']!, 'base64'), ctx)).toString(), 'object encryption key');
    assert.deepEqual(await kp.decrypt(name, Buffer.from(dek['ciphertext']!, 'base64'), ctx), Buffer.from(dek['plaintext']!, 'base64'));
    assert.equal((await kp.hmac(name, Buffer.from('m'))).toString('base64'), hmac['hmac']);
    assert.equal((await kp.describe(name)).protection, 'sealed');
    await kp.close();
  });
});
