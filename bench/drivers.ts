/**
 * bench/drivers: what each KMS driver costs, against the real emulators of this machine.
 *
 * Per driver with a working testbed (local dev KMS always; SoftHSM2 via scripts/testbed/softhsm.sh,
 * PyKMIP via pykmip.sh, AWS KMS on moto via moto.sh once src/kms/aws is committed, Azure on
 * lowkey-vault once its script is committed), one client, one operation in flight:
 *  - driver sign: an external-mode ec-p256 key (RSA-2048 where the KMS has no EC), Driver.sign direct
 *    (only drivers that claim a signing spec);
 *  - keyring sign: the same kind of key through an external-mode keyring (catalog + KMS);
 *  - wrapper decrypt: Driver.decryptSymmetric of a sealed 64-byte secret (the unseal of one key);
 *  - envelope sign cached: ec-p256 signs on a SQLite store sealed under a wrapper key in that KMS, with
 *    the default unsealed-key cache (5 min);
 *  - envelope sign no cache: the same store opened with cacheTtlMs: 0 (every sign unseals in the KMS).
 * Rounds are interleaved (every case once per round) so machine noise hits all alike; medians reported.
 *
 *   node --import tsx bench/drivers.ts [seconds-per-round=2] [rounds=5] [drivers=local,pkcs11,kryoptic,kmip,awskms,localkms,azurekv]
 */
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { randomBytes, verify as nodeVerify, createPublicKey } from 'node:crypto';
import { openDriver } from '../src/kms/registry.js';
import { openKeyring } from '../src/keys/open.js';
import type { StoreKeyring } from '../src/keys/keyring.js';
import type { Driver, SigningKeySpec } from '../src/kms/driver.js';

const secs = Number(process.argv[2] ?? 2);
const rounds = Number(process.argv[3] ?? 5);
const wanted = (process.argv[4] ?? 'local,pkcs11,kryoptic,kmip,awskms,localkms,azurekv').split(',');
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = mkdtempSync(join(tmpdir(), 'keyport-bench-drivers-'));
process.env.KEYPORT_HOME = join(dir, 'home');

/** start a testbed service; its KEY=VALUE lines, or the reason it is not here */
function service(name: string): Record<string, string> | string {
  const script = join(ROOT, 'scripts', 'testbed', `${name}.sh`);
  if (!existsSync(script)) return `no scripts/testbed/${name}.sh`;
  const r = spawnSync('bash', [script, 'start'], { encoding: 'utf8', timeout: 20 * 60_000 });
  if (r.status !== 0) return `${name}.sh start failed: ${(r.stderr || '').trim().split('\n').pop()}`;
  const env: Record<string, string> = {};
  for (const line of r.stdout.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!;
  }
  return env;
}

/** a driver module counts only when it is committed (another helper may be mid-way) */
function committed(path: string): boolean {
  const r = spawnSync('git', ['ls-files', '--error-unmatch', path], { cwd: ROOT, stdio: 'ignore' });
  return r.status === 0;
}

interface Target {
  name: string;
  /** the KMS URI (no key) */
  kms: string;
  /** a wrapper key URI for this KMS, given a symmetric key made by the driver */
  wrapperUri(keyId: string, d: Driver): string;
  /** make the symmetric wrapper key (default: generateSymmetricKey) */
  wrapperKey?(d: Driver): Promise<string>;
}

function targets(): { ok: Target[]; skipped: string[] } {
  const ok: Target[] = [];
  const skipped: string[] = [];
  if (wanted.includes('local')) {
    ok.push({
      name: 'local',
      kms: `local:${join(dir, 'local-kms')}/`,
      wrapperUri: (keyId) => `local:${keyId}`,
    });
  }
  if (wanted.includes('pkcs11')) {
    const e = service('softhsm');
    if (typeof e === 'string') skipped.push(`pkcs11: ${e}`);
    else {
      process.env['SOFTHSM2_CONF'] = e.SOFTHSM2_CONF;
      const base = `pkcs11:module-path=${e.PKCS11_MODULE};token=${e.PKCS11_TOKEN}`;
      const label = `bench-wrap-${randomBytes(4).toString('hex')}`;
      ok.push({
        name: 'pkcs11 (SoftHSM2)',
        kms: `${base}?pin-value=${e.PKCS11_PIN}`,
        wrapperKey: (d) => d.generateSymmetricKey(label),
        wrapperUri: () => `${base};object=${label}?pin-value=${e.PKCS11_PIN}`,
      });
    }
  }
  if (wanted.includes('kryoptic')) {
    const e = service('kryoptic');
    if (typeof e === 'string') skipped.push(`kryoptic: ${e}`);
    else {
      process.env['KRYOPTIC_CONF'] = e.KRYOPTIC_CONF; // read at C_Initialize
      const base = `pkcs11:module-path=${e.PKCS11_MODULE};token=${e.PKCS11_TOKEN}`;
      const label = `bench-wrap-${randomBytes(4).toString('hex')}`;
      ok.push({
        name: 'pkcs11 (kryoptic)',
        kms: `${base}?pin-value=${e.PKCS11_PIN}`,
        wrapperKey: (d) => d.generateSymmetricKey(label),
        wrapperUri: () => `${base};object=${label}?pin-value=${e.PKCS11_PIN}`,
      });
    }
  }
  if (wanted.includes('kmip')) {
    const e = service('pykmip');
    if (typeof e === 'string') skipped.push(`kmip: ${e}`);
    else {
      const kms = `kmip:host=${e.KMIP_HOST};port=${e.KMIP_PORT};cert=${e.KMIP_CERT};key=${e.KMIP_KEY};ca=${e.KMIP_CA}`;
      ok.push({ name: 'kmip (PyKMIP)', kms, wrapperUri: (id) => `${kms};key-id=${id}` });
    }
  }
  if (wanted.includes('awskms')) {
    if (!committed('src/kms/aws/index.ts')) skipped.push('awskms: src/kms/aws is not committed yet');
    else {
      const e = service('moto');
      if (typeof e === 'string') skipped.push(`awskms: ${e}`);
      else {
        const kms = `awskms:region=${e.MOTO_REGION};endpoint=${e.MOTO_ENDPOINT};access-key-id=${e.MOTO_ACCESS_KEY_ID};secret-access-key=${e.MOTO_SECRET_ACCESS_KEY}`;
        ok.push({ name: 'awskms (moto)', kms, wrapperUri: (id) => `${kms};key-id=${id}` });
      }
    }
  }
  if (wanted.includes('localkms')) {
    const e = service('localkms');
    if (typeof e === 'string') skipped.push(`localkms: ${e}`);
    else {
      const kms = `awskms:region=${e.LOCALKMS_REGION};endpoint=${e.LOCALKMS_ENDPOINT};access-key-id=AKIAKEYPORTBENCH;secret-access-key=bench`;
      ok.push({ name: 'awskms (local-kms)', kms, wrapperUri: (id) => `${kms};key-id=${id}` });
    }
  }
  if (wanted.includes('azurekv')) {
    if (!committed('scripts/testbed/lowkeyvault.sh')) skipped.push('azurekv: no committed scripts/testbed/lowkeyvault.sh');
    else skipped.push('azurekv: lowkey-vault script present; add its URI here once its env lines are settled');
  }
  return { ok, skipped };
}

/** ops/s of fn, one call in flight, for `secs` seconds */
async function rate(fn: () => Promise<unknown>): Promise<number> {
  const end = performance.now() + secs * 1000;
  let n = 0;
  const t0 = performance.now();
  while (performance.now() < end) {
    await fn();
    n++;
  }
  return n / ((performance.now() - t0) / 1000);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

interface Prepared {
  t: Target;
  signSpec?: SigningKeySpec;
  notes: string[];
  cases: Partial<Record<CaseName, () => Promise<unknown>>>;
  close: () => Promise<void>;
}
const CASES = ['driver sign', 'keyring sign', 'wrapper decrypt', 'envelope sign cached', 'envelope sign no cache'] as const;
type CaseName = (typeof CASES)[number];

async function prepare(t: Target): Promise<Prepared> {
  const notes: string[] = [];
  const cases: Prepared['cases'] = {};
  const closers: (() => Promise<unknown>)[] = [];
  const d = await openDriver(t.kms);
  closers.push(async () => d.close?.());
  const msg = randomBytes(1024);
  const tag = t.name.replace(/[^a-z0-9]+/gi, '-'); // one catalog and store per target (two targets may share a scheme)

  // (1) external-mode signing: only where the driver claims a spec
  const specs = d.supportedSigningKeySpecs();
  const signSpec: SigningKeySpec | undefined = specs.includes('ec-p256') ? 'ec-p256' : (specs.find((s) => s.startsWith('rsa')) ?? specs[0]);
  if (signSpec) {
    const algo =
      signSpec === 'ec-p256'
        ? 'ecdsa-sha256'
        : signSpec === 'ed25519'
          ? 'ed25519'
          : signSpec === 'ec-p384'
            ? 'ecdsa-sha384'
            : signSpec.startsWith('rsa')
              ? 'rsa-pss-sha256'
              : 'ecdsa-sha256';
    const keyId = await d.generateSigningKeyPair(signSpec, `bench-sign-${randomBytes(4).toString('hex')}`);
    const pub = await d.getPublicKey(keyId);
    const sig = await d.sign(keyId, msg, algo);
    // an independent check that the thing measured really signs
    const key = createPublicKey({ key: pub.spki, format: 'der', type: 'spki' });
    const ok =
      algo === 'rsa-pss-sha256'
        ? nodeVerify('sha256', msg, { key, padding: 6, saltLength: 32 }, sig)
        : nodeVerify(algo === 'ed25519' ? null : algo === 'ecdsa-sha384' ? 'sha384' : 'sha256', msg, key, sig);
    if (!ok) throw new Error(`${t.name}: the signature of the benchmark key does not verify`);
    cases['driver sign'] = () => d.sign(keyId, msg, algo);
    closers.push(() => d.deleteKey(keyId).catch(() => undefined));
    const ext = await openKeyring({ store: `sqlite:${join(dir, `ext-${tag}.db`)}`, external: { kms: t.kms } });
    closers.push(() => ext.close());
    await ext.create('sig', { type: signSpec });
    cases['keyring sign'] = () => ext.sign('sig', msg);
    closers.push(() => ext.delete('sig').catch(() => undefined));
  } else notes.push('claims no signing spec: no external-mode sign');

  // (2) wrapper decrypt of a sealed 64-byte secret
  const wrapId = t.wrapperKey ? await t.wrapperKey(d) : await d.generateSymmetricKey(`bench-wrap-${randomBytes(4).toString('hex')}`);
  const secret = randomBytes(64);
  const sealed = await d.encryptSymmetric(wrapId, secret);
  if (!(await d.decryptSymmetric(wrapId, sealed)).equals(secret)) throw new Error(`${t.name}: the wrapper key does not round-trip`);
  cases['wrapper decrypt'] = () => d.decryptSymmetric(wrapId, sealed);

  // (3) envelope store: cached (default) and uncached keyrings on the same store
  const wrapper = t.wrapperUri(wrapId, d);
  const store = `sqlite:${join(dir, `env-${tag}.db`)}`;
  const cached: StoreKeyring = await openKeyring({ store, envelope: { wrapper } });
  await cached.create('sig', { type: 'ec-p256' });
  if ((await cached.describe('sig')).protection !== 'sealed') throw new Error(`${t.name}: the envelope key is not sealed`);
  const uncached: StoreKeyring = await openKeyring({ store, envelope: { wrapper } }, { cacheTtlMs: 0 });
  closers.push(
    () => cached.close(),
    () => uncached.close(),
  );
  cases['envelope sign cached'] = () => cached.sign('sig', msg);
  cases['envelope sign no cache'] = () => uncached.sign('sig', msg);
  closers.push(() => d.deleteKey(wrapId).catch(() => undefined));

  return {
    t,
    ...(signSpec ? { signSpec } : {}),
    notes,
    cases,
    close: async () => {
      for (const c of closers.reverse()) await c().catch(() => undefined);
    },
  };
}

const { ok, skipped } = targets();
const prepared: Prepared[] = [];
for (const t of ok) {
  try {
    prepared.push(await prepare(t));
  } catch (e) {
    skipped.push(`${t.name}: setup failed: ${(e as Error).message.split('\n')[0]}`);
  }
}

const results = new Map<string, number[]>();
for (let r = 0; r < rounds; r++) {
  for (const p of prepared) {
    for (const c of CASES) {
      const fn = p.cases[c];
      if (!fn) continue;
      await fn(); // warm (a connection, a session) outside the measurement
      const k = `${p.t.name}\u0000${c}`;
      (results.get(k) ?? results.set(k, []).get(k)!).push(await rate(fn));
    }
  }
}
for (const p of prepared) await p.close();
rmSync(dir, { recursive: true, force: true });

const med = (p: Prepared, c: CaseName) => {
  const xs = results.get(`${p.t.name}\u0000${c}`);
  return xs ? median(xs) : undefined;
};
const fmt = (x: number | undefined) => (x === undefined ? '—' : x >= 100 ? x.toFixed(0) : x.toFixed(1));
const ratio = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined ? '—' : `${(a / b).toFixed(a / b >= 10 ? 0 : 2)}×`;

console.log(
  `bench/drivers: node ${process.version}, ${cpus()[0]?.model ?? 'cpu'} ×${cpus().length}, ${rounds} interleaved rounds × ${secs} s per case, one operation in flight, medians (ops/s)\n`,
);
console.log(
  `| driver | driver sign | keyring sign (external) | wrapper decrypt (64 B) | envelope sign, cache | envelope sign, no cache | cache buys |`,
);
console.log(`|---|---:|---:|---:|---:|---:|---:|`);
for (const p of prepared) {
  const sp = p.signSpec ? ` (${p.signSpec})` : '';
  console.log(
    `| ${p.t.name} | ${fmt(med(p, 'driver sign'))}${med(p, 'driver sign') ? sp : ''} | ${fmt(med(p, 'keyring sign'))} | ${fmt(med(p, 'wrapper decrypt'))} | ${fmt(med(p, 'envelope sign cached'))} | ${fmt(med(p, 'envelope sign no cache'))} | ${ratio(med(p, 'envelope sign cached'), med(p, 'envelope sign no cache'))} |`,
  );
}
const local = prepared.find((p) => p.t.name === 'local');
if (local && prepared.length > 1) {
  console.log(`\nEach driver vs local (ops/s ratio, driver ÷ local):\n`);
  console.log(`| driver | driver sign | keyring sign | wrapper decrypt | envelope sign, cache | envelope sign, no cache |`);
  console.log(`|---|---:|---:|---:|---:|---:|`);
  for (const p of prepared) {
    if (p === local) continue;
    console.log(`| ${p.t.name} | ${CASES.map((c) => ratio(med(p, c), med(local, c))).join(' | ')} |`);
  }
}
console.log(`\nall rounds (ops/s):`);
for (const p of prepared)
  for (const c of CASES) {
    const xs = results.get(`${p.t.name}\u0000${c}`);
    if (xs) console.log(`  ${p.t.name} / ${c}: ${xs.map((x) => fmt(x)).join(', ')}`);
  }
for (const p of prepared) for (const n of p.notes) console.log(`note: ${p.t.name}: ${n}`);
for (const s of skipped) console.log(`skipped: ${s}`);
