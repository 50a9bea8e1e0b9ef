/**
 * KMS addresses and key references: the one home of "which KMS / which key" and "how to reach it".
 *
 *   KmsAddress — how to reach a KMS (endpoint, region, credentials, PIN, TLS files, a driver module):
 *                parsed once, at the edge, from operator configuration (CLI flag, store YAML, server
 *                config, environment). One zod schema per backend validates every attribute and rejects
 *                unknown ones. It prints redacted; it is never written to a store.
 *   KmsRef     — which KMS: the scheme plus the backend's own stable identity (GCP project/location/key
 *                ring, Azure vault, PKCS#11 token, a local key directory, a driver's name). No endpoint,
 *                no credentials, no module path.
 *   KeyRef     — which key: a KmsRef plus the KMS's key id (ARN, alias, key name, label, unique id, file).
 *
 * What a store keeps (sealed versions, `external.kms`, the protection setting, journals, rekey maps) is a
 * KmsRef or KeyRef string. A stored string is only ever read back with `parseStoredKeyRef` /
 * `parseStoredKmsRef`, which yield references and never an address: nothing a store says can load code,
 * choose an endpoint or carry credentials. Connections for references come from `Connections`
 * (kms/connections.ts), filled from configuration only. Stored URIs written by keyport 0.1.0 (full
 * addresses, credentials included) read as the references they name.
 */
import { isAbsolute, resolve } from 'node:path';
import { inspect } from 'node:util';
import { z } from 'zod';
import { err } from '../errors.js';
import { parseUri, type ParsedUri } from '../config/uri.js';

export type KmsScheme = 'local' | 'awskms' | 'gcpkms' | 'azurekv' | 'pkcs11' | 'kmip' | 'driver';

const s = () => z.string().optional();
const bool = () => z.enum(['true', 'false', '1', '0', 'yes', 'no', 'TRUE', 'FALSE', 'True', 'False']).optional();
const int = () => z.string().regex(/^\d+$/, 'must be a whole number').optional();

interface Backend {
  /** every attribute the backend's driver reads; `strict` rejects any other */
  schema: z.ZodObject<Record<string, z.ZodType>>;
  /** attributes that are the KMS's identity (part of every reference), in canonical order */
  identity: readonly string[];
  /** attributes that are secrets: never printed */
  secrets: readonly string[];
  /** attributes that tune the connection without changing which KMS and keys it reaches */
  tuning?: readonly string[];
  /** third-party drivers take attributes keyport cannot know */
  open?: boolean;
}

const BACKENDS: Record<KmsScheme, Backend> = {
  local: { schema: z.object({ path: z.string().min(1) }).strict(), identity: ['path'], secrets: [] },
  awskms: {
    schema: z
      .object({
        region: s(),
        endpoint: z
          .string()
          .regex(/^https?:\/\/\S+$/, 'must be an http(s) URL')
          .optional(),
        profile: s(),
        'access-key-id': s(),
        'secret-access-key': s(),
        'session-token': s(),
        'timeout-ms': int(),
        /** the key specs the endpoint imports, where less than AWS KMS's (aes256 for local-kms, none for moto) */
        import: s(),
        /** aws: start at AWS KMS's documented default quotas (default for AWS's endpoints); learn: from throttles */
        quotas: z.enum(['aws', 'learn']).optional(),
      })
      .strict(),
    identity: [],
    secrets: ['secret-access-key', 'session-token'],
    tuning: ['timeout-ms', 'import', 'quotas'],
  },
  gcpkms: {
    schema: z
      .object({
        project: s(),
        location: s(),
        keyring: s(),
        'key-ring': s(),
        endpoint: s(),
        credentials: s(),
        'protection-level': s(),
        'timeout-ms': int(),
      })
      .strict(),
    identity: ['project', 'location', 'keyring'],
    secrets: [],
    tuning: ['timeout-ms'],
  },
  azurekv: {
    schema: z
      .object({
        vault: s(),
        path: s(),
        'tenant-id': s(),
        'client-id': s(),
        'client-secret': s(),
        'access-token': s(),
        ca: s(),
        retries: int(),
        'dev-token': bool(),
        insecure: bool(),
        purge: bool(),
        'disable-challenge-resource-verification': bool(),
      })
      .strict(),
    identity: ['vault'],
    secrets: ['client-secret', 'access-token'],
    tuning: ['retries'],
  },
  pkcs11: {
    schema: z
      .object({
        'module-path': s(),
        token: s(),
        serial: s(),
        'slot-id': s(),
        'pin-value': s(),
        'pin-source': s(),
        'pool-size': int(),
      })
      .strict(),
    identity: ['token', 'serial'],
    secrets: ['pin-value'],
    tuning: ['pool-size'],
  },
  kmip: {
    schema: z.object({ host: s(), port: int(), cert: s(), key: s(), ca: s(), 'server-name': s(), timeout: s() }).strict(),
    identity: [],
    secrets: [],
    tuning: ['timeout'],
  },
  driver: {
    schema: z.object({
      path: z.string().min(1),
      name: z
        .string()
        .regex(/^[A-Za-z0-9_.@/-]+$/, 'must be a plain name')
        .optional(),
    }),
    identity: ['name'],
    secrets: [],
    open: true,
  },
};

export const KMS_SCHEMES = Object.keys(BACKENDS) as KmsScheme[];
export const isKmsScheme = (scheme: string): scheme is KmsScheme => scheme in BACKENDS;

/** attributes that are local files (a bare module-path such as libsofthsm2.so is left to the loader's search) */
const FILE_ATTRS: Partial<Record<KmsScheme, string[]>> = {
  kmip: ['cert', 'key', 'ca'],
  azurekv: ['ca'],
  gcpkms: ['credentials'],
  pkcs11: ['module-path', 'pin-source'],
};

/** attribute names that name a key rather than the KMS */
const KEY_ATTRS = ['key-id', 'object', 'id'] as const;

/** what generic redaction hides in third-party driver attributes */
const SECRETISH = /(pin|password|secret|token|api-key|credential|passphrase)/i;

function fmtValue(v: string): string {
  return v.replace(/[;%?&]/g, encodeURIComponent);
}

function format(scheme: string, path: string | undefined, attrs: [string, string][]): string {
  const parts = path !== undefined ? [path] : [];
  for (const [k, v] of attrs) parts.push(`${k}=${fmtValue(v)}`);
  return `${scheme}:${parts.join(';')}`;
}

function driverName(path: string, name?: string): string {
  if (name) return name;
  const base = path.replace(/^file:/, '').replace(/\/+$/, '');
  const last = base.slice(base.lastIndexOf('/') + 1).replace(/\.(m?js|cjs|ts)$/, '');
  return last || 'driver';
}

/** a local KMS is the same whether its directory is written with a trailing '/' or not */
function localDir(path: string): string {
  return path.length > 1 ? path.replace(/\/+$/, '') : path;
}

/** Which KMS: scheme + the backend's stable identity. What stores keep for external keys and protection. */
export class KmsRef {
  private constructor(
    readonly scheme: KmsScheme,
    readonly identity: Readonly<Record<string, string>>,
  ) {}

  static of(scheme: KmsScheme, identity: Record<string, string | undefined>): KmsRef {
    const id: Record<string, string> = {};
    for (const k of BACKENDS[scheme].identity) if (identity[k]) id[k] = identity[k]!;
    if (scheme === 'local' && id['path']) id['path'] = localDir(id['path']);
    return new KmsRef(scheme, id);
  }

  /** the stored form: `awskms:`, `local:/var/lib/keyport/kms`, `pkcs11:token=T`, `driver:name=acme` */
  toString(): string {
    const id = { ...this.identity };
    let path: string | undefined;
    if (this.scheme === 'local') {
      path = id['path'];
      delete id['path'];
    }
    return format(this.scheme, path, Object.entries(id));
  }

  toJSON(): string {
    return this.toString();
  }

  equals(o: KmsRef): boolean {
    return this.toString() === o.toString();
  }
}

/** Which key: a KmsRef plus the KMS's key id. What sealed versions and the envelope setting keep. */
export class KeyRef {
  constructor(
    readonly kms: KmsRef,
    readonly keyId: string,
  ) {
    if (!keyId) throw err('USAGE', `a key reference for ${kms} needs a key id`);
  }

  /** `local:/path/w.key` for a local key file, else the KmsRef plus `key-id=ID` */
  toString(): string {
    if (this.kms.scheme === 'local' && this.kms.identity['path'] === this.keyId) return this.kms.toString();
    const k = this.kms.toString();
    return `${k}${k.endsWith(':') ? '' : ';'}key-id=${fmtValue(this.keyId)}`;
  }

  toJSON(): string {
    return this.toString();
  }

  equals(o: KeyRef): boolean {
    return this.toString() === o.toString();
  }
}

export interface ParseOptions {
  /** relative paths (local keys, TLS files, driver modules) resolve against this directory (default: cwd) */
  base?: string;
  /** what the address is, for messages ("wrapper", "--kms") */
  what?: string;
}

/** How to reach a KMS (and, for a key address, which key). Operator configuration only; prints redacted. */
export class KmsAddress {
  private constructor(
    readonly scheme: KmsScheme,
    private readonly attrs: Readonly<Record<string, string>>,
    /** the key this address names (wrapper keys, keys to register), if any */
    readonly keyId: string | undefined,
  ) {}

  /** Parse and validate an address given by the operator. Unknown attributes are refused. */
  static parse(raw: string, opts: ParseOptions = {}): KmsAddress {
    const what = opts.what ?? 'KMS address';
    let u: ParsedUri;
    try {
      u = parseUri(raw);
    } catch {
      throw err('USAGE', `${what} '${redactGeneric(raw)}' is not a KMS URI: use e.g. awskms:region=R;key-id=ID or local:PATH`);
    }
    if (!isKmsScheme(u.scheme))
      throw err('USAGE', `${what}: '${u.scheme}:' is not a KMS: use one of ${KMS_SCHEMES.map((x) => x + ':').join(', ')}`);
    const scheme = u.scheme;
    const b = BACKENDS[scheme];
    const params: Record<string, string> = { ...u.params };
    let keyId: string | undefined;
    for (const k of KEY_ATTRS) {
      if (params[k] !== undefined) {
        if (keyId !== undefined && keyId !== params[k]) throw err('USAGE', `${what}: give one of key-id=, object=, id=`);
        keyId = params[k];
        delete params[k];
      }
    }
    if (u.path !== undefined && params['path'] === undefined) params['path'] = u.path;
    if (scheme === 'driver' && params['module'] !== undefined && params['path'] === undefined) {
      params['path'] = params['module'];
      delete params['module'];
    }
    let attrs: Record<string, string>;
    if (b.open) {
      const known = b.schema.safeParse({ path: params['path'], ...(params['name'] ? { name: params['name'] } : {}) });
      if (!known.success) throw badAttr(what, scheme, known.error);
      attrs = params;
    } else {
      const r = b.schema.safeParse(params);
      if (!r.success) throw badAttr(what, scheme, r.error);
      attrs = r.data as Record<string, string>;
    }
    const base = opts.base ?? process.cwd();
    if (scheme === 'local') {
      // a trailing '/' says "a directory of keys" even before it exists (resolve() would drop it)
      const given = attrs['path']!;
      attrs = { path: resolve(base, given) + (given.endsWith('/') && given !== '/' ? '/' : '') };
      if (keyId !== undefined) keyId = resolve(attrs['path'], '..', keyId);
      else keyId = undefined;
    }
    if (scheme === 'driver') {
      const p = attrs['path']!;
      attrs = { ...attrs, name: driverName(p, attrs['name']) };
      if (p.startsWith('.') || p.startsWith('/')) attrs['path'] = resolve(base, p);
    }
    // files the connection reads (TLS, credentials, a PKCS#11 module given as a path): beside the configuration
    // file that names them; given on the command line (no base), they stay as given and mean the cwd at use
    for (const k of opts.base === undefined ? [] : (FILE_ATTRS[scheme] ?? [])) {
      const v = attrs[k];
      if (v === undefined) continue;
      const file = k === 'pin-source' ? v.replace(/^file:(\/\/)?/, '') : v;
      if (isAbsolute(file) || (k === 'module-path' && !file.includes('/'))) continue;
      attrs = { ...attrs, [k]: k === 'pin-source' ? `file:${resolve(base, file)}` : resolve(base, file) };
    }
    if (scheme === 'gcpkms' && attrs['key-ring'] !== undefined) {
      const { 'key-ring': kr, ...rest } = attrs;
      attrs = { ...rest, keyring: rest['keyring'] ?? kr! };
    }
    if (scheme === 'azurekv' && attrs['path'] !== undefined) {
      const { path, ...rest } = attrs;
      attrs = { ...rest, vault: rest['vault'] ?? path! };
    }
    return new KmsAddress(scheme, attrs, keyId);
  }

  /**
   * Which KMS this connection reaches, as one canonical string: the scheme and every attribute but its
   * secrets and the settings that only tune the connection (timeouts, quotas, pool sizes), sorted, with
   * a local directory absolute and without a trailing '/', and no key id. Two ways of writing one
   * connection (`local:./d` and `local:./d/`, an added `timeout-ms=`) give the same string.
   */
  get connectionIdentity(): string {
    const b = BACKENDS[this.scheme];
    const skip = new Set([...b.secrets, ...(b.tuning ?? [])]);
    const attrs = Object.entries(this.attrs)
      .filter(([k]) => !skip.has(k) && !(b.open && SECRETISH.test(k)))
      .map(([k, v]): [string, string] => [k, this.scheme === 'local' && k === 'path' ? localDir(v) : v])
      .sort(([a], [c]) => (a < c ? -1 : a > c ? 1 : 0));
    return format(this.scheme, undefined, attrs);
  }

  /** a local: key file address (`local:PATH`) names its own key */
  get wrapperKeyId(): string | undefined {
    if (this.scheme === 'local') return this.keyId ?? this.attrs['path'];
    return this.keyId;
  }

  /** which KMS this reaches */
  get kms(): KmsRef {
    return KmsRef.of(this.scheme, this.attrs);
  }

  /** which key this names; USAGE when it names none */
  get key(): KeyRef {
    const id = this.wrapperKeyId;
    if (!id) throw err('USAGE', `'${this}' names no key: add key-id=ID (object=LABEL for pkcs11)`);
    return new KeyRef(this.kms, id);
  }

  /** the same connection naming this key */
  withKey(keyId: string): KmsAddress {
    return new KmsAddress(this.scheme, this.attrs, keyId);
  }

  /** the same connection with some attributes replaced (validated like a parsed address) */
  with(changes: Record<string, string>): KmsAddress {
    const b = BACKENDS[this.scheme];
    const attrs = { ...this.attrs, ...changes };
    if (!b.open) {
      const r = b.schema.safeParse(attrs);
      if (!r.success) throw badAttr('KMS address', this.scheme, r.error);
    }
    return new KmsAddress(this.scheme, attrs, this.keyId);
  }

  /** the same address without its key (the KMS connection) */
  withoutKey(): KmsAddress {
    return new KmsAddress(this.scheme, this.attrs, undefined);
  }

  /** a local key file that is not there (a wrapper that may have been lost) */
  get localFile(): string | undefined {
    return this.scheme === 'local' ? this.wrapperKeyId : undefined;
  }

  /** what the driver factory gets: every validated attribute (secrets included, for the connection only) */
  driverParams(): Record<string, string> {
    return { ...this.attrs };
  }

  /** a stable key for pooling one driver per connection (secrets included in the hash input, never printed) */
  connectionKey(): string {
    return JSON.stringify([this.scheme, Object.entries(this.attrs).sort()]);
  }

  /** redacted: secrets as ***, never a credential */
  toString(): string {
    const b = BACKENDS[this.scheme];
    const attrs = { ...this.attrs };
    let path: string | undefined;
    if (this.scheme === 'local' || this.scheme === 'driver') {
      path = attrs['path'];
      delete attrs['path'];
    }
    const shown: [string, string][] = Object.entries(attrs).map(([k, v]) =>
      b.secrets.includes(k) || (b.open && SECRETISH.test(k)) ? [k, '***'] : [k, v],
    );
    if (this.keyId !== undefined && !(this.scheme === 'local' && this.keyId === path)) shown.push(['key-id', this.keyId]);
    return format(this.scheme, path, shown);
  }

  toJSON(): string {
    return this.toString();
  }

  [inspect.custom](): string {
    return `KmsAddress(${this.toString()})`;
  }
}

function badAttr(what: string, scheme: string, e: z.ZodError): never {
  const i = e.issues[0]!;
  if (i.code === 'unrecognized_keys')
    throw err('USAGE', `${what}: ${scheme}: does not take ${i.keys.map((k) => `'${k}'`).join(', ')} (see docs/connections.md)`);
  // an attribute left out (`local:`, `driver:`): say which, not the schema's "expected string, received undefined"
  if (i.code === 'invalid_type' && /received undefined/.test(i.message)) {
    const k = i.path.join('.');
    throw err(
      'USAGE',
      `${what}: ${scheme}: ${k === 'path' ? `needs a path, e.g. ${scheme === 'driver' ? 'driver:./my-driver.mjs' : `${scheme}:./w.key`}` : `needs ${k}=…`}`,
    );
  }
  throw err('USAGE', `${what}: ${scheme}: ${i.path.join('.') || 'attributes'}: ${i.message}`);
}

/** Hide anything that looks like a secret in a string that failed to parse. */
export function redactGeneric(raw: string): string {
  return raw
    .replace(
      /((?:pin-value|pin|password|secret|secret-key|secret-access-key|session-token|access-token|token|client-secret|api-key)=)[^;&?]*/gi,
      '$1***',
    )
    .replace(/(\/\/[^:/@]+:)[^@]*@/, '$1***@');
}

/**
 * A KmsRef from what a store keeps: a reference written by this version, or a whole KMS URI written by
 * 0.1.0 (its endpoint, credentials and module path are dropped, never used).
 */
export function parseStoredKmsRef(stored: string, where = 'stored KMS reference'): KmsRef {
  const { scheme, attrs } = storedParts(stored, where);
  const id: Record<string, string> = { ...attrs };
  if (scheme === 'local' && id['path']) id['path'] = resolve(id['path']);
  if (scheme === 'driver') id['name'] = driverName(attrs['path'] ?? attrs['module'] ?? '', attrs['name']);
  if (scheme === 'gcpkms' && !id['keyring'] && attrs['key-ring']) id['keyring'] = attrs['key-ring'];
  if (scheme === 'azurekv' && !id['vault'] && attrs['path']) id['vault'] = attrs['path'];
  return KmsRef.of(scheme, id);
}

/** A KeyRef from what a store keeps (see parseStoredKmsRef). */
export function parseStoredKeyRef(stored: string, where = 'stored key reference'): KeyRef {
  const { scheme, attrs, keyId } = storedParts(stored, where);
  const kms = parseStoredKmsRef(stored, where);
  if (scheme === 'local') {
    const path = kms.identity['path'];
    return new KeyRef(kms, keyId !== undefined ? resolve(path ?? '.', keyId) : (path ?? ''));
  }
  if (!keyId) throw err('INVALID_INPUT', `${where} '${redactGeneric(stored)}' names no key`);
  void attrs;
  return new KeyRef(kms, keyId);
}

function storedParts(stored: string, where: string): { scheme: KmsScheme; attrs: Record<string, string>; keyId?: string } {
  let u: ParsedUri;
  try {
    u = parseUri(stored);
  } catch {
    throw err('INVALID_INPUT', `${where} '${redactGeneric(stored)}' is damaged`);
  }
  if (!isKmsScheme(u.scheme)) throw err('INVALID_INPUT', `${where} '${redactGeneric(stored)}' names no KMS keyport knows`);
  const attrs: Record<string, string> = { ...u.params };
  if (u.path !== undefined && attrs['path'] === undefined) attrs['path'] = u.path;
  let keyId: string | undefined;
  for (const k of KEY_ATTRS) if (attrs[k] !== undefined) keyId ??= attrs[k];
  return { scheme: u.scheme, attrs, ...(keyId !== undefined ? { keyId } : {}) };
}

/**
 * The one equality of stored references: two stored strings name the same key (or KMS) when they read
 * back as equal references (a 0.1.0 URI and the reference it became are the same key; a damaged one is
 * the same as nothing).
 */
export function sameKeyRef(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  try {
    return parseStoredKeyRef(a).equals(parseStoredKeyRef(b));
  } catch {
    return false;
  }
}
export function sameKmsRef(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  try {
    return parseStoredKmsRef(a).equals(parseStoredKmsRef(b));
  } catch {
    return false;
  }
}

/** the canonical stored form of a stored KeyRef string (0.1.0 URIs become references) */
export const canonicalKeyRef = (stored: string): string => parseStoredKeyRef(stored).toString();
export const canonicalKmsRef = (stored: string): string => parseStoredKmsRef(stored).toString();
