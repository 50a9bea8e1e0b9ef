/**
 * A KES server config file as a keyport store: its `keystore` section decides the store, as `kes migrate
 * --from/--to` and `kes server --config` read it (KES v0.24 kesconf). Accepted wherever a store is given.
 *
 *   keystore.fs.path                         → kes-fs:PATH (relative to the config file's directory)
 *   keystore.aws.secretsmanager              → awssm:region=…;endpoint=…[;kms-key-id=…] in KES's layout (KES's own
 *     {endpoint, region, kmskey,               secret format, so KES and keyport read each other's secrets);
 *      credentials: {accesskey, secretkey,     credentials, when the file has them, are passed on as the store's
 *      token}}                                 credentials (redacted wherever the store address is shown)
 *   keystore.keyport: {store, envelope?, external?}   keyport's own extension of the KES config
 * A value that is all `${VAR}` is read from the environment, as KES does. Every other KES keystore (vault,
 * gcp, azure, fortanix, gemalto, entrust, kes) is refused in one line naming it.
 */
import { dirname, resolve } from 'node:path';
import { err } from '../errors.js';

export interface KesStoreConfig {
  store: string;
  envelope?: { wrapper: string };
  external?: { kms: string };
}

const KNOWN_UNSUPPORTED = ['vault', 'gcp', 'azure', 'fortanix', 'gemalto', 'entrust', 'kes'];

/** is this parsed YAML document a KES server config (a `keystore` section, no keyport `store`)? */
export function isKesConfig(doc: unknown): doc is Record<string, unknown> {
  return typeof doc === 'object' && doc !== null && !Array.isArray(doc) && 'keystore' in doc && !('store' in doc);
}

const obj = (v: unknown): Record<string, unknown> | undefined =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;

/** KES's env[string]: a scalar; `${VAR}` (the whole value) is the variable's value */
function envStr(v: unknown, where: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') throw err('INVALID_INPUT', `${where}: expected a string`);
  const s = String(v).trim();
  const m = /^\$\{(.*)\}$/.exec(s);
  return m ? (process.env[m[1]!.trim()] ?? '') : s;
}

/** one URI attribute value: ';' and '=' would end it, '%' starts an escape */
const attr = (v: string) => v.replace(/[%;=]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/** The store a KES config's `keystore` section names. `file` is the config's path (for messages and relative paths). */
export function kesKeystoreToStoreConfig(keystore: unknown, file: string, base = dirname(resolve(file))): KesStoreConfig {
  const ks = obj(keystore);
  const where = `${file}: keystore`;
  if (!ks) throw err('INVALID_INPUT', `${where}: expected a section naming one keystore (fs, aws, …)`);
  const present = Object.keys(ks).filter((k) => ks[k] !== null && ks[k] !== undefined);
  if (present.length === 0) throw err('INVALID_INPUT', `${where}: no keystore specified`);
  if (present.length > 1) throw err('INVALID_INPUT', `${where}: more than one keystore specified (${present.join(', ')})`);
  const kind = present[0]!;
  switch (kind) {
    case 'fs': {
      const path = envStr(obj(ks['fs'])?.['path'], `${where}.fs.path`);
      if (!path) throw err('INVALID_INPUT', `${where}.fs: no path specified`);
      return { store: `kes-fs:${resolve(base, path)}` };
    }
    case 'aws': {
      const sm = obj(obj(ks['aws'])?.['secretsmanager']);
      if (!sm) throw err('INVALID_INPUT', `${where}.aws: only secretsmanager is a KES AWS keystore`);
      const w = `${where}.aws.secretsmanager`;
      let endpoint = envStr(sm['endpoint'], `${w}.endpoint`);
      const region = envStr(sm['region'], `${w}.region`);
      if (!endpoint) throw err('INVALID_INPUT', `${w}: no endpoint specified`);
      if (!region) throw err('INVALID_INPUT', `${w}: no region specified`);
      // KES (aws-sdk-go) takes a bare host name as https
      if (!/^https?:\/\//i.test(endpoint)) endpoint = `https://${endpoint}`;
      const parts = [`region=${attr(region)}`, `endpoint=${attr(endpoint)}`];
      const kmsKey = envStr(sm['kmskey'], `${w}.kmskey`);
      if (kmsKey) parts.push(`kms-key-id=${attr(kmsKey)}`);
      const cred = obj(sm['credentials']) ?? {};
      const ak = envStr(cred['accesskey'], `${w}.credentials.accesskey`);
      const sk = envStr(cred['secretkey'], `${w}.credentials.secretkey`);
      const token = envStr(cred['token'], `${w}.credentials.token`);
      if (ak || sk) {
        if (!ak || !sk) throw err('INVALID_INPUT', `${w}.credentials: give both accesskey and secretkey, or neither`);
        parts.push(`access-key-id=${attr(ak)}`, `secret-access-key=${attr(sk)}`);
        if (token) parts.push(`session-token=${attr(token)}`);
      }
      return { store: `awssm:${parts.join(';')}` };
    }
    case 'keyport': {
      const k = obj(ks['keyport']);
      const store = envStr(k?.['store'], `${where}.keyport.store`);
      if (!store) throw err('INVALID_INPUT', `${where}.keyport: no store specified`);
      const wrapper = envStr(obj(k?.['envelope'])?.['wrapper'], `${where}.keyport.envelope.wrapper`);
      const kms = envStr(obj(k?.['external'])?.['kms'], `${where}.keyport.external.kms`);
      return { store, ...(wrapper ? { envelope: { wrapper } } : {}), ...(kms ? { external: { kms } } : {}) };
    }
    default:
      throw err(
        'UNSUPPORTED',
        KNOWN_UNSUPPORTED.includes(kind)
          ? `${where}: the KES '${kind}' keystore is not one keyport opens: use fs, aws (secretsmanager) or keyport`
          : `${where}: unknown keystore '${kind}': use fs, aws (secretsmanager) or keyport`,
      );
  }
}
