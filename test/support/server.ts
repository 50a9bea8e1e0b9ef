/** Start an in-process keyport server on a free port with a temp store, an admin and policy identities. */
import { join } from 'node:path';
import { after } from 'node:test';
import { request, Agent } from 'node:https';
import { devSetup } from '../../src/server/dev.js';
import { startServer, type Started } from '../../src/server/index.js';
import { generateApiKey, type ApiKey } from '../../src/server/identity.js';
import { ApiKeyAgent } from '../../src/client/remote.js';
import type { ServerConfig } from '../../src/server/config.js';
import { tempDir } from './tmp.js';

export interface TestServer {
  s: Started;
  url: string;
  dir: string;
  admin: string;
  app: ApiKey;
  stranger: ApiKey;
  config: ServerConfig;
}

export async function testServer(edit?: (c: ServerConfig, dir: string) => void): Promise<TestServer> {
  const dir = tempDir('keyport-srv-');
  const dev = await devSetup({ dir: join(dir, 'dev'), host: '127.0.0.1', port: 0 });
  const app = generateApiKey();
  const stranger = generateApiKey();
  const cfg = dev.config;
  cfg.log = { error: false, audit: false };
  cfg.policies.set('my-app', {
    name: 'my-app',
    allow: ['/v1/key/create/my-app*', '/v1/key/generate/my-app*', '/v1/key/decrypt/my-app*', '/v1/key/describe/my-app*'],
    deny: ['/v1/key/generate/my-app-internal*', '/v1/key/decrypt/my-app-internal*'],
  });
  cfg.identities.set(app.identity, 'my-app');
  edit?.(cfg, dir);
  const s = await startServer(cfg);
  after(() => s.close());
  return { s, url: s.url, dir, admin: dev.apiKey, app, stranger, config: cfg };
}

export function agentFor(key?: ApiKey): Agent {
  if (!key) return new Agent({ rejectUnauthorized: false, keepAlive: true });
  // the API key's client certificate is made asynchronously; the agent's connections wait for it
  return new ApiKeyAgent(key, { rejectUnauthorized: false, keepAlive: true });
}

export function raw(
  url: string,
  agent: Agent,
  method: string,
  path: string,
  body?: string | Buffer,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(url + path, { method, agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}
