/**
 * Drivers registered by URI scheme (the smallstep model). Each entry is imported lazily so that
 * `keyport --help` never loads a cloud SDK. A driver module exports `factory: DriverFactory`.
 */
import { err } from '../errors.js';
import { parseUri, redactUri, type ParsedUri } from '../config/uri.js';
import type { Driver, DriverFactory } from './driver.js';

/** scheme -> folder under src/kms holding an index module that exports `factory` */
const BUILTIN: Record<string, string> = {
  local: 'local',
  awskms: 'aws',
  gcpkms: 'gcp',
  azurekv: 'azure',
  pkcs11: 'pkcs11',
  kmip: 'kmip',
  driver: 'plugin',
};

// a computed specifier keeps every SDK out of the startup path and lets a build ship without a driver
const load = (folder: string): Promise<{ factory: DriverFactory }> => import(`./${folder}/index.js`);

export const KMS_SCHEMES = Object.keys(BUILTIN);

export function isKmsScheme(scheme: string): boolean {
  return scheme in BUILTIN;
}

/** Open a driver for a KMS URI (without key-id). */
export async function openDriver(uri: string | ParsedUri): Promise<Driver> {
  const u = typeof uri === 'string' ? parseUri(uri) : uri;
  const folder = BUILTIN[u.scheme];
  if (!folder) throw err('USAGE', `'${u.scheme}:' is not a KMS: use one of ${KMS_SCHEMES.map((s) => s + ':').join(', ')}`);
  let mod: { factory: DriverFactory };
  try {
    mod = await load(folder);
  } catch (e) {
    throw err('UNSUPPORTED', `the ${u.scheme} driver is not available in this build (${(e as Error).message.split('\n')[0]})`);
  }
  const params = { ...u.params };
  if (u.path !== undefined && params['path'] === undefined) params['path'] = u.path;
  return mod.factory(params, redactUri(u.raw));
}
