/**
 * Stores written by keyport 0.1.0 (test/fixtures/v0.1-stores: sqlite, fs, postgres; sealed under a
 * local: and a moto wrapper whose URIs carried credentials) open with this version: the stored URIs are
 * rewritten into key references (credentials, endpoints dropped) on open, in one write, without any KMS
 * being contacted; the keys keep their fingerprints and old signatures and ciphertexts still check.
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, readFileSync, readdirSync, rmSync, statSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openKeyring } from '../../src/keys/open.js';
import { ROOT, serviceEnv, skipUnless } from '../support/testbed.js';

const FIX = join(ROOT, 'test', 'fixtures', 'v0.1-stores');
// the stored local: paths name this directory: the fixtures are put back where 0.1.0 wrote them
const BASE = '/tmp/keyport-v01-fixture';
interface Expect {
  message: string;
  signature: string;
  ciphertext: string;
  fingerprints: Record<string, string>;
  secrets: string[];
}

function allText(p: string): string {
  if (statSync(p).isDirectory())
    return readdirSync(p)
      .map((e) => allText(join(p, e)))
      .join('\n');
  return readFileSync(p).toString('latin1');
}

after(() => rmSync(BASE, { recursive: true, force: true }));

const skipPg = skipUnless('postgres');
const skipMoto = skipUnless('moto');

for (const store of ['sqlite', 'fs', 'postgres'] as const) {
  for (const kms of ['local', 'moto'] as const) {
    const name = `${store}-${kms}`;
    const skip = (store === 'postgres' && skipPg) || (kms === 'moto' && skipMoto) || false;
    describe(`0.1.0 ${name} store`, { skip }, () => {
      test('opens: stored URIs become references in one write, credentials gone, keys intact', async () => {
        const expect = JSON.parse(readFileSync(join(FIX, name, 'expect.json'), 'utf8')) as Expect;
        const dir = join(BASE, name);
        rmSync(dir, { recursive: true, force: true });
        mkdirSync(dir, { recursive: true });
        if (kms === 'local') cpSync(join(FIX, name, 'w.key'), join(dir, 'w.key'));
        let uri: string;
        let dump: () => Promise<string>;
        let drop = async () => {};
        if (store === 'sqlite') {
          cpSync(join(FIX, name, 'keys.db'), join(dir, 'keys.db'));
          uri = `sqlite:${join(dir, 'keys.db')}`;
          dump = async () => allText(dir);
        } else if (store === 'fs') {
          cpSync(join(FIX, name, 'store'), join(dir, 'store'), { recursive: true });
          uri = `fs:${join(dir, 'store')}`;
          dump = async () => allText(dir);
        } else {
          const url = serviceEnv('postgres').PG_URL!;
          const table = `v01_${randomBytes(4).toString('hex')}`;
          uri = `postgres:${url}?table=${table}`;
          // the schema as this version makes it, then the rows exactly as 0.1.0 wrote them
          await (await openKeyring(uri)).close();
          const rows = JSON.parse(readFileSync(join(FIX, name, 'rows.json'), 'utf8')) as {
            keys: { name: string; record: string }[];
            meta: { key: string; value: string }[];
          };
          const c = new pg.Client(url);
          await c.connect();
          try {
            for (const r of rows.keys)
              await c.query(`INSERT INTO "${table}" (name, record, revision, updated_at) VALUES ($1, $2::jsonb, 1, now())`, [
                r.name,
                r.record,
              ]);
            for (const m of rows.meta) await c.query(`INSERT INTO "${table}_meta" (key, value) VALUES ($1, $2)`, [m.key, m.value]);
          } finally {
            await c.end();
          }
          const q = async (sql: string) => {
            const c2 = new pg.Client(url);
            await c2.connect();
            try {
              return JSON.stringify((await c2.query(sql)).rows);
            } finally {
              await c2.end();
            }
          };
          dump = async () => (await q(`SELECT * FROM "${table}"`)) + (await q(`SELECT * FROM "${table}_meta"`));
          drop = async () => void (await q(`DROP TABLE IF EXISTS "${table}", "${table}_meta"`));
        }
        try {
          const before = await dump();
          assert.ok(
            expect.secrets.some((s) => before.includes(s)),
            'sanity: 0.1.0 wrote the credentials into the store',
          );
          // opening needs no KMS connection at all: the rewrite contacts nothing
          const notices: string[] = [];
          const kr = await openKeyring(uri, { onNotice: (m) => notices.push(m) });
          const ref = kms === 'local' ? `local:${join(dir, 'w.key')}` : 'awskms:key-id=alias/v01-wrapper';
          try {
            assert.match(notices.join(), /rewritten as key references/);
            assert.deepEqual(await kr.protection(), { mode: 'envelope', wrapper: ref });
            for (const [n, fp] of Object.entries(expect.fingerprints)) {
              assert.equal((await kr.describe(n)).fingerprint, fp, n);
              const rec = await kr.store.get(n);
              for (const v of rec.versions) assert.equal(v.sealed?.wrapper, ref, `${n} v${v.version}`);
            }
            assert.ok(await kr.verify('sig', Buffer.from(expect.message, 'base64'), Buffer.from(expect.signature, 'base64')));
            // without the wrapper's connection, a sealed key is a clear one-line error naming the reference
            await assert.rejects(
              kr.sign('sig', Buffer.from('x')),
              (e: Error) => e.message.includes(ref) && /no configured connection/.test(e.message),
            );
          } finally {
            await kr.close();
          }
          const afterText = await dump();
          for (const s of expect.secrets) assert.ok(!afterText.includes(s), `${s} is gone from the store`);
          assert.ok(!afterText.includes('endpoint='), 'no endpoint is stored');
          if (kms === 'local') {
            // with the wrapper configured, old ciphertexts open and new signatures verify
            const kr2 = await openKeyring(uri, { kms: [`local:${join(dir, 'w.key')}`] });
            try {
              assert.equal((await kr2.decrypt('data', Buffer.from(expect.ciphertext, 'base64'))).toString(), 'secret payload');
              const sig = await kr2.sign('sig', Buffer.from('after the upgrade'));
              assert.ok(await kr2.verify('sig', Buffer.from('after the upgrade'), sig));
              assert.equal((await kr2.export('enc')).length, 1);
            } finally {
              await kr2.close();
            }
          }
          // opening again changes nothing
          const kr3 = await openKeyring(uri);
          await kr3.close();
          assert.equal(await dump(), afterText);
        } finally {
          await drop();
        }
      });
    });
  }
}
