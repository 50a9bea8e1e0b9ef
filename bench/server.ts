/**
 * bench/server: one load client drives keyport server and a real MinIO KES v0.24.0 server, both on an
 * FS keystore, same machine, same run, keep-alive HTTPS with mTLS (a KES API key as client certificate),
 * for generate, encrypt and decrypt. Reports ops/s, p50 and p99 per server and the keyport/KES ratio.
 *
 *   node --import tsx bench/server.ts [seconds=5] [concurrency=32] [keyport-workers=2]
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'node:https';
import { generateKeyPairSync } from 'node:crypto';
import { parseApiKey, apiKeyCertificate } from '../src/server/identity.js';
import { certToPem, selfSignedCertificate } from '../src/crypto/x509.js';
import { toPem } from '../src/crypto/keys.js';

const secs = Number(process.argv[2] ?? 5);
const conc = Number(process.argv[3] ?? 32);
const workers = Number(process.argv[4] ?? 2);

const kesEnv = Object.fromEntries(
  spawnSync('bash', ['scripts/testbed/kes.sh', 'start'], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter((l) => l.includes('='))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
) as Record<string, string>;
if (!kesEnv['KES_SERVER']) throw new Error('the KES testbed did not start');
const apiKey = parseApiKey(kesEnv['KES_API_KEY']!);

// keyport server on its own FS keystore with the same admin identity
const dir = mkdtempSync(join(tmpdir(), 'keyport-bench-srv-'));
const tlsKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
writeFileSync(join(dir, 'server.key'), tlsKey.export({ type: 'pkcs8', format: 'pem' }) as string);
writeFileSync(
  join(dir, 'server.crt'),
  certToPem(await selfSignedCertificate(tlsKey, { commonName: 'bench', ipAddresses: ['127.0.0.1'], usage: ['server'] })),
);
const port = 17000 + Math.floor(Math.random() * 2000);
writeFileSync(
  join(dir, 'config.yml'),
  `address: 127.0.0.1:${port}\nadmin:\n  identity: ${apiKey.identity}\ntls:\n  key: ${dir}/server.key\n  cert: ${dir}/server.crt\ncache:\n  expiry:\n    any: 5m\n    unused: 20s\nlog:\n  error: on\n  audit: off\nkeystore:\n  fs:\n    path: ${dir}/keys\nworkers: ${workers}\n`,
);
const kp = spawn(process.execPath, ['bin/keyport.js', 'server', '--config', join(dir, 'config.yml')], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
await new Promise<void>((resolve) => kp.stdout!.on('data', (d: Buffer) => d.toString().includes('listening') && resolve()));
await new Promise((r) => setTimeout(r, 500));

const c = await apiKeyCertificate(apiKey);
const agent = new Agent({
  keepAlive: true,
  maxSockets: conc,
  rejectUnauthorized: false,
  cert: certToPem(c.cert),
  key: toPem(c.key.export({ type: 'pkcs8', format: 'der' }) as Buffer, 'PRIVATE KEY'),
});

function call(base: string, method: string, path: string, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      base + path,
      { method, agent, headers: body ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } : {} },
      (res) => {
        let s = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (s += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: s }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const servers = { keyport: `https://127.0.0.1:${port}`, kes: kesEnv['KES_SERVER']! };
const pt = Buffer.alloc(64, 7).toString('base64');
const cts: Record<string, string> = {};
for (const [name, base] of Object.entries(servers)) {
  await call(base, 'POST', '/v1/key/create/bench-key');
  const r = await call(base, 'POST', '/v1/key/encrypt/bench-key', JSON.stringify({ plaintext: pt }));
  cts[name] = JSON.parse(r.body).ciphertext;
}

async function load(base: string, server: string, op: string) {
  const body = op === 'encrypt' ? JSON.stringify({ plaintext: pt }) : op === 'decrypt' ? JSON.stringify({ ciphertext: cts[server] }) : '{}';
  const lat: number[] = [];
  const end = Date.now() + secs * 1000;
  let errors = 0;
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (Date.now() < end) {
        const t = process.hrtime.bigint();
        const r = await call(base, 'POST', `/v1/key/${op}/bench-key`, body);
        if (r.status !== 200) errors++;
        lat.push(Number(process.hrtime.bigint() - t) / 1e6);
      }
    }),
  );
  lat.sort((a, b) => a - b);
  return { ops: lat.length / secs, p50: lat[Math.floor(lat.length * 0.5)]!, p99: lat[Math.floor(lat.length * 0.99)]!, errors };
}

console.log(`| op | server | ops/s | p50 ms | p99 ms |\n|---|---|---|---|---|`);
const ratios: string[] = [];
for (const op of ['generate', 'encrypt', 'decrypt']) {
  const res: Record<string, Awaited<ReturnType<typeof load>>> = {};
  for (const [name, base] of Object.entries(servers)) await load(base, name, op); // warm-up round
  for (const [name, base] of Object.entries(servers)) {
    res[name] = await load(base, name, op);
    const x = res[name]!;
    console.log(
      `| ${op} | ${name} | ${x.ops.toFixed(0)} | ${x.p50.toFixed(2)} | ${x.p99.toFixed(2)} |${x.errors ? ` ${x.errors} errors` : ''}`,
    );
  }
  ratios.push(`${op}: keyport/KES = ${(res['keyport']!.ops / res['kes']!.ops).toFixed(2)}`);
}
console.log(ratios.join('\n'));
kp.kill('SIGTERM');
agent.destroy();
spawnSync('bash', ['scripts/testbed/kes.sh', 'stop']);
rmSync(dir, { recursive: true, force: true });
