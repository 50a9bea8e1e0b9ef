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
 * Setting `envelope` on a clear store protects its existing keys on open (Canton's behaviour), unless the
 * opener only reads (`readOnly`): then nothing is written, the keys are read as they are and the protection
 * still to apply is reported (onNotice, StoreKeyring.pendingProtection) for the next write. Relative
 * paths in a YAML file (the store's, a local wrapper key's, TLS files, driver modules) mean beside the
 * file, from whatever directory it is used.
 *
 * `create` says whether opening may create a missing store (store/missing.ts): the library's default is
 * true; the CLI says it for every command, and only commands that put keys into a store create one.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { err } from '../errors.js';
import { parseDuration } from '../config/duration.js';
import { openRecordStore, type OpenStoreOptions } from '../store/open.js';
import { StandInStore, StoreMissingError, isStoreMissing } from '../store/missing.js';
import { readProtectionStored, writeProtection } from '../store/protection.js';
import { KmsAddress, sameKeyRef, sameKmsRef } from '../kms/address.js';
import type { StoreAddress } from '../store/address.js';
import type { RecordStore } from '../store/types.js';
import { Connections } from '../kms/connections.js';
import { StoreKeyring, type KeyringOptions } from './keyring.js';
import { protectEnable, upgradeRefs } from './protect.js';
import { isKesConfig, kesKeystoreToStoreConfig } from '../store/kes-config.js';
import { isTarget, isYamlPath, parseTarget, type Target, targetString } from './target.js';

export { defaultCatalog, isYamlPath, parseTarget, type Target } from './target.js';

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

/**
 * What a target (store URI, KMS URI or YAML file) is, for "is this the same store": the store's identity
 * (store/address.ts), or for a KMS target the KMS's reference and its catalog. Malformed targets compare as given.
 */
export function targetIdentity(target: string | Target): string {
  try {
    const t = typeof target === 'string' ? parseTarget(target) : target;
    if (t.kind === 'store') return t.store.identity;
    // a KMS target is its KMS and the catalog keyport keeps for it (two AWS regions are two stores)
    if (t.kind === 'kms') return `kms ${t.kms.kms} catalog ${t.catalog.identity}`;
    const inner = parseTarget(loadStoreConfig(t.path).store, { base: dirname(t.path) });
    return inner.kind === 'yaml' ? inner.path : targetIdentity(inner);
  } catch {
    return typeof target === 'string' ? target : targetString(target);
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
  /**
   * the caller only reads (the CLI's read-only commands, doctor, migrate's source): opening writes nothing
   * and creates no wrapper key. Protection the configuration asks for but the store does not have yet
   * (envelope over a clear store, external over an empty clear catalog) is not applied: it is set on the
   * keyring's `pendingProtection` and, when keys wait to be sealed, said once through onNotice. Default
   * false: opening applies it (seals a clear store under its configured wrapper, marks a new catalog).
   */
  readOnly?: boolean;
}

/** how many records hold a version in the clear (what protect enable would seal) */
async function countClear(rs: RecordStore): Promise<number> {
  let n = 0;
  let after: string | undefined;
  for (;;) {
    const page = await rs.list({ ...(after !== undefined ? { after } : {}), limit: 1000 });
    for (const name of page.names) {
      const r = await rs.get(name).catch(() => undefined);
      if (r?.versions.some((v) => v.clear !== undefined)) n++;
    }
    if (!page.next) return n;
    after = page.next;
  }
}

export async function openKeyring(target: string | Target | StoreConfig, opts: OpenOptions = {}): Promise<StoreKeyring> {
  // a string is parsed here, once (the library's edge); the CLI hands over the Target it parsed
  const t = typeof target === 'string' ? parseTarget(target, opts.base ? { base: opts.base } : {}) : isTarget(target) ? target : undefined;
  let cfg: StoreConfig | undefined;
  let base = opts.base;
  let store: StoreAddress;
  let external: KmsAddress | undefined;
  let wrapper: KmsAddress | undefined;
  /** the store is the KMS's default catalog (keyport chose where it lives) */
  let catalog = false;
  if (t?.kind === 'store') store = t.store;
  else if (t?.kind === 'kms') {
    store = t.catalog;
    external = t.kms;
    catalog = true;
  } else {
    if (t) {
      cfg = loadStoreConfig(t.path);
      base ??= dirname(t.path);
    } else {
      const r = StoreConfigSchema.safeParse(target);
      if (!r.success)
        throw err('INVALID_INPUT', `store config: ${r.error.issues[0]!.path.join('.') || 'document'}: ${r.error.issues[0]!.message}`);
      cfg = r.data;
    }
    const at = base ? { base } : {};
    const inner = parseTarget(cfg.store, { ...at, what: 'store' });
    if (inner.kind === 'yaml') throw err('USAGE', `store: '${cfg.store}' is a YAML file: give the store's URI`);
    if (inner.kind === 'kms') {
      if (cfg.external) throw err('USAGE', `store: '${inner.kms}' is a KMS: give the catalog's store URI, or drop external:`);
      store = inner.catalog;
      external = inner.kms;
      catalog = true;
    } else store = inner.store;
    if (cfg.external) external = KmsAddress.parse(cfg.external.kms, { ...at, what: 'external.kms' });
    if (cfg.envelope) wrapper = KmsAddress.parse(cfg.envelope.wrapper, { ...at, what: 'envelope.wrapper' });
  }
  // the connections this configuration gives: its `kms:` list, its external KMS, the caller's, its envelope wrapper
  const connections = opts.connections ?? new Connections();
  for (const k of cfg?.kms ?? []) connections.add(k, { ...(base ? { base } : {}), what: 'kms' });
  if (external) connections.add(external);
  for (const k of opts.kms ?? []) connections.add(k, { what: '--kms' });
  if (wrapper) connections.add(wrapper);
  const create = opts.create ?? true;
  const rs = await openRecordStore(store, { create }).catch((e: unknown) => {
    // a KMS's default catalog that is not there yet: say so in the KMS's words
    if (isStoreMissing(e) && catalog && external)
      throw new StoreMissingError(
        store.toString(),
        `keyport has no catalog of ${external} yet: its keys come with keyport key create or key register`,
      );
    throw e;
  });
  const kr = new StoreKeyring(rs, {
    ...opts,
    connections,
    ...(cfg?.cache?.ttl !== undefined ? { cacheTtlMs: parseDuration(cfg.cache.ttl, 'cache.ttl') } : {}),
    ...(cfg?.cache?.unused !== undefined ? { cacheUnusedMs: parseDuration(cfg.cache.unused, 'cache.unused') } : {}),
  });
  if (rs instanceof StandInStore) {
    // a store that is not there yet (migrate's target before it has something to write): its protection
    // as configured, in memory only; nothing is checked or created (no wrapper key) until it is real
    if (external) await writeProtection(rs, { mode: 'external', kms: external.kms.toString() });
    else if (wrapper) await writeProtection(rs, { mode: 'envelope', wrapper: wrapper.key.toString() });
    return kr;
  }
  try {
    // a store written by 0.1.0 keeps whole URIs (endpoints, credentials): rewrite them into references first.
    // This one write happens on every open, readOnly too: it removes secrets (credentials) from the store,
    // changes no key, and the rest of keyport reads only references (a read-only open could not use it as is)
    const stored = await readProtectionStored(rs);
    if (stored.legacy) {
      const r = await upgradeRefs(kr);
      opts.onNotice?.(`stored KMS addresses rewritten as key references (credentials dropped) in ${r.changed} key(s)`);
    }
    const cur = stored.protection;
    if (external) {
      const kmsRef = external.kms.toString();
      if (cur.mode === 'clear') {
        const first = await rs.list({ limit: 1 });
        if (first.names.length)
          throw err(
            'CONFLICT',
            `${store} already holds keys of its own: use an empty catalog for external mode, or 'keyport migrate' to move keys into the KMS`,
            { retryable: false },
          );
        // a reader leaves the empty catalog unmarked: the first key put into it marks it
        if (opts.readOnly) kr.pendingProtection = { mode: 'external', kms: kmsRef };
        else await writeProtection(rs, { mode: 'external', kms: kmsRef });
      } else if (cur.mode !== 'external' || !sameKmsRef(cur.kms, kmsRef))
        throw err('CONFLICT', `${store} is not a catalog of ${external}`, { retryable: false });
    } else if (wrapper) {
      const ref = wrapper.key.toString();
      if (cur.mode === 'clear' && opts.readOnly) {
        // a reader writes nothing and makes no wrapper key: the keys are read in the clear as they are
        const clearKeys = await countClear(rs);
        kr.pendingProtection = { mode: 'envelope', wrapper: ref, clearKeys };
        if (clearKeys)
          opts.onNotice?.(
            `${clearKeys} key(s) in ${store} are not yet sealed under ${ref}: the next write command or 'keyport protect enable --wrapper ${ref}' seals them`,
          );
      } else if (cur.mode === 'clear') {
        const r = await protectEnable(kr, wrapper);
        // a new, empty store is simply created protected: only sealing existing keys is news
        if (r.changed) opts.onNotice?.(`envelope protection enabled on open: ${r.changed} key(s) sealed under ${ref}`);
      } else if (cur.mode === 'envelope' && !sameKeyRef(cur.wrapper, ref))
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
