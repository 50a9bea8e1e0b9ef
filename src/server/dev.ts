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
  certPath: string;
}

function once(path: string, make: () => Buffer | string): Buffer {
  if (!existsSync(path)) {
    try {
      createFileAtomic(path, make());
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  return readFileSync(path);
}

export function devSetup(opts: { dir?: string; host?: string; port?: number } = {}): DevSetup {
  const dir = opts.dir ?? join(process.env.KEYPORT_HOME ?? join(homedir(), '.keyport'), 'dev');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keyPem = once(
    join(dir, 'server.key'),
    () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
  );
  const certPath = join(dir, 'server.cert');
  const cert = once(certPath, () => {
    return certToPem(
      selfSignedCertificate(createPrivateKey(keyPem), {
        commonName: 'keyport dev server',
        dnsNames: ['localhost'],
        ipAddresses: ['127.0.0.1', '::1'],
        usage: ['server'],
      }),
    );
  });
  const apiKey = once(join(dir, 'admin.key'), () => generateApiKey().key + '\n')
    .toString()
    .trim();
  const admin = parseApiKey(apiKey).identity;
  return {
    dir,
    apiKey,
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
