/**
 * bench/core: sign (ec-p256, ECDSA-SHA256) and aes256 encrypt (KES format, 1 KiB) ops/s through the
 * library on a clear SQLite store, an envelope-protected SQLite store (local wrapper key), and raw
 * node:crypto doing the same work (the limit). Rounds are interleaved so machine noise hits all alike.
 *
 *   node --import tsx bench/core.ts [seconds-per-round=2] [rounds=3]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHmac, createPrivateKey, sign, randomBytes, createCipheriv } from 'node:crypto';
import { openKeyring } from '../src/keys/open.js';
import { protectEnable } from '../src/keys/protect.js';

const secs = Number(process.argv[2] ?? 2);
const rounds = Number(process.argv[3] ?? 3);
const dir = mkdtempSync(join(tmpdir(), 'keyport-bench-'));

async function rate(fn: () => Promise<unknown> | unknown): Promise<number> {
  const end = Date.now() + secs * 1000;
  let n = 0;
  const t0 = process.hrtime.bigint();
  while (Date.now() < end) {
    for (let i = 0; i < 50; i++) await fn();
    n += 50;
  }
  return n / (Number(process.hrtime.bigint() - t0) / 1e9);
}

const clear = await openKeyring(`sqlite:${join(dir, 'clear.db')}`);
const env = await openKeyring(`sqlite:${join(dir, 'env.db')}`);
for (const kr of [clear, env]) {
  await kr.create('sig', { type: 'ec-p256' });
  await kr.create('aes');
}
await protectEnable(env, `local:${join(dir, 'wrapper.key')}`);
const [exported] = await clear.export('sig');
const rawKey = createPrivateKey({ key: exported!.secret, format: 'der', type: 'pkcs8' });
const aesKey = (await clear.export('aes'))[0]!.secret;
const msg = randomBytes(1024);

// the same work keyport does for an aes256 encrypt, written directly against node:crypto
function rawKesEncrypt() {
  const iv = randomBytes(16);
  const nonce = randomBytes(12);
  const k = createHmac('sha256', aesKey).update(iv).digest();
  const c = createCipheriv('aes-256-gcm', k, nonce);
  return Buffer.concat([c.update(msg), c.final(), c.getAuthTag(), iv, nonce]);
}

const cases: Record<string, () => unknown> = {
  'sign raw node:crypto': () => sign('sha256', msg, rawKey),
  'sign library clear': () => clear.sign('sig', msg),
  'sign library envelope': () => env.sign('sig', msg),
  'encrypt raw node:crypto': rawKesEncrypt,
  'encrypt library clear': () => clear.encrypt('aes', msg),
  'encrypt library envelope': () => env.encrypt('aes', msg),
};
const results: Record<string, number[]> = {};
for (let r = 0; r < rounds; r++) for (const [k, fn] of Object.entries(cases)) (results[k] ??= []).push(await rate(fn));
const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
const m = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, med(v)]));
console.log(`| case | ops/s (median of ${rounds} × ${secs}s) |\n|---|---|`);
for (const [k, v] of Object.entries(m)) console.log(`| ${k} | ${v.toFixed(0)} |`);
for (const op of ['sign', 'encrypt']) {
  console.log(
    `${op}: envelope/clear = ${(m[`${op} library envelope`]! / m[`${op} library clear`]!).toFixed(3)}, library clear/raw = ${(m[`${op} library clear`]! / m[`${op} raw node:crypto`]!).toFixed(3)}`,
  );
}
await clear.close();
await env.close();
rmSync(dir, { recursive: true, force: true });
