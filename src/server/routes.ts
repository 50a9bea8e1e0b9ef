/**
 * The route table: KES v1 paths with their methods, body limits and timeouts (as KES v0.24 sets them),
 * plus keyport's additions in the same style. Handlers call the same Keyring the CLI uses.
 */
import os from 'node:os';
import { err, isKeyportError, type ErrorCode } from '../errors.js';
import type { Keyring, KeyInfo } from '../keys/types.js';
import { KEY_TYPES, type KeyType } from '../crypto/keytypes.js';
import { KEY_USAGES, type KeyUsage } from '../store/types.js';
import type { ServerConfig } from './config.js';
import { isKesListPattern, matchPattern } from './policy.js';

export { matchPattern };
import type { Logs } from './logs.js';
import { STACK_BYTES, type Metrics } from './metrics.js';
import type { UnansweredWrites } from './unanswered.js';

export const VERSION = 'v0.24.0-keyport';
const MB = 1 << 20;

export interface Ctx {
  identity: string;
  admin: boolean;
  resource: string;
  query: URLSearchParams;
  body: Buffer;
  state: ServerState;
  /** aborted when the request runs out of time or its client goes away: work not yet started is skipped */
  signal: AbortSignal;
}

export type Reply =
  | { status: number; json?: unknown }
  | { status: number; text: string; contentType: string }
  | { status: number; stream: 'audit' | 'error' };

export interface ServerState {
  kr: Keyring;
  config: ServerConfig;
  logs: Logs;
  metrics: Metrics;
  startedAt: number;
  /** creates and imports that finished after their client was answered 503 (see unanswered.ts) */
  unanswered: UnansweredWrites;
  /** liveness of the store, for /v1/ready and /v1/status */
  probe(): Promise<{ ok: boolean; latencyMs: number; unreachable: boolean }>;
}

export type Auth = 'none' | 'identify' | 'verify';

export interface Route {
  method: 'GET' | 'PUT' | 'DELETE' | 'POST';
  path: string;
  maxBody: number;
  timeoutMs: number;
  auth: Auth;
  handler: (c: Ctx) => Promise<Reply>;
}

// ---- request bodies: Go's encoding/json with []byte fields (standard base64) ----------------------

function jsonBody(c: Ctx): Record<string, unknown> {
  if (c.body.length === 0) return {};
  let v: unknown;
  try {
    v = JSON.parse(c.body.toString('utf8'));
  } catch {
    throw err('INVALID_INPUT', 'invalid request body');
  }
  if (v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw err('INVALID_INPUT', 'invalid request body');
  return v as Record<string, unknown>;
}

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function bytes(o: Record<string, unknown>, field: string, required = false): Buffer | undefined {
  const v = o[field];
  if (v === undefined || v === null) {
    if (required) throw err('INVALID_INPUT', 'invalid request body');
    return undefined;
  }
  if (typeof v !== 'string' || !B64.test(v)) throw err('INVALID_INPUT', 'invalid request body');
  return Buffer.from(v, 'base64');
}

function str(o: Record<string, unknown>, field: string): string | undefined {
  const v = o[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw err('INVALID_INPUT', 'invalid request body');
  return v;
}

const ok = (json?: unknown): Reply => ({ status: 200, json });

/**
 * KES's own error messages, which its clients match on, and keyport's stable error code beside them
 * (KES clients ignore the extra field; keyport's remote client keeps it)
 */
export function kesError(e: unknown, subject = 'key'): { status: number; message: string; code: ErrorCode } {
  if (!isKeyportError(e)) return { status: 500, message: 'internal server error', code: 'INTERNAL' };
  const code = e.code;
  switch (code) {
    case 'NOT_FOUND':
      return { status: 404, message: `${subject} does not exist`, code };
    case 'EXISTS':
      return { status: 400, message: `${subject} already exists`, code };
    case 'INVALID_CIPHERTEXT':
      return { status: 400, message: 'decryption failed: ciphertext is not authentic', code };
    case 'INVALID_NAME':
      return { status: 400, message: e.message, code };
    case 'UNAVAILABLE':
      return { status: 502, message: 'key store is unavailable', code };
    case 'TIMEOUT':
      return { status: 504, message: 'key store is not reachable', code };
    default:
      return { status: e.httpStatus, message: e.message, code };
  }
}

/** the stable code of an HTTP status the server answers without a KeyportError (routing, policy, limits) */
export function codeOfStatus(status: number): ErrorCode {
  if (status === 400 || status === 405 || status === 406 || status === 413) return 'INVALID_INPUT';
  if (status === 401) return 'AUTH';
  if (status === 403) return 'PERMISSION';
  if (status === 404) return 'NOT_FOUND';
  if (status === 409) return 'CONFLICT';
  if (status === 501) return 'UNSUPPORTED';
  if (status === 502) return 'UNAVAILABLE';
  if (status === 503) return 'THROTTLED';
  if (status === 504) return 'TIMEOUT';
  return 'INTERNAL';
}

function describeJson(k: KeyInfo) {
  return {
    name: k.name,
    algorithm: k.type === 'aes256' ? 'AES256' : k.type,
    created_at: k.createdAt,
    created_by: k.createdBy,
    // keyport additions
    type: k.type,
    purpose: k.purpose,
    usage: k.usage,
    state: k.state,
    fingerprint: k.fingerprint,
    version: k.version,
    versions: k.versions,
    protection: k.protection,
    ...(k.publicKey ? { public_key: k.publicKey } : {}),
  };
}

function checkListPattern(p: string): void {
  if (!isKesListPattern(p)) throw err('INVALID_INPUT', `listing pattern '${p}' is empty, too long or is invalid`);
}

/**
 * The server API lists by prefix, as KES v0.24 does: keys by the resource taken literally ('min' lists
 * minio-a, 'min*' lists nothing, '*' or '' lists all); policies and identities by the resource without a
 * trailing '*'. Globs are keyport's CLI's (`keyport key ls 'app-*'`), not the server API's.
 */
export function kesListPrefix(resource: string, stripStar: boolean): string {
  checkListPattern(resource);
  if (resource === '*') return '';
  return stripStar && resource.endsWith('*') ? resource.slice(0, -1) : resource;
}

/** this create/import retries one of the same identity that finished after its client was answered 503 */
async function retriesUnanswered(c: Ctx, material?: Buffer): Promise<boolean> {
  await c.state.unanswered.settled(c.resource);
  if (!c.state.unanswered.has(c.resource)) return false;
  const now = await c.state.kr.describe(c.resource, { signal: c.signal }).catch(() => undefined);
  return !!now && c.state.unanswered.claim(c.resource, c.identity, now.fingerprint, material);
}

const LIST_MAX_BYTES = 900 * 1024; // the KES client reads at most 1 MiB of a listing

export function buildRoutes(cfg: ServerConfig): Route[] {
  const r = (method: Route['method'], path: string, maxBody: number, timeoutMs: number, auth: Auth, handler: Route['handler']): Route => {
    const o = cfg.routes[path];
    return { method, path, maxBody, timeoutMs: o?.timeoutMs ?? timeoutMs, auth: o?.skipAuth ? 'identify' : auth, handler };
  };
  const S15 = 15_000;
  const routes: Route[] = [
    r('GET', '/version', 0, 10_000, 'none', async () => ok({ version: VERSION, commit: 'keyport' })),
    r('GET', '/v1/ready', 0, S15, 'verify', async (c) => {
      const p = await c.state.probe();
      if (p.unreachable) return { status: 504, json: { message: 'key store is not reachable' } };
      if (!p.ok) return { status: 502, json: { message: 'key store is unavailable' } };
      return ok();
    }),
    r('GET', '/v1/status', 0, S15, 'verify', async (c) => {
      const p = await c.state.probe();
      const mem = process.memoryUsage();
      return ok({
        version: VERSION,
        os: process.platform,
        arch: process.arch === 'x64' ? 'amd64' : process.arch,
        uptime: Math.round((Date.now() - c.state.startedAt) / 1000),
        // as KES: runtime.NumCPU() and GOMAXPROCS, i.e. the CPUs this process may run on
        num_cpu: Math.max(os.cpus().length, os.availableParallelism()),
        num_cpu_used: os.availableParallelism(),
        mem_heap_used: mem.heapUsed,
        mem_stack_used: STACK_BYTES,
        ...(p.unreachable ? { keystore_unreachable: true } : { keystore_latency: Math.max(1, Math.round(p.latencyMs)) }),
      });
    }),
    r('GET', '/v1/metrics', 0, S15, 'verify', async (c) => ({
      status: 200,
      text: await c.state.metrics.registry.metrics(),
      contentType: c.state.metrics.registry.contentType,
    })),
    r('GET', '/v1/api', 0, 10_000, 'verify', async () =>
      ok(routes.map((x) => ({ method: x.method, path: x.path, max_body: x.maxBody, timeout: Math.floor(x.timeoutMs / 1000) }))),
    ),

    r('PUT', '/v1/key/create/', 4096, S15, 'verify', async (c) => {
      // KES sends no body; keyport clients may ask for a type
      const b = jsonBody(c);
      const type = (str(b, 'type') ?? c.query.get('type') ?? 'aes256') as KeyType;
      if (!(KEY_TYPES as readonly string[]).includes(type)) throw err('INVALID_INPUT', `unknown key type '${type}'`);
      const usage = (b['usage'] as KeyUsage[] | undefined) ?? undefined;
      if (usage !== undefined && (!Array.isArray(usage) || usage.some((u) => !(KEY_USAGES as readonly string[]).includes(u))))
        throw err('INVALID_INPUT', 'invalid usage');
      try {
        await c.state.unanswered.track(
          c.resource,
          c.state.kr
            .create(c.resource, { type, purpose: str(b, 'purpose') as never, usage, createdBy: c.identity, signal: c.signal })
            .then((info) => {
              // the client was already answered 503 (or went away): its retry will be answered 200, once
              if (c.signal.aborted) c.state.unanswered.remember(c.resource, c.identity, info.fingerprint);
            }),
        );
      } catch (e) {
        // a key type this store cannot hold is the client's request refused (checked before generating), not a missing feature
        if (isKeyportError(e, 'UNSUPPORTED')) throw err('UNSUPPORTED', e.message, { httpStatus: 400 });
        if (isKeyportError(e, 'EXISTS') && (await retriesUnanswered(c))) return ok();
        throw e;
      }
      return ok();
    }),
    r('PUT', '/v1/key/import/', MB, S15, 'verify', async (c) => {
      const b = jsonBody(c);
      const key = bytes(b, 'key', true)!;
      const cipher = str(b, 'cipher');
      const type = str(b, 'type');
      if (type === undefined || type === 'aes256') {
        if (cipher !== undefined && !['AES256', 'AES256-GCM_SHA256', ''].includes(cipher))
          return {
            status: 406,
            json: {
              message:
                cipher === 'ChaCha20' || cipher === 'XCHACHA20-POLY1305'
                  ? `algorithm '${cipher}' is not supported for import: use AES256`
                  : `algorithm '${cipher}' is not supported`,
            },
          };
        if (key.length !== 32) return { status: 406, json: { message: `invalid key size for '${cipher ?? 'AES256'}'` } };
      }
      try {
        await c.state.unanswered.track(
          c.resource,
          c.state.kr
            .import(c.resource, key, { type: (type ?? 'aes256') as KeyType, createdBy: c.identity, signal: c.signal })
            .then((info) => {
              if (c.signal.aborted) c.state.unanswered.remember(c.resource, c.identity, info.fingerprint, key);
            }),
        );
      } catch (e) {
        if (isKeyportError(e, 'EXISTS') && (await retriesUnanswered(c, key))) return ok();
        throw e;
      } finally {
        key.fill(0);
      }
      return ok();
    }),
    r('GET', '/v1/key/describe/', 0, S15, 'verify', async (c) =>
      ok(describeJson(await c.state.kr.describe(c.resource, { signal: c.signal }))),
    ),
    r('GET', '/v1/key/list/', 0, S15, 'verify', async (c) => {
      const prefix = kesListPrefix(c.resource, false);
      // a key name has no '*': a prefix with one (KES: 'min*') lists nothing
      if (prefix.includes('*')) return ok({ names: [] });
      const pattern = `${prefix}*`;
      const after = c.query.get('after') ?? undefined;
      const limit = c.query.has('limit') ? Math.max(1, Math.min(10_000, Number(c.query.get('limit')) || 1000)) : undefined;
      const names: string[] = [];
      let size = 0;
      let cursor = after;
      for (;;) {
        const page = await c.state.kr.list(pattern, { after: cursor, limit: limit ?? 1000, signal: c.signal });
        for (const n of page.names) {
          size += n.length + 3;
          names.push(n);
          if ((limit && names.length >= limit) || size > LIST_MAX_BYTES) return ok({ names, continue_at: n });
        }
        if (!page.next) return ok({ names });
        cursor = page.next;
      }
    }),
    r('DELETE', '/v1/key/delete/', 0, S15, 'verify', async (c) => {
      await c.state.kr.delete(c.resource, { signal: c.signal });
      return ok();
    }),
    r('PUT', '/v1/key/encrypt/', MB, S15, 'verify', async (c) => {
      const b = jsonBody(c);
      const pt = bytes(b, 'plaintext') ?? Buffer.alloc(0);
      return ok({ ciphertext: (await c.state.kr.encrypt(c.resource, pt, bytes(b, 'context'), { signal: c.signal })).toString('base64') });
    }),
    r('PUT', '/v1/key/generate/', MB, S15, 'verify', async (c) => {
      const b = jsonBody(c);
      const dk = await c.state.kr.generate(c.resource, bytes(b, 'context'), { signal: c.signal });
      return ok({ plaintext: dk.plaintext.toString('base64'), ciphertext: dk.ciphertext.toString('base64') });
    }),
    r('PUT', '/v1/key/decrypt/', MB, S15, 'verify', async (c) => {
      const b = jsonBody(c);
      const ct = bytes(b, 'ciphertext') ?? Buffer.alloc(0);
      return ok({ plaintext: (await c.state.kr.decrypt(c.resource, ct, bytes(b, 'context'), { signal: c.signal })).toString('base64') });
    }),
    r('PUT', '/v1/key/hmac/', MB, S15, 'verify', async (c) => {
      const b = jsonBody(c);
      return ok({
        hmac: (await c.state.kr.hmac(c.resource, bytes(b, 'message') ?? Buffer.alloc(0), { signal: c.signal })).toString('base64'),
      });
    }),

    // keyport additions, same style
    r('PUT', '/v1/key/sign/', MB, S15, 'verify', async (c) => {
      const b = jsonBody(c);
      const format = str(b, 'format');
      if (format !== undefined && format !== 'der' && format !== 'raw') throw err('INVALID_INPUT', "format must be 'der' or 'raw'");
      const sig = await c.state.kr.sign(c.resource, bytes(b, 'message') ?? Buffer.alloc(0), {
        format: format as 'der' | 'raw' | undefined,
        usage: str(b, 'usage') as KeyUsage | undefined,
        signal: c.signal,
      });
      return ok({ signature: sig.toString('base64') });
    }),
    r('PUT', '/v1/key/verify/', MB, S15, 'verify', async (c) => {
      const b = jsonBody(c);
      const format = str(b, 'format');
      const valid = await c.state.kr.verify(c.resource, bytes(b, 'message') ?? Buffer.alloc(0), bytes(b, 'signature', true)!, {
        format: format === 'raw' ? 'raw' : 'der',
        signal: c.signal,
      });
      return ok({ valid });
    }),
    r('GET', '/v1/key/public/', 0, S15, 'verify', async (c) => {
      const v = c.query.get('version');
      const spki = await c.state.kr.publicKey(c.resource, v ? Number(v) : undefined, { signal: c.signal });
      return ok({ public_key: spki.toString('base64') });
    }),
    r('PUT', '/v1/key/rotate/', 0, S15, 'verify', async (c) => ok(describeJson(await c.state.kr.rotate(c.resource, { signal: c.signal })))),
    r('GET', '/v1/key/versions/', 0, S15, 'verify', async (c) =>
      ok({
        name: c.resource,
        versions: (await c.state.kr.versions(c.resource, { signal: c.signal })).map((v) => ({
          version: v.version,
          created_at: v.createdAt,
          fingerprint: v.fingerprint,
          protection: v.protection,
          current: v.current,
          ...(v.publicKey ? { public_key: v.publicKey } : {}),
        })),
      }),
    ),

    r('GET', '/v1/policy/describe/', 0, S15, 'verify', async (c) => {
      const p = c.state.config.policies.get(c.resource);
      if (!p) return { status: 404, json: { message: 'policy does not exist' } };
      return ok({ name: p.name, created_at: new Date(c.state.startedAt).toISOString(), created_by: c.state.config.admin ?? '' });
    }),
    r('GET', '/v1/policy/read/', 0, S15, 'verify', async (c) => {
      const p = c.state.config.policies.get(c.resource);
      if (!p) return { status: 404, json: { message: 'policy does not exist' } };
      return ok(policyJson(c.state, p.name));
    }),
    r('GET', '/v1/policy/list/', 0, S15, 'verify', async (c) => {
      const prefix = kesListPrefix(c.resource, true);
      return ok({ names: [...c.state.config.policies.keys()].filter((n) => n.startsWith(prefix)).sort(), continue_at: '' });
    }),
    r('GET', '/v1/identity/describe/', 0, S15, 'verify', async (c) => {
      const id = c.resource.toLowerCase();
      if (id === c.state.config.admin) return ok({ admin: true, created_at: new Date(c.state.startedAt).toISOString() });
      const p = c.state.config.identities.get(id);
      if (!p) return { status: 404, json: { message: 'identity does not exist' } };
      return ok({ policy: p, created_at: new Date(c.state.startedAt).toISOString(), created_by: c.state.config.admin ?? '' });
    }),
    r('GET', '/v1/identity/list/', 0, S15, 'verify', async (c) => {
      const prefix = kesListPrefix(c.resource, true);
      const all = [...(c.state.config.admin ? [c.state.config.admin] : []), ...c.state.config.identities.keys()];
      return ok({ identities: all.filter((i) => i.startsWith(prefix)).sort(), continue_at: '' });
    }),
    r('GET', '/v1/identity/self/describe', 0, S15, 'identify', async (c) => {
      if (!c.identity) return { status: 400, json: { message: 'tls: client certificate is required' } };
      // the shape the KES v0.24 client (kms-go/kes DescribeSelf, used by `kes identity info`) decodes: the policy's
      // name, its allow and deny rules beside it. (KES v0.24's own server answers 'identity does not exist' here
      // for every identity: it looks up the empty request resource instead of the caller.)
      const policy = c.state.config.identities.get(c.identity);
      const p = policy ? policyJson(c.state, policy) : undefined;
      return ok({
        identity: c.identity,
        ...(c.admin ? { admin: true } : {}),
        created_at: new Date(c.state.startedAt).toISOString(),
        ...(p
          ? { created_by: p.created_by, policy: p.name, ...(p.allow ? { allow: p.allow } : {}), ...(p.deny ? { deny: p.deny } : {}) }
          : {}),
      });
    }),
    r('GET', '/v1/log/error', 0, 0, 'verify', async () => ({ status: 200, stream: 'error' })),
    r('GET', '/v1/log/audit', 0, 0, 'verify', async () => ({ status: 200, stream: 'audit' })),
  ];
  return routes;
}

/** the paths the server serves (exact, or subtrees ending in '/'), for checking policy patterns */
export function routePaths(): string[] {
  return buildRoutes({ routes: {} } as unknown as ServerConfig).map((r) => r.path);
}

function policyJson(s: ServerState, name: string) {
  const p = s.config.policies.get(name)!;
  const set = (l: string[]) => (l.length ? Object.fromEntries(l.map((x) => [x, {}])) : undefined);
  return {
    name,
    allow: set(p.allow),
    deny: set(p.deny),
    created_at: new Date(s.startedAt).toISOString(),
    created_by: s.config.admin ?? '',
  };
}

export function policyAllows(cfg: ServerConfig, identity: string, path: string): boolean {
  if (cfg.admin && identity === cfg.admin) return true;
  const name = cfg.identities.get(identity);
  if (!name) return false;
  const p = cfg.policies.get(name);
  if (!p) return false;
  if (p.deny.some((d) => matchPattern(d, path))) return false;
  return p.allow.some((a) => matchPattern(a, path));
}
