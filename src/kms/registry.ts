/**
 * Drivers registered by URI scheme (the smallstep model). Each entry is imported lazily so that
 * `keyport --help` never loads a cloud SDK. A driver module exports `factory: DriverFactory`.
 */
import { err } from '../errors.js';
import { parseUri, redactUri, type ParsedUri } from '../config/uri.js';
import type { Driver, DriverFactory } from './driver.js';

type Loader = () => Promise<{ factory: DriverFactory }>;

const BUILTIN: Record<string, Loader> = {
  local: () => import('./local/index.js'),
  awskms: () => import('./aws/index.js'),
  gcpkms: () => import('./gcp/index.js'),
  azurekv: () => import('./azure/index.js'),
  pkcs11: () => import('./pkcs11/index.js'),
  kmip: () => import('./kmip/index.js'),
  driver: () => import('./plugin/index.js'),
};

export const KMS_SCHEMES = Object.keys(BUILTIN);

export function isKmsScheme(scheme: string): boolean {
  return scheme in BUILTIN;
}

/** Open a driver for a KMS URI (without key-id). */
export async function openDriver(uri: string | ParsedUri): Promise<Driver> {
  const u = typeof uri === 'string' ? parseUri(uri) : uri;
  const load = BUILTIN[u.scheme];
  if (!load) throw err('USAGE', `'${u.scheme}:' is not a KMS: use one of ${KMS_SCHEMES.map((s) => s + ':').join(', ')}`);
  let mod: { factory: DriverFactory };
  try {
    mod = await load();
  } catch (e) {
    throw err('UNSUPPORTED', `the ${u.scheme} driver is not available in this build (${(e as Error).message.split('\n')[0]})`);
  }
  const params = { ...u.params };
  if (u.path !== undefined && params['path'] === undefined) params['path'] = u.path;
  return mod.factory(params, redactUri(u.raw));
}
