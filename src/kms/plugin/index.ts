/**
 * `driver:MODULE;k=v;…`: a third-party KMS driver. MODULE is an npm package name (resolved from the
 * current directory's node_modules first, then keyport's own) or a path (starting with `.`, `/` or
 * `file:`; relative to the current directory; a file or a package directory). The module exports one of
 *   export const factory = async (params, uri) => driver
 *   export default async (params, uri) => driver
 *   export function createDriver(params) { return driver }
 * and gets every URI parameter but the module itself. The driver it returns must implement the Driver
 * API (docs/driver-api.md); a third party cannot always throw keyport's own KeyportError class, so
 * errors carrying a keyport error `code` string are taken as that code and anything else becomes
 * INTERNAL (one line, naming the module).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { err, isKeyportError, type KeyportError, oneLine, type ErrorCode } from '../../errors.js';
import type { Driver, DriverFactory } from '../driver.js';

const METHODS = [
  'health',
  'supportedSigningKeySpecs',
  'supportedSigningAlgoSpecs',
  'supportedEncryptionKeySpecs',
  'supportedEncryptionAlgoSpecs',
  'generateSigningKeyPair',
  'generateEncryptionKeyPair',
  'generateSymmetricKey',
  'sign',
  'decryptAsymmetric',
  'encryptSymmetric',
  'decryptSymmetric',
  'getPublicKey',
  'keyExistsAndIsActive',
  'deleteKey',
] as const;
const OPTIONAL = ['importKey', 'listKeys', 'describeKey', 'resolveKeyId', 'close'] as const;

const CODES: ReadonlySet<string> = new Set<ErrorCode>([
  'USAGE',
  'INVALID_NAME',
  'INVALID_INPUT',
  'INVALID_CIPHERTEXT',
  'NOT_FOUND',
  'EXISTS',
  'UNSUPPORTED',
  'KEY_USAGE',
  'KEY_DISABLED',
  'VERIFY_FAILED',
  'PERMISSION',
  'AUTH',
  'UNAVAILABLE',
  'TIMEOUT',
  'THROTTLED',
  'CONFLICT',
  'INTERNAL',
]);

const isPathLike = (m: string) =>
  m.startsWith('.') || m.startsWith('/') || m.startsWith('file:') || isAbsolute(m) || /\.(m?js|cjs)$/.test(m);

/** the entry file of a package directory: exports (string / "." / import|node|default), main, index.js */
function packageEntry(dir: string): string {
  const pj = join(dir, 'package.json');
  if (existsSync(pj)) {
    let pkg: { exports?: unknown; main?: string };
    try {
      pkg = JSON.parse(readFileSync(pj, 'utf8')) as typeof pkg;
    } catch {
      throw err('INVALID_INPUT', `driver: ${pj} is not valid JSON`);
    }
    const pick = (x: unknown): string | undefined => {
      if (typeof x === 'string') return x;
      if (Array.isArray(x)) return x.map(pick).find((v) => v !== undefined);
      if (x && typeof x === 'object') {
        const o = x as Record<string, unknown>;
        if ('.' in o) return pick(o['.']);
        for (const c of ['import', 'node', 'default']) if (c in o) return pick(o[c]);
      }
      return undefined;
    };
    const entry = pick(pkg.exports) ?? pkg.main;
    if (entry) return resolve(dir, entry);
  }
  return join(dir, 'index.js');
}

/** a bare package name, looked up in node_modules from the current directory upwards */
function findPackage(name: string): string | undefined {
  const m = /^(@[^/]+\/[^/]+|[^@/][^/]*)(\/.*)?$/.exec(name);
  if (!m || m[2]) return undefined; // deep imports go through node's own resolution
  for (let d = process.cwd(); ; d = dirname(d)) {
    const p = join(d, 'node_modules', m[1]!);
    if (existsSync(p)) return packageEntry(p);
    if (dirname(d) === d) return undefined;
  }
}

async function importModule(spec: string): Promise<Record<string, unknown>> {
  let target: string;
  if (isPathLike(spec)) {
    const p = spec.startsWith('file:') ? new URL(spec).pathname : resolve(process.cwd(), spec);
    if (!existsSync(p)) throw err('USAGE', `driver: ${p} does not exist: give an npm package name or a path to the driver module`);
    target = pathToFileURL(statSync(p).isDirectory() ? packageEntry(p) : p).href;
  } else {
    const found = findPackage(spec);
    target = found ? pathToFileURL(found).href : spec;
  }
  try {
    return (await import(target)) as Record<string, unknown>;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND' && String((e as Error).message).includes(spec)) {
      throw err('USAGE', `driver: module '${spec}' not found: install it (npm install ${spec}) or give a path like driver:./my-driver`);
    }
    throw err('INVALID_INPUT', `driver: cannot load '${spec}': ${oneLine(e)}`);
  }
}

type AnyFactory = (params: Record<string, string>, uri: string) => unknown;

/** the factory the module exports, in the three accepted shapes */
function factoryOf(mod: Record<string, unknown>, spec: string): AnyFactory {
  if (typeof mod['factory'] === 'function') return mod['factory'] as AnyFactory;
  const def = mod['default'];
  if (typeof def === 'function') return def as AnyFactory;
  // a CommonJS module's exports arrive as `default`
  if (def && typeof def === 'object') {
    const d = def as Record<string, unknown>;
    if (typeof d['factory'] === 'function') return d['factory'] as AnyFactory;
    if (typeof d['createDriver'] === 'function') return d['createDriver'] as AnyFactory;
  }
  if (typeof mod['createDriver'] === 'function') return mod['createDriver'] as AnyFactory;
  throw err(
    'INVALID_INPUT',
    `driver: '${spec}' exports no driver factory: export 'factory', a default function, or 'createDriver(params)'`,
  );
}

/** check the object the module made has the Driver API; one error naming everything missing */
export function checkDriverShape(d: unknown, spec: string): asserts d is Driver {
  if (!d || typeof d !== 'object')
    throw err('INVALID_INPUT', `driver: '${spec}' factory returned ${d === null ? 'null' : typeof d}, not a driver object`);
  const o = d as Record<string, unknown>;
  const missing: string[] = METHODS.filter((m) => typeof o[m] !== 'function');
  if (typeof o['name'] !== 'string' || !o['name']) missing.unshift('name (string)');
  const badOptional = OPTIONAL.filter((m) => o[m] !== undefined && typeof o[m] !== 'function');
  if (missing.length || badOptional.length) {
    const parts = [];
    if (missing.length) parts.push(`missing ${missing.join(', ')}`);
    if (badOptional.length) parts.push(`not functions: ${badOptional.join(', ')}`);
    throw err('INVALID_INPUT', `driver: '${spec}' does not implement the keyport Driver API (${parts.join('; ')}): see docs/driver-api.md`);
  }
}

/** errors from the module as KeyportErrors: keyport codes are kept, the rest is INTERNAL */
function mapError(e: unknown, spec: string): KeyportError {
  if (isKeyportError(e)) return e;
  const o = e as { code?: unknown; message?: unknown; retryable?: unknown } | undefined;
  const msg = oneLine(e).slice(0, 300);
  if (o && typeof o.code === 'string' && CODES.has(o.code)) {
    return err(o.code as ErrorCode, msg, { cause: e, ...(typeof o.retryable === 'boolean' ? { retryable: o.retryable } : {}) });
  }
  return err('INTERNAL', `driver ${spec} failed: ${msg}`, { cause: e });
}

/** the third-party driver behind an adapter that maps its errors (the object itself is not changed) */
function adapt(d: Driver, spec: string): Driver {
  const wrap =
    <A extends unknown[], R>(f: (...a: A) => Promise<R>) =>
    async (...a: A): Promise<R> => {
      try {
        return await f.apply(d, a);
      } catch (e) {
        throw mapError(e, spec);
      }
    };
  const sync =
    <R>(f: () => R) =>
    (): R => {
      try {
        return f.apply(d);
      } catch (e) {
        throw mapError(e, spec);
      }
    };
  const a: Driver = {
    name: d.name,
    async health() {
      try {
        const h = await d.health();
        return h && typeof h === 'object' && typeof h.state === 'string'
          ? h
          : { state: 'failed', reason: `driver ${spec} returned an invalid health value` };
      } catch (e) {
        return { state: 'failed', reason: mapError(e, spec).message };
      }
    },
    supportedSigningKeySpecs: sync(d.supportedSigningKeySpecs),
    supportedSigningAlgoSpecs: sync(d.supportedSigningAlgoSpecs),
    supportedEncryptionKeySpecs: sync(d.supportedEncryptionKeySpecs),
    supportedEncryptionAlgoSpecs: sync(d.supportedEncryptionAlgoSpecs),
    generateSigningKeyPair: wrap(d.generateSigningKeyPair),
    generateEncryptionKeyPair: wrap(d.generateEncryptionKeyPair),
    generateSymmetricKey: wrap(d.generateSymmetricKey),
    sign: wrap(d.sign),
    decryptAsymmetric: wrap(d.decryptAsymmetric),
    encryptSymmetric: wrap(d.encryptSymmetric),
    decryptSymmetric: wrap(d.decryptSymmetric),
    getPublicKey: wrap(d.getPublicKey),
    keyExistsAndIsActive: wrap(d.keyExistsAndIsActive),
    deleteKey: wrap(d.deleteKey),
  };
  if (d.importKey) a.importKey = wrap(d.importKey);
  if (d.describeKey) a.describeKey = wrap(d.describeKey);
  if (d.resolveKeyId) a.resolveKeyId = wrap(d.resolveKeyId);
  if (d.close) a.close = wrap(d.close);
  if (d.listKeys) {
    const list = d.listKeys;
    a.listKeys = async function* () {
      try {
        yield* list.apply(d);
      } catch (e) {
        throw mapError(e, spec);
      }
    };
  }
  return a;
}

export const factory: DriverFactory = async (params, uri) => {
  const spec = params['path'] ?? params['module'];
  if (!spec) throw err('USAGE', 'driver: needs a module, e.g. driver:@acme/keyport-driver;region=eu or driver:./my-driver.js');
  const rest = { ...params };
  delete rest['path'];
  delete rest['module'];
  const mod = await importModule(spec);
  const make = factoryOf(mod, spec);
  let d: unknown;
  try {
    d = await make(rest, uri);
  } catch (e) {
    throw mapError(e, spec);
  }
  checkDriverShape(d, spec);
  return adapt(d, spec);
};
