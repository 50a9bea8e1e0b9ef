/**
 * `openKeyring(target)`: the library's entry point. `target` is a store URI, a KMS URI (external
 * mode: keys live in the KMS, a local catalog keeps references and public keys), or a YAML file:
 *
 *   store: sqlite:/var/lib/keyport/keys.db      # any store URI (required)
 *   envelope:                                   # optional: seal secrets under a KMS wrapper key
 *     wrapper: awskms:region=us-east-1;key-id=alias/keyport-wrapper
 *   external:                                   # optional: keys generated and used in this KMS
 *     kms: awskms:region=us-east-1
 *   cache: { ttl: 5m, unused: 0 }               # how long unsealed secrets stay in memory
 *
 * Setting `envelope` on a clear store protects its existing keys on open (Canton's behaviour).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { homedir } from 'node:os';
import { createHash } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { err, isKeyportError } from '../errors.js';
import { parseUri, redactUri } from '../config/uri.js';
import { parseDuration } from '../config/duration.js';
import { isKmsScheme } from '../kms/registry.js';
import { openRecordStore } from '../store/open.js';
import { readProtection, writeProtection } from '../store/protection.js';
import { StoreKeyring, type KeyringOptions } from './keyring.js';
import { protectEnable } from './protect.js';
import { sameWrapperKey } from '../store/envelope.js';
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

/** where the catalog of an external-mode KMS lives when none is configured */
export function defaultCatalog(kmsUri: string): string {
  const home = process.env.KEYPORT_HOME ?? join(homedir(), '.keyport');
  const id = createHash('sha256').update(redactUri(kmsUri)).digest('hex').slice(0, 16);
  return `sqlite:${join(home, 'catalogs', `${id}.db`)}`;
}

export interface OpenOptions extends KeyringOptions {
  /** called when opening changes the store (e.g. envelope enabled on open) */
  onNotice?: (msg: string) => void;
}

export async function openKeyring(target: string | StoreConfig, opts: OpenOptions = {}): Promise<StoreKeyring> {
  let cfg: StoreConfig;
  if (typeof target !== 'string') {
    const r = StoreConfigSchema.safeParse(target);
    if (!r.success)
      throw err('INVALID_INPUT', `store config: ${r.error.issues[0]!.path.join('.') || 'document'}: ${r.error.issues[0]!.message}`);
    cfg = r.data;
  } else if (isYamlPath(target)) cfg = loadStoreConfig(target);
  else {
    const u = parseUri(target);
    cfg = isKmsScheme(u.scheme) ? { store: defaultCatalog(target), external: { kms: target } } : { store: target };
  }
  if (!isYamlPath(cfg.store) && isKmsScheme(parseUri(cfg.store).scheme) && !cfg.external)
    cfg = { ...cfg, store: defaultCatalog(cfg.store), external: { kms: cfg.store } };
  const store = await openRecordStore(cfg.store);
  const kr = new StoreKeyring(store, {
    ...opts,
    ...(cfg.cache?.ttl !== undefined ? { cacheTtlMs: parseDuration(cfg.cache.ttl, 'cache.ttl') } : {}),
    ...(cfg.cache?.unused !== undefined ? { cacheUnusedMs: parseDuration(cfg.cache.unused, 'cache.unused') } : {}),
  });
  try {
    const cur = await readProtection(store);
    if (cfg.external) {
      if (cur.mode === 'clear') {
        const first = await store.list({ limit: 1 });
        if (first.names.length)
          throw err(
            'CONFLICT',
            `${redactUri(cfg.store)} already holds keys of its own: use an empty catalog for external mode, or 'keyport migrate' to move keys into the KMS`,
            { retryable: false },
          );
        await writeProtection(store, { mode: 'external', kms: cfg.external.kms });
      } else if (cur.mode !== 'external' || cur.kms !== cfg.external.kms)
        throw err('CONFLICT', `${redactUri(cfg.store)} is not a catalog of ${redactUri(cfg.external.kms)}`, { retryable: false });
    } else if (cfg.envelope) {
      if (cur.mode === 'clear') {
        const r = await protectEnable(kr, cfg.envelope.wrapper);
        // a new, empty store is simply created protected: only sealing existing keys is news
        if (r.changed)
          opts.onNotice?.(`envelope protection enabled on open: ${r.changed} key(s) sealed under ${redactUri(cfg.envelope.wrapper)}`);
      } else if (cur.mode === 'envelope' && cur.wrapper !== cfg.envelope.wrapper && sameWrapperKey(cur.wrapper, cfg.envelope.wrapper)) {
        // the same wrapper key reached another way (new endpoint, port or credentials): follow the config,
        // once the new address is shown to work (wrong credentials must not rewrite the store)
        await kr.wrappers.check(cfg.envelope.wrapper);
        await writeProtection(store, { mode: 'envelope', wrapper: cfg.envelope.wrapper });
        kr.invalidate();
      } else if (cur.mode === 'envelope' && cur.wrapper !== cfg.envelope.wrapper)
        throw err(
          'CONFLICT',
          `store is protected by ${redactUri(cur.wrapper)}, not the configured wrapper: run 'keyport protect rotate' to change it`,
          { retryable: false },
        );
    }
  } catch (e) {
    await kr.close().catch(() => undefined);
    if (isKeyportError(e)) throw e;
    throw e;
  }
  return kr;
}
