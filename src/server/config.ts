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
    log: z
      .object({
        error: OnOff.optional(),
        audit: OnOff.optional(),
        /** keyport: one line per request on stderr (time, client, identity, method, path, status, duration) */
        requests: OnOff.optional(),
      })
      .passthrough()
      .optional(),
    /** keyport: connection limits (KES has fixed ones) */
    connections: z
      .object({
        max: z.number().int().min(1).max(1_000_000).optional(),
        idle_timeout: Duration.optional(),
        handshake_timeout: Duration.optional(),
      })
      .strict()
      .optional(),
    keys: z.array(z.object({ name: z.string() })).optional(),
    keystore: z
      .object({
        fs: z.object({ path: z.string() }).optional(),
        keyport: z
          .object({
            store: z.string(),
            envelope: z.object({ wrapper: z.string() }).optional(),
            external: z.object({ kms: z.string() }).optional(),
            /** connections for other key references the store names (docs/connections.md) */
            kms: z.array(z.string()).optional(),
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

export interface ConnectionLimits {
  max: number;
  idleTimeoutMs: number;
  handshakeTimeoutMs: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = { max: 4096, idleTimeoutMs: 90_000, handshakeTimeoutMs: 10_000 };

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
  log: { error: boolean; audit: boolean; requests?: boolean };
  /** open connections at most, and how long one may sit idle or take to finish its TLS handshake */
  connections?: ConnectionLimits;
  keys: string[];
  /** store URI or YAML path for openKeyring, or an inline store config */
  store: string | { store: string; envelope?: { wrapper: string }; external?: { kms: string }; kms?: string[] };
  /** the directory relative paths in an inline store config mean (the config file's own) */
  base?: string;
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
  if (t.startsWith('kes:v1:')) {
    try {
      return parseApiKey(t).identity;
    } catch (e) {
      throw err('INVALID_INPUT', `${where}: ${(e as Error).message} (value not shown)`);
    }
  }
  if (/^[0-9a-f]{64}$/i.test(t)) return t.toLowerCase();
  if (t === '' || t === 'disabled') return '';
  // the value may be a misspelled API key, i.e. a secret: say what is wrong, never echo it
  throw err('INVALID_INPUT', `${where}: the value is neither a hex identity (64 hex digits) nor a kes:v1: API key (value not shown)`);
}

function parseAddress(a: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(a);
  if (!m) throw err('INVALID_INPUT', `address '${a}' is not HOST:PORT`);
  const port = Number(m[3]);
  if (port > 65535) throw err('INVALID_INPUT', `address '${a}': bad port`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/** what each required section or key is, for a config that lacks it */
const REQUIRED: Record<string, string> = {
  tls: "the 'tls' section is missing: give tls.key and tls.cert (the server's private key and certificate files, PEM)",
  'tls.key': "'tls.key' is missing: the file with the server's private key (PEM)",
  'tls.cert': "'tls.cert' is missing: the file with the server's certificate (PEM)",
  keystore: "the 'keystore' section is missing: keystore: {fs: {path: DIR}} or keystore: {keyport: {store: URI}}",
  'admin.identity': "'admin.identity' is missing: the admin's identity (hex) or API key, or 'disabled'",
};

/** one schema issue in words; values from the file are never echoed (they may be secrets) */
function describeIssue(i: z.core.$ZodIssue, doc: unknown): string {
  const key = i.path.join('.');
  let v: unknown = doc;
  for (const p of i.path) v = v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[p as PropertyKey] : undefined;
  if (i.code === 'invalid_type' && (v === undefined || v === null))
    return key ? (REQUIRED[key] ?? `'${key}' is missing`) : 'the file is empty: a server config needs at least tls and keystore';
  return `${key || 'document'}: ${i.message}`;
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
  if (!r.success) throw err('INVALID_INPUT', `${path}: ${describeIssue(r.error.issues[0]!, doc)}`);
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
    log: { error: c.log?.error ?? true, audit: c.log?.audit ?? false, requests: c.log?.requests ?? false },
    connections: {
      max: c.connections?.max ?? DEFAULT_CONNECTION_LIMITS.max,
      idleTimeoutMs:
        c.connections?.idle_timeout !== undefined
          ? parseDuration(c.connections.idle_timeout, 'connections.idle_timeout')
          : DEFAULT_CONNECTION_LIMITS.idleTimeoutMs,
      handshakeTimeoutMs:
        c.connections?.handshake_timeout !== undefined
          ? parseDuration(c.connections.handshake_timeout, 'connections.handshake_timeout')
          : DEFAULT_CONNECTION_LIMITS.handshakeTimeoutMs,
    },
    keys: (c.keys ?? []).map((k) => k.name),
    store,
    base,
    workers: c.workers ?? 1,
    notices,
  };
}
