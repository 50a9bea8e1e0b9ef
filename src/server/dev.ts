/**
 * `keyport server --dev`: the embedded default with nothing to set up. State lives in
 * $KEYPORT_HOME/dev (default ~/.keyport/dev): a SQLite store sealed under a local wrapper key, a
 * self-signed server certificate, and an admin API key — all created on first start (0600).
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { homedir } from 'node:os';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { createFileAtomic } from '../store/atomic-file.js';
import { certToPem, selfSignedCertificate } from '../crypto/x509.js';
import { generateApiKey, parseApiKey } from './identity.js';
import type { ServerConfig } from './config.js';

export interface DevSetup {
  dir: string;
  config: ServerConfig;
  apiKey: string;
  /** the file that holds the admin API key (0600) */
  apiKeyPath: string;
  /** true when this start made the admin API key: only then is it printed */
  apiKeyCreated: boolean;
  certPath: string;
}

/** the file's content, made (0600, exclusively) if it does not exist yet; `created` says whether this call made it */
async function once(path: string, make: () => Buffer | string | Promise<Buffer | string>): Promise<{ data: Buffer; created: boolean }> {
  let created = false;
  if (!existsSync(path)) {
    try {
      createFileAtomic(path, await make());
      created = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  return { data: readFileSync(path), created };
}

export async function devSetup(opts: { dir?: string; host?: string; port?: number } = {}): Promise<DevSetup> {
  const dir = opts.dir ?? join(process.env.KEYPORT_HOME ?? join(homedir(), '.keyport'), 'dev');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keyPem = (
    await once(
      join(dir, 'server.key'),
      () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    )
  ).data;
  const certPath = join(dir, 'server.cert');
  const cert = (
    await once(certPath, async () => {
      return certToPem(
        await selfSignedCertificate(createPrivateKey(keyPem), {
          commonName: 'keyport dev server',
          dnsNames: ['localhost'],
          ipAddresses: ['127.0.0.1', '::1'],
          usage: ['server'],
        }),
      );
    })
  ).data;
  const apiKeyPath = join(dir, 'admin.key');
  const made = await once(apiKeyPath, () => generateApiKey().key + '\n');
  const apiKey = made.data.toString().trim();
  const admin = parseApiKey(apiKey).identity;
  return {
    dir,
    apiKey,
    apiKeyPath,
    apiKeyCreated: made.created,
    certPath,
    config: {
      host: opts.host ?? '127.0.0.1',
      port: opts.port ?? 7373,
      admin,
      tls: { key: keyPem, cert },
      policies: new Map(),
      identities: new Map(),
      routes: {},
      cache: { anyMs: 300_000, unusedMs: 20_000, offlineMs: 0 },
      log: { error: true, audit: false },
      keys: [],
      store: { store: `sqlite:${join(dir, 'keys.db')}`, envelope: { wrapper: `local:${join(dir, 'wrapper.key')}` } },
      workers: 1,
    },
  };
}
