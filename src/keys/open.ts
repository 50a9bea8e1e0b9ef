/**
 * `openKeyring(target)`: the library's entry point. `target` is a store URI, a KMS URI (external
 * mode: keys live in the KMS, a local catalog keeps references and public keys), or a YAML file:
 *
 *   store: sqlite:/var/lib/keyport/keys.db      # any store URI (required)
 *   envelope:                                   # optional: seal secrets under a KMS wrapper key
 *     wrapper: awskms:region=us-east-1;key-id=alias/keyport-wrapper
 *   external:                                   # optional: keys generated and used in this KMS
 *     kms: awskms:region=us-east-1
 *   kms: [awskms:region=eu-west-1]              # optional: connections for other stored key references
 *   cache: { ttl: 5m, unused: 0 }               # how long unsealed secrets stay in memory
 *
 * Setting `envelope` on a clear store protects its existing keys on open (Canton's behaviour). Relative
 * paths in a YAML file (the store's, a local wrapper key's, TLS files, driver modules) mean beside the
 * file, from whatever directory it is used.
 *
 * `create` says whether opening may create a missing store (store/missing.ts): the library's default is
 * true; the CLI says it for every command, and only commands that put keys into a store create one.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { homedir } from 'node:os';
import { createHash } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { err } from '../errors.js';
import { parseUri, redactUri } from '../config/uri.js';
import { parseDuration } from '../config/duration.js';
import { isKmsScheme } from '../kms/registry.js';
import { openRecordStore, type OpenStoreOptions } from '../store/open.js';
import { StandInStore, StoreMissingError, isStoreMissing } from '../store/missing.js';
import { readProtectionStored, writeProtection } from '../store/protection.js';
import { KmsAddress } from '../kms/address.js';
import { StoreAddress } from '../store/address.js';
import { Connections } from '../kms/connections.js';
import { StoreKeyring, type KeyringOptions } from './keyring.js';
import { protectEnable, upgradeRefs } from './protect.js';
import { isKesConfig, kesKeystoreToStoreConfig } from '../store/kes-config.js';

const Duration = z.union([z.string(), z.number()]);
export const StoreConfigSchema = z
  .object({
    store: z.string().min(1),
    envelope: z
      .object({ wrapper: z.string().min(1) })
      .strict()
      .optional(),
    external: z
      .object({ kms: z.string().min(1) })
      .strict()
      .optional(),
    /** connections for key references the store names beside its own wrapper / KMS (an old wrapper, registered keys) */
    kms: z.array(z.string().min(1)).optional(),
    cache: z.object({ ttl: Duration.optional(), unused: Duration.optional() }).strict().optional(),
  })
  .strict()
  .refine((c) => !(c.envelope && c.external), { message: 'envelope and external cannot both be set' });
export type StoreConfig = z.infer<typeof StoreConfigSchema>;

export function isYamlPath(s: string): boolean {
  return /\.ya?ml$/i.test(s);
}

export function loadStoreConfig(path: string): StoreConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw err('USAGE', `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw err('INVALID_INPUT', `${path}: not valid YAML (${(e as Error).message.split('\n')[0]})`);
  }
  // a KES server config: its keystore section is the store (src/store/kes-config.ts)
  if (isKesConfig(doc)) doc = kesKeystoreToStoreConfig(doc['keystore'], path);
  const r = StoreConfigSchema.safeParse(doc);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw err('INVALID_INPUT', `${path}: ${i.path.join('.') || 'document'}: ${i.message}`);
  }
  return r.data;
}

/** the directory relative paths in a target's configuration mean: a YAML file's own; undefined: the current directory */
export function configBase(target: string): string | undefined {
  return isYamlPath(target) ? dirname(resolve(target)) : undefined;
}

/** where the catalog of an external-mode KMS lives when none is configured */
export function defaultCatalog(kmsUri: string): string {
  const home = process.env.KEYPORT_HOME ?? join(homedir(), '.keyport');
  const id = createHash('sha256').update(redactUri(kmsUri)).digest('hex').slice(0, 16);
  return `sqlite:${join(home, 'catalogs', `${id}.db`)}`;
}

/**
 * What a target (store URI, KMS URI or YAML file) is, for "is this the same store": the store's identity
 * (store/address.ts), or the KMS's reference for a KMS target. Malformed targets compare as given.
 */
export function targetIdentity(target: string): string {
  try {
    const store = isYamlPath(target) ? loadStoreConfig(target).store : target;
    if (isYamlPath(store)) return store;
    const base = configBase(target);
    const u = parseUri(store);
    if (isKmsScheme(u.scheme)) return `kms ${KmsAddress.parse(store, base ? { base } : {}).kms}`;
    return StoreAddress.parse(store, base ? { base } : {}).identity;
  } catch {
    return target;
  }
}

export interface OpenOptions extends KeyringOptions {
  /** called when opening changes the store (e.g. envelope enabled on open) */
  onNotice?: (msg: string) => void;
  /** more KMS connections (operator configuration: --kms / --wrapper, KEYPORT_KMS) beside the YAML's */
  kms?: (KmsAddress | string)[];
  /** relative paths in the configuration resolve against this directory (default: a YAML target's own, else cwd) */
  base?: string;
  /**
   * may opening create a missing store (OpenStoreOptions: true, false, 'stand-in')? The library's default
   * is true; the CLI passes false except for key create / import / register, node init / import and migrate --to.
   */
  create?: OpenStoreOptions['create'];
}

/** the connections a configuration gives: its `kms:` list, its envelope wrapper, its external KMS, then the caller's */
function connectionsOf(cfg: StoreConfig, opts: OpenOptions, base?: string): Connections {
  const c = opts.connections ?? new Connections();
  const o = base ? { base } : {};
  for (const k of cfg.kms ?? []) c.add(k, { ...o, what: 'kms' });
  if (cfg.external) c.add(cfg.external.kms, { ...o, what: 'external.kms' });
  for (const k of opts.kms ?? []) c.add(k, { what: '--kms' });
  if (cfg.envelope) c.add(cfg.envelope.wrapper, { ...o, what: 'envelope.wrapper' });
  return c;
}

export async function openKeyring(target: string | StoreConfig, opts: OpenOptions = {}): Promise<StoreKeyring> {
  let cfg: StoreConfig;
  const base = opts.base ?? (typeof target === 'string' ? configBase(target) : undefined);
  if (typeof target !== 'string') {
    const r = StoreConfigSchema.safeParse(target);
    if (!r.success)
      throw err('INVALID_INPUT', `store config: ${r.error.issues[0]!.path.join('.') || 'document'}: ${r.error.issues[0]!.message}`);
    cfg = r.data;
  } else if (isYamlPath(target)) {
    cfg = loadStoreConfig(target);
  } else {
    const u = parseUri(target);
    cfg = isKmsScheme(u.scheme) ? { store: defaultCatalog(target), external: { kms: target } } : { store: target };
  }
  if (!isYamlPath(cfg.store) && isKmsScheme(parseUri(cfg.store).scheme) && !cfg.external)
    cfg = { ...cfg, store: defaultCatalog(cfg.store), external: { kms: cfg.store } };
  const connections = connectionsOf(cfg, opts, base);
  const external = cfg.external ? KmsAddress.parse(cfg.external.kms, { ...(base ? { base } : {}), what: 'external.kms' }) : undefined;
  const wrapper = cfg.envelope
    ? KmsAddress.parse(cfg.envelope.wrapper, { ...(base ? { base } : {}), what: 'envelope.wrapper' })
    : undefined;
  const storeConfig = cfg;
  const create = opts.create ?? true;
  const store = await openRecordStore(StoreAddress.parse(cfg.store, base ? { base } : {}), { create }).catch((e: unknown) => {
    // a KMS's default catalog that is not there yet: say so in the KMS's words
    if (isStoreMissing(e) && storeConfig.external && storeConfig.store === defaultCatalog(storeConfig.external.kms))
      throw new StoreMissingError(
        redactUri(storeConfig.store),
        `keyport has no catalog of ${redactUri(storeConfig.external.kms)} yet: its keys come with keyport key create or key register`,
      );
    throw e;
  });
  const kr = new StoreKeyring(store, {
    ...opts,
    connections,
    ...(cfg.cache?.ttl !== undefined ? { cacheTtlMs: parseDuration(cfg.cache.ttl, 'cache.ttl') } : {}),
    ...(cfg.cache?.unused !== undefined ? { cacheUnusedMs: parseDuration(cfg.cache.unused, 'cache.unused') } : {}),
  });
  if (store instanceof StandInStore) {
    // a store that is not there yet (migrate's target before it has something to write): its protection
    // as configured, in memory only; nothing is checked or created (no wrapper key) until it is real
    if (external) await writeProtection(store, { mode: 'external', kms: external.kms.toString() });
    else if (wrapper) await writeProtection(store, { mode: 'envelope', wrapper: wrapper.key.toString() });
    return kr;
  }
  try {
    // a store written by 0.1.0 keeps whole URIs (endpoints, credentials): rewrite them into references first
    const stored = await readProtectionStored(store);
    if (stored.legacy) {
      const r = await upgradeRefs(kr);
      opts.onNotice?.(`stored KMS addresses rewritten as key references (credentials dropped) in ${r.changed} key(s)`);
    }
    const cur = stored.protection;
    if (external) {
      const kmsRef = external.kms.toString();
      if (cur.mode === 'clear') {
        const first = await store.list({ limit: 1 });
        if (first.names.length)
          throw err(
            'CONFLICT',
            `${redactUri(cfg.store)} already holds keys of its own: use an empty catalog for external mode, or 'keyport migrate' to move keys into the KMS`,
            { retryable: false },
          );
        await writeProtection(store, { mode: 'external', kms: kmsRef });
      } else if (cur.mode !== 'external' || cur.kms !== kmsRef)
        throw err('CONFLICT', `${redactUri(cfg.store)} is not a catalog of ${external}`, { retryable: false });
    } else if (wrapper) {
      const ref = wrapper.key.toString();
      if (cur.mode === 'clear') {
        const r = await protectEnable(kr, wrapper);
        // a new, empty store is simply created protected: only sealing existing keys is news
        if (r.changed) opts.onNotice?.(`envelope protection enabled on open: ${r.changed} key(s) sealed under ${ref}`);
      } else if (cur.mode === 'envelope' && cur.wrapper !== ref)
        throw err(
          'CONFLICT',
          `store is protected by ${cur.wrapper}, not the configured wrapper ${ref}: run 'keyport protect rotate' to change it`,
          {
            retryable: false,
          },
        );
    }
  } catch (e) {
    await kr.close().catch(() => undefined);
    throw e;
  }
  return kr;
}
