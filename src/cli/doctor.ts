/** `keyport doctor STORE`: what is wrong with a KMS / wrapper key and how to fix it (exit 1 if anything). */
import type { Command } from 'commander';
import { printJson, printTable } from './output.js';
import { connectionOptions, kmsConnections } from './common.js';

export function register(program: Command): void {
  const cmd = program
    .command('doctor')
    .description(
      'check a store, KMS or KMS key URI: reachability and latency, records, protection, the wrapper key, key types, permissions; exit ' +
        '1 when anything is wrong',
    )
    .argument('<store>', 'store URI or YAML, KMS URI, or KMS key URI, e.g. sqlite:keys.db or awskms:region=eu-west-1;key-id=alias/wrapper')
    .option('--json', 'one JSON object: {uri, kms, keyId?, ok, checks}')
    .option('--max-age <duration>', 'list keys whose newest version is older than this (e.g. 90d) as due for rotation');
  // the store keeps key references: its wrapper / KMS is reached through connections given here
  connectionOptions(cmd).action(async (store: string, o: { json?: boolean; maxAge?: string; wrapper?: string; kms?: string[] }) => {
    const { err } = await import('../errors.js');
    // parsed once, here: a store, a YAML file or a KMS (key) address; unknown schemes and attributes are refused
    const { parseTarget } = await import('../keys/target.js');
    const target = parseTarget(store, { what: 'doctor' });
    let maxAgeMs: number | undefined;
    if (o.maxAge !== undefined) {
      const { parseDuration } = await import('../config/duration.js');
      maxAgeMs = parseDuration(o.maxAge, '--max-age');
      if (!(maxAgeMs > 0)) throw err('USAGE', `--max-age must be a positive duration such as 90d, got '${o.maxAge}'`);
    }
    let r;
    if (target.kind !== 'kms') r = await (await import('../keys/doctor.js')).doctorStore(target, { maxAgeMs, kms: kmsConnections(o) });
    else if (maxAgeMs !== undefined) throw err('USAGE', '--max-age checks the keys of a store: give a store, not a KMS URI');
    else r = await (await import('../kms/doctor.js')).doctorKms(target.kms);
    // the Canton nodes of the store (or of the KMS's catalog): their keys, with the permissions Canton needs
    const opened = !r.checks.some((c) => (c.check === 'store' || c.check === 'open') && c.status === 'problem');
    const nodeChecks = opened ? await (await import('../canton/node/doctor.js')).doctorNodes(target, { kms: kmsConnections(o) }) : [];
    if (nodeChecks.length) {
      r.checks.push(...nodeChecks);
      r.ok = !r.checks.some((c) => c.status === 'problem');
    }
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
