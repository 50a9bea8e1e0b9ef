/**
 * Server configuration: the KES v1 YAML (address, admin, tls, api, policy, cache, log, keys, keystore)
 * plus keyport's additions (any keyport store as the keystore, envelope/external protection, workers).
 * Identities may be written as hex identities or as `kes:v1:` API keys.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { err } from '../errors.js';
import { parseDuration } from '../config/duration.js';
import { parseApiKey } from './identity.js';
import { checkPolicyPatterns } from './policy.js';
import { kesKeystoreToStoreConfig } from '../store/kes-config.js';
import { routePaths } from './routes.js';

const Duration = z.union([z.string(), z.number()]);
const OnOff = z.union([z.boolean(), z.enum(['on', 'off'])]).transform((v) => v === true || v === 'on');

export const ServerConfigSchema = z
  .object({
    version: z.string().optional(),
    address: z.string().default('0.0.0.0:7373'),
    admin: z.object({ identity: z.string() }).optional(),
    tls: z
      .object({
        key: z.string(),
        cert: z.string(),
        password: z.string().optional(),
        /** verify client certificates against this CA (KES: tls.ca); by default any certificate is accepted and identified */
        ca: z.string().optional(),
        auth: z.string().optional(),
        proxy: z.unknown().optional(),
      })
      .passthrough(),
    api: z.record(z.string(), z.object({ skip_auth: z.boolean().optional(), timeout: Duration.optional() }).passthrough()).optional(),
    policy: z
      .record(
        z.string(),
        z
          .object({
            allow: z.array(z.string()).default([]),
            deny: z.array(z.string()).default([]),
            identities: z.array(z.string()).default([]),
          })
          .passthrough(),
      )
      .optional(),
    cache: z
      .object({
        expiry: z.object({ any: Duration.optional(), unused: Duration.optional(), offline: Duration.optional() }).passthrough().optional(),
      })
      .passthrough()
      .optional(),
    log: z.object({ error: OnOff.optional(), audit: OnOff.optional() }).passthrough().optional(),
    keys: z.array(z.object({ name: z.string() })).optional(),
    keystore: z
      .object({
        fs: z.object({ path: z.string() }).optional(),
        keyport: z
          .object({
            store: z.string(),
            envelope: z.object({ wrapper: z.string() }).optional(),
            external: z.object({ kms: z.string() }).optional(),
          })
          .optional(),
      })
      .passthrough(),
    /** keyport: worker processes sharing the port (0 = one per CPU) */
    workers: z.number().int().min(0).max(64).optional(),
  })
  .passthrough();

export interface ResolvedPolicy {
  name: string;
  allow: string[];
  deny: string[];
}

export interface ServerConfig {
  host: string;
  port: number;
  admin?: string;
  tls: { key: Buffer; cert: Buffer; password?: string; ca?: Buffer };
  policies: Map<string, ResolvedPolicy>;
  /** identity → policy name */
  identities: Map<string, string>;
  routes: Record<string, { skipAuth?: boolean; timeoutMs?: number }>;
  cache: { anyMs: number; unusedMs: number; offlineMs: number };
  log: { error: boolean; audit: boolean };
  keys: string[];
  /** store URI or YAML path for openKeyring, or an inline store config */
  store: string | { store: string; envelope?: { wrapper: string }; external?: { kms: string } };
  workers: number;
  /** start-up notices about the configuration (e.g. allow rules for APIs KES v0.24 no longer has) */
  notices?: string[];
}

/** `${VAR}` references are replaced from the environment, as KES does */
function expandEnv(text: string): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, v: string) => process.env[v] ?? '');
}

export function normaliseIdentity(s: string, where: string): string {
  const t = s.trim();
  if (t.startsWith('kes:v1:')) return parseApiKey(t).identity;
  if (/^[0-9a-f]{64}$/i.test(t)) return t.toLowerCase();
  if (t === '' || t === 'disabled') return '';
  throw err('INVALID_INPUT', `${where}: '${t.slice(0, 16)}…' is neither a hex identity nor a kes:v1: API key`);
}

function parseAddress(a: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(a);
  if (!m) throw err('INVALID_INPUT', `address '${a}' is not HOST:PORT`);
  const port = Number(m[3]);
  if (port > 65535) throw err('INVALID_INPUT', `address '${a}': bad port`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export function loadServerConfig(path: string): ServerConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw err('USAGE', `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(expandEnv(text));
  } catch (e) {
    throw err('INVALID_INPUT', `${path}: not valid YAML (${(e as Error).message.split('\n')[0]})`);
  }
  const r = ServerConfigSchema.safeParse(doc);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw err('INVALID_INPUT', `${path}: ${i.path.join('.') || 'document'}: ${i.message}`);
  }
  return resolveServerConfig(r.data, dirname(resolve(path)), path);
}

export function resolveServerConfig(c: z.infer<typeof ServerConfigSchema>, base: string, where = 'config'): ServerConfig {
  const file = (p: string, what: string) => {
    try {
      return readFileSync(resolve(base, p));
    } catch (e) {
      throw err('INVALID_INPUT', `${where}: cannot read ${what} ${p}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  };
  const policies = new Map<string, ResolvedPolicy>();
  const identities = new Map<string, string>();
  const admin = c.admin ? normaliseIdentity(c.admin.identity, `${where}: admin.identity`) || undefined : undefined;
  for (const [name, p] of Object.entries(c.policy ?? {})) {
    policies.set(name, { name, allow: p.allow, deny: p.deny });
    for (const id of p.identities) {
      const ident = normaliseIdentity(id, `${where}: policy.${name}.identities`);
      if (!ident) continue;
      if (ident === admin) throw err('INVALID_INPUT', `${where}: the admin identity cannot be assigned to policy '${name}'`);
      if (identities.has(ident)) throw err('INVALID_INPUT', `${where}: identity ${ident.slice(0, 12)}… is assigned to two policies`);
      identities.set(ident, name);
    }
  }
  // KES v0.24 pattern semantics: a pattern that can match no request is refused here, not silently inert
  const notices = checkPolicyPatterns(policies.values(), routePaths(), (m) => {
    throw err('INVALID_INPUT', `${where}: ${m}`);
  });
  const routes: ServerConfig['routes'] = {};
  for (const [path, a] of Object.entries(c.api ?? {}))
    routes[path] = {
      skipAuth: a.skip_auth,
      ...(a.timeout !== undefined ? { timeoutMs: parseDuration(a.timeout, `api.${path}.timeout`) } : {}),
    };
  const exp = c.cache?.expiry ?? {};
  // the keystore section, as `keyport migrate` reads a KES config too (fs, aws.secretsmanager, keyport)
  const store: ServerConfig['store'] = kesKeystoreToStoreConfig(c.keystore, where, base);
  const { host, port } = parseAddress(c.address);
  return {
    host,
    port,
    admin,
    tls: {
      key: file(c.tls.key, 'tls.key'),
      cert: file(c.tls.cert, 'tls.cert'),
      ...(c.tls.password ? { password: c.tls.password } : {}),
      ...(c.tls.ca ? { ca: file(c.tls.ca, 'tls.ca') } : {}),
    },
    policies,
    identities,
    routes,
    cache: {
      anyMs: exp.any !== undefined ? parseDuration(exp.any, 'cache.expiry.any') : 300_000,
      unusedMs: exp.unused !== undefined ? parseDuration(exp.unused, 'cache.expiry.unused') : 20_000,
      offlineMs: exp.offline !== undefined ? parseDuration(exp.offline, 'cache.expiry.offline') : 0,
    },
    log: { error: c.log?.error ?? true, audit: c.log?.audit ?? false },
    keys: (c.keys ?? []).map((k) => k.name),
    store,
    workers: c.workers ?? 1,
    notices,
  };
}
