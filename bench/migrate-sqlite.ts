/**
 * bench/migrate-sqlite: N aes256 keys between two SQLite stores with verification on; reports keys/s and
 * the peak RSS of the process (the 1M-key memory run: `node --import tsx bench/migrate-sqlite.ts 1000000`).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { openRecordStore } from '../src/store/open.js';
import { kcv } from '../src/crypto/fingerprint.js';
import type { KeyRecord } from '../src/store/types.js';

const N = Number(process.argv[2] ?? 100_000);
const verify = process.argv[3] !== 'no-verify';
const dir = mkdtempSync(join(tmpdir(), 'keyport-mig-'));
const src = `sqlite:${join(dir, 'src.db')}`;
const dst = `sqlite:${join(dir, 'dst.db')}`;

// the source is filled by a child process, so this process's peak RSS is the migration's alone
if (process.argv[4] === 'fill') {
  const s = await openRecordStore(process.argv[5]!);
  const now = new Date().toISOString();
  for (let i = 0; i < N; i += 10_000) {
    const batch: KeyRecord[] = [];
    for (let j = i; j < Math.min(N, i + 10_000); j++) {
      const secret = randomBytes(64);
      batch.push({
        name: `key-${j.toString(36).padStart(6, '0')}`,
        type: 'aes256',
        purpose: 'symmetric',
        usage: ['any'],
        state: 'active',
        createdAt: now,
        createdBy: 'bench',
        versions: [{ version: 1, createdAt: now, fingerprint: kcv(secret), clear: secret.toString('base64') }],
      });
    }
    await s.putMany(batch);
  }
  await s.close();
  process.exit(0);
}
const { spawnSync } = await import('node:child_process');
const fill = spawnSync(process.execPath, ['--import', 'tsx', process.argv[1]!, String(N), 'x', 'fill', src], { stdio: 'inherit' });
if (fill.status !== 0) process.exit(1);
// the migration runs in the built CLI, as a user runs it; /usr/bin/time reports its peak RSS
const t0 = Date.now();
const run = spawnSync(
  '/usr/bin/time',
  ['-f', '%M', process.execPath, 'bin/keyport.js', 'migrate', '--from', src, '--to', dst, '--json', ...(verify ? [] : ['--no-verify'])],
  { encoding: 'utf8', maxBuffer: 1 << 26 },
);
const secs = (Date.now() - t0) / 1000;
const r = JSON.parse(run.stdout) as { migrated: number; verified: number };
const maxRssKB = Number(run.stderr.trim().split('\n').pop());
const t = await openRecordStore(dst);
let count = 0;
let after: string | undefined;
for (;;) {
  const p = await t.list({ after, limit: 10_000 });
  count += p.names.length;
  if (!p.next) break;
  after = p.next;
}
await t.close();
console.log(
  JSON.stringify({
    keys: N,
    migrated: r.migrated,
    verified: r.verified,
    atTarget: count,
    seconds: secs,
    keysPerSecond: Math.round(N / secs),
    migrateMaxRssMB: Math.round(maxRssKB / 1024),
  }),
);
rmSync(dir, { recursive: true, force: true });
