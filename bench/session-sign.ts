/**
 * bench/session-sign: Canton session signing keys (issue 12 item 7) against local signing.
 *
 * Cases, interleaved per round (medians reported), one caller and 32 in flight:
 *  - local: `Keyring.sign` with an ec-p256 key held by a SQLite store (clear), wrapped as Canton's Signature
 *    by signHash — what a node does with a key in its own store;
 *  - kms: the same through an external ec-p256 key in AWS KMS (moto on loopback): one KMS call per signature;
 *  - session: SessionSigner over that KMS key (Ed25519 session keys, Canton's defaults): KMS calls counted.
 * Goal: <= 10 KMS calls per 1000 signatures at >= 0.9x the local sign rate.
 *
 *   node --import tsx bench/session-sign.ts [seconds-per-round=2] [rounds=5]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { openKeyring } from '../src/keys/open.js';
import type { StoreKeyring } from '../src/keys/keyring.js';
import { keyringSigner, signHash, type TopologySigner } from '../src/canton/topology/signer.js';
import { cantonHash } from '../src/canton/topology/hash.js';
import { SessionSigner } from '../src/canton/session.js';

const secs = Number(process.argv[2] ?? 2);
const rounds = Number(process.argv[3] ?? 5);
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = mkdtempSync(join(tmpdir(), 'keyport-bench-session-'));
process.env.KEYPORT_HOME = join(dir, 'home');

const r = spawnSync('bash', [join(ROOT, 'scripts/testbed/moto.sh'), 'start'], { encoding: 'utf8' });
if (r.status !== 0) throw new Error(`moto is needed: ${r.stderr}`);
const env = Object.fromEntries(
  r.stdout
    .split('\n')
    .map((l) => /^([A-Z0-9_]+)=(.*)$/.exec(l))
    .filter((m): m is RegExpExecArray => !!m)
    .map((m) => [m[1]!, m[2]!]),
);
const kmsUri = `awskms:region=${env['MOTO_REGION']};endpoint=${env['MOTO_ENDPOINT']};access-key-id=${env['MOTO_ACCESS_KEY_ID']};secret-access-key=${env['MOTO_SECRET_ACCESS_KEY']}`;

const local = (await openKeyring(`sqlite:${join(dir, 'keys.db')}`)) as StoreKeyring;
await local.create('lt', { type: 'ec-p256', usage: ['protocol'] });
const kms = (await openKeyring(kmsUri)) as StoreKeyring;
const kmsName = `bench-session-${randomBytes(3).toString('hex')}`;
await kms.create(kmsName, { type: 'ec-p256', usage: ['protocol'] });

let kmsCalls = 0;
const counted = (s: TopologySigner): TopologySigner => ({ ...s, sign: (d) => (kmsCalls++, s.sign(d)) });
const localSigner = await keyringSigner(local, 'lt', { usage: 'protocol' });
const kmsSigner = counted(await keyringSigner(kms, kmsName, { usage: 'protocol' }));
const session = new SessionSigner({ longTerm: kmsSigner, synchronizerId: 'bench::1220' + '0'.repeat(64) });
const hashes = Array.from({ length: 1024 }, (_, i) => cantonHash(11, Buffer.from(`m${i}`)));

type Case = { name: string; sign: (h: Buffer) => Promise<unknown> };
const cases: Case[] = [
  { name: 'local ec-p256 (store key)', sign: (h) => signHash(localSigner, h) },
  { name: 'AWS KMS ec-p256 (moto), a KMS call each', sign: (h) => signHash(kmsSigner, h) },
  { name: 'session keys over the KMS key', sign: (h) => session.sign(h) },
];

async function run(c: Case, inFlight: number): Promise<{ rate: number; n: number; calls: number }> {
  const before = kmsCalls;
  const end = performance.now() + secs * 1000;
  let n = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < end) {
        await c.sign(hashes[n++ & 1023]!);
      }
    }),
  );
  return { rate: n / secs, n, calls: kmsCalls - before };
}

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
for (const inFlight of [1, 32]) {
  const res = new Map<string, { rates: number[]; n: number; calls: number }>();
  for (let i = 0; i < rounds; i++)
    for (const c of cases) {
      const x = await run(c, inFlight);
      const e = res.get(c.name) ?? { rates: [], n: 0, calls: 0 };
      e.rates.push(x.rate);
      e.n += x.n;
      e.calls += x.calls;
      res.set(c.name, e);
    }
  const base = median(res.get(cases[0]!.name)!.rates);
  console.log(`\n${inFlight} in flight, ${rounds} rounds of ${secs}s (medians)`);
  console.log('| case | signatures/s | vs local | KMS calls per 1000 signatures |');
  console.log('|---|---:|---:|---:|');
  for (const c of cases) {
    const e = res.get(c.name)!;
    const m = median(e.rates);
    console.log(
      `| ${c.name} | ${m.toFixed(0)} | ${(m / base).toFixed(2)}x | ${c === cases[0] ? '0' : ((e.calls / e.n) * 1000).toFixed(2)} |`,
    );
  }
}
console.log(`\nsession keys made: ${session.stats.sessionKeys}, long-term (KMS) signatures: ${session.stats.longTermSignatures}`);
session.close();
await kms.delete(kmsName).catch(() => undefined);
await kms.close();
await local.close();
rmSync(dir, { recursive: true, force: true });
