/** `keyport doctor STORE`: what is wrong with a KMS / wrapper key and how to fix it (exit 1 if anything). */
import type { Command } from 'commander';
import { printJson, printTable } from './output.js';

export function register(program: Command): void {
  program
    .command('doctor')
    .description(
      'check a store, KMS or KMS key URI: reachability and latency, records, protection, the wrapper key, key types, permissions; exit 1 when anything is wrong',
    )
    .argument('<store>', 'store URI or YAML, KMS URI, or KMS key URI, e.g. sqlite:keys.db or awskms:region=eu-west-1;key-id=alias/wrapper')
    .option('--json', 'one JSON object: {uri, kms, keyId?, ok, checks}')
    .action(async (store: string, o: { json?: boolean }) => {
      const { err } = await import('../errors.js');
      const { parseUri } = await import('../config/uri.js');
      const { isKmsScheme, KMS_SCHEMES } = await import('../kms/registry.js');
      const { isStoreScheme, STORE_SCHEMES } = await import('../store/open.js');
      const { isYamlPath } = await import('../keys/open.js');
      const scheme = isYamlPath(store) ? 'yaml' : parseUri(store).scheme;
      let r;
      if (scheme === 'yaml' || isStoreScheme(scheme)) r = await (await import('../keys/doctor.js')).doctorStore(store);
      else if (isKmsScheme(scheme)) r = await (await import('../kms/doctor.js')).doctorKms(store);
      else
        throw err(
          'USAGE',
          `'${scheme}:' is neither a key store nor a KMS: use one of ${[...STORE_SCHEMES, ...KMS_SCHEMES].map((x) => x + ':').join(', ')}`,
        );
      if (o.json) printJson(r);
      else {
        printTable(
          r.checks.map((c) => ({ check: c.check, status: c.status.toUpperCase(), detail: c.detail, fix: c.fix ?? '' })),
          ['check', 'status', 'detail', 'fix'],
        );
        process.stdout.write(
          `\n${r.uri}: ${r.ok ? 'no problems found' : `${r.checks.filter((c) => c.status === 'problem').length} problem(s)`}\n`,
        );
      }
      process.exitCode = r.ok ? 0 : 1;
    });
}
