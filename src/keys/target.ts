/**
 * What a command (`--store`, `--from`, `--to`, `--peer`, `doctor STORE`) or `openKeyring` is pointed at,
 * parsed once at the edge into one typed value: a store address, a KMS address (external mode: the keys
 * live in the KMS and a local catalog keeps their references and public keys), or a store YAML file
 * (loaded where it is opened). Below the edge nothing re-parses the string: the layers take this value.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { err } from '../errors.js';
import { isKmsScheme, KMS_SCHEMES, KmsAddress, redactGeneric } from '../kms/address.js';
import { isStoreScheme, STORE_SCHEMES, StoreAddress } from '../store/address.js';

export type Target =
  | { readonly kind: 'yaml'; readonly path: string }
  | { readonly kind: 'store'; readonly store: StoreAddress }
  | {
      readonly kind: 'kms';
      readonly kms: KmsAddress;
      /** where keyport keeps this KMS's catalog (references and public keys) when none is configured */
      readonly catalog: StoreAddress;
    };

export function isYamlPath(s: string): boolean {
  return /\.ya?ml$/i.test(s);
}

const SCHEME = /^([a-z][a-z0-9+-]*):/;

/**
 * Where the catalog of an external-mode KMS lives when none is configured: named by a hash of the
 * connection's identity (KmsAddress.connectionIdentity: no secrets, no tuning settings, a local path
 * absolute), so `local:./d` and `local:./d/`, or a URI with `timeout-ms=` added, find one catalog, and the
 * same relative path from two directories finds two. A catalog made by keyport before 0.2, named by a hash
 * of the URI as written, is still used when it exists and the new one does not.
 */
export function defaultCatalog(kms: KmsAddress | string, raw = typeof kms === 'string' ? kms : undefined): string {
  const addr = typeof kms === 'string' ? KmsAddress.parse(kms) : kms;
  const dir = join(process.env.KEYPORT_HOME ?? join(homedir(), '.keyport'), 'catalogs');
  const file = (input: string) => join(dir, `${createHash('sha256').update(input).digest('hex').slice(0, 16)}.db`);
  const current = file(`v2\u0000${addr.connectionIdentity}`);
  if (raw !== undefined && !existsSync(current)) {
    const legacy = file(redactGeneric(raw));
    if (existsSync(legacy)) return `sqlite:${legacy}`;
  }
  return `sqlite:${current}`;
}

export const isTarget = (x: unknown): x is Target =>
  typeof x === 'object' && x !== null && ['yaml', 'store', 'kms'].includes((x as { kind?: string }).kind ?? '');

/** a store URI, a KMS URI or a YAML path, validated: unknown schemes and attributes are refused here */
export function parseTarget(raw: string, opts: { base?: string; what?: string } = {}): Target {
  const what = opts.what ?? 'store';
  const s = raw.trim();
  if (isYamlPath(s)) return { kind: 'yaml', path: isAbsolute(s) ? s : resolve(opts.base ?? process.cwd(), s) };
  const scheme = SCHEME.exec(s)?.[1];
  if (scheme !== undefined && isKmsScheme(scheme)) {
    const kms = KmsAddress.parse(s, { ...opts, what });
    return { kind: 'kms', kms, catalog: StoreAddress.parse(defaultCatalog(kms, raw)) };
  }
  if (scheme !== undefined && !isStoreScheme(scheme))
    throw err(
      'USAGE',
      `${what}: '${scheme}:' is not a key store or a KMS: use one of ${[...STORE_SCHEMES, ...KMS_SCHEMES].map((x) => x + ':').join(', ')} or a YAML file`,
    );
  if (scheme === undefined)
    throw err(
      'USAGE',
      `${what} '${redactGeneric(s)}' is not a store address: use scheme:… (e.g. sqlite:keys.db), a KMS URI or a .yaml file`,
    );
  return { kind: 'store', store: StoreAddress.parse(s, opts.base ? { base: opts.base } : {}) };
}

/** a target given as a string is parsed here (library callers); a parsed one is taken as it is */
export const toTarget = (t: string | Target, opts: { base?: string; what?: string } = {}): Target =>
  typeof t === 'string' ? parseTarget(t, opts) : t;

/** how a target prints: redacted by its type */
export function targetString(t: Target): string {
  return t.kind === 'yaml' ? t.path : t.kind === 'store' ? t.store.toString() : t.kms.toString();
}

/**
 * What stored data (a migration journal) may say about a target: which store or KMS, never how it is
 * reached — no endpoint, credential or password (a KMS prints as its reference, a PostgreSQL store as
 * host, port, database and table, an AWS Secrets Manager store as its prefix and layout).
 */
export function targetRef(t: Target): string {
  if (t.kind === 'yaml') return t.path;
  if (t.kind === 'kms') return t.kms.kms.toString();
  if (t.store.scheme === 'awssm') {
    const p = t.store.params();
    return `awssm:prefix=${p['prefix'] ?? ''};layout=${p['layout'] ?? 'kes'}`;
  }
  return t.store.identity;
}
