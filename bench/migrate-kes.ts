/**
 * bench/migrate-kes: keyport migrate vs `kes migrate` (MinIO KES v0.24.0, built by scripts/testbed/kes.sh)
 * on the same KES FS keystores. For each size: the same source keystore, each tool into its own empty
 * target; keys/s (keyport with verification on) and correctness: count and bytes of every key at the
 * target compared with the source.
 *
 *   node --import tsx bench/migrate-kes.ts [sizes=1000,10000,100000]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, generateKeyPairSync } from 'node:crypto';
import { encodeKesKey, decodeKesKey } from '../src/store/kes-format.js';

const sizes = (process.argv[2] ?? '1000,10000,100000').split(',').map(Number);
const env = Object.fromEntries(
  spawnSync('bash', ['scripts/testbed/kes.sh', 'install'], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter((l) => l.includes('='))
    .map((l) => l.split('=', 2)),
);
void env;
const KES = `${process.env.KEYPORT_CACHE ?? join(process.env.HOME!, '.cache/keyport-testbed')}/bin/kes-v0.24.0`;
const root = mkdtempSync(join(tmpdir(), 'keyport-bench-kesmig-'));

// kes migrate reads its keystores from KES server configs
const key = generateKeyPairSync('ed25519').privateKey;
writeFileSync(join(root, 'tls.key'), key.export({ type: 'pkcs8', format: 'pem' }) as string);
const conf = (dir: string) => {
  const p = join(root, `${dir.split('/').pop()}.yml`);
  writeFileSync(
    p,
    `version: v1\naddress: 127.0.0.1:0\nadmin:\n  identity: disabled\ntls:\n  key: ${root}/tls.key\n  cert: ${root}/tls.key\nkeystore:\n  fs:\n    path: ${dir}\n`,
  );
  return p;
};

/** name → secret bytes of every key file in a KES FS keystore */
function contents(dir: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const f of readdirSync(dir)) {
    if (f.startsWith('.')) continue;
    const k = decodeKesKey(readFileSync(join(dir, f)));
    m.set(f, k.secret.toString('hex') + (k.hmacKey?.toString('hex') ?? ''));
  }
  return m;
}

function same(a: Map<string, string>, b: Map<string, string>): { present: number; bytesEqual: boolean } {
  let present = 0;
  let equal = true;
  for (const [n, v] of a) {
    const w = b.get(n);
    if (w !== undefined) present++;
    if (w !== v) equal = false;
  }
  return { present, bytesEqual: equal && b.size === a.size };
}

console.log('| keys | tool | seconds | keys/s | keys at target | every key byte-equal |\n|---|---|---|---|---|---|');
for (const n of sizes) {
  const src = join(root, `src-${n}`);
  mkdirSync(src);
  const now = new Date().toISOString();
  for (let i = 0; i < n; i++)
    writeFileSync(
      join(src, `key-${i}`),
      encodeKesKey({ secret: randomBytes(32), hmacKey: randomBytes(32), algorithm: 'AES256', createdAt: now, createdBy: 'bench' }),
      { mode: 0o600 },
    );
  const want = contents(src);
  const results: Record<string, number> = {};
  for (const tool of ['kes', 'keyport'] as const) {
    const dst = join(root, `dst-${tool}-${n}`);
    mkdirSync(dst);
    // start each tool on a quiet disk: write back the freshly made source (and the previous tool's
    // target) first, or whichever tool syncs first pays for it (keyport's syncfs, KES's journal commits)
    spawnSync('sync');
    const t0 = process.hrtime.bigint();
    const r =
      tool === 'kes'
        ? spawnSync(KES, ['migrate', '--from', conf(src), '--to', conf(dst)], { encoding: 'utf8' })
        : spawnSync(
            process.execPath,
            ['bin/keyport.js', 'migrate', '--from', `kes-fs:${src}`, '--to', `kes-fs:${dst}`, '--json', '--concurrency', '32'],
            { encoding: 'utf8', maxBuffer: 1 << 28 },
          );
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    if (r.status !== 0) console.error(`${tool} exited ${r.status}: ${(r.stderr || '').trim().split('\n').slice(-2).join(' ')}`);
    const got = contents(dst);
    const s = same(want, got);
    results[tool] = got.size / secs;
    console.log(
      `| ${n} | ${tool}${tool === 'keyport' ? ' (verified)' : ''} | ${secs.toFixed(2)} | ${(got.size / secs).toFixed(0)} | ${got.size} / ${n} | ${s.bytesEqual ? 'yes' : 'no'} |`,
    );
  }
  console.log(`| ${n} | ratio keyport/kes | | ${(results['keyport']! / results['kes']!).toFixed(1)}× | | |`);
}
rmSync(root, { recursive: true, force: true });
