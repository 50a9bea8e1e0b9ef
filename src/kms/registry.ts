/**
 * Drivers registered by URI scheme (the smallstep model). Each entry is imported lazily so that
 * `keyport --help` never loads a cloud SDK. A driver module exports `factory: DriverFactory`.
 * Drivers are opened only for a KmsAddress — operator configuration, validated at the edge — never for
 * a string a store kept (those are references: kms/address.ts).
 */
import { err } from '../errors.js';
import { KMS_SCHEMES, KmsAddress, isKmsScheme } from './address.js';
import type { Driver, DriverFactory } from './driver.js';

export { KMS_SCHEMES, isKmsScheme };

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

/** Open a driver for a KMS address (its key, if it names one, is not part of the connection). */
export async function openDriver(address: string | KmsAddress): Promise<Driver> {
  const a = typeof address === 'string' ? KmsAddress.parse(address) : address;
  const folder = BUILTIN[a.scheme];
  if (!folder) throw err('USAGE', `'${a.scheme}:' is not a KMS: use one of ${KMS_SCHEMES.map((s) => s + ':').join(', ')}`);
  let mod: { factory: DriverFactory };
  try {
    mod = await load(folder);
  } catch (e) {
    throw err('UNSUPPORTED', `the ${a.scheme} driver is not available in this build (${(e as Error).message.split('\n')[0]})`);
  }
  return mod.factory(a.driverParams(), a.withoutKey().toString());
}
