/** `keyport driver-test KMS-URI`: the driver conformance kit (src/kms/conformance.ts) against a KMS. */
import type { Command } from 'commander';
import { printJson, printTable } from './output.js';

interface DriverTestOpts {
  json?: boolean;
  unreachable?: string;
  badCredentials?: string;
  keep?: boolean;
  healthWait?: string;
}

export function register(program: Command): void {
  program
    .command('driver-test')
    .description('run the KMS driver conformance checks (creates keyport-conformance-* keys and deletes them)')
    .argument('<kms-uri>', 'KMS URI, e.g. local:/tmp/kms/, awskms:region=…;endpoint=…, driver:./my-driver')
    .option('--json', 'one JSON object: {uri, passed, failed, skipped, results}')
    .option('--unreachable <uri>', 'the same KMS scheme pointing at a closed port (derived from the URI when it names an endpoint)')
    .option('--bad-credentials <uri>', 'the same KMS with wrong credentials (derived when the URI carries credentials)')
    .option('--keep', 'do not delete the keys the checks created')
    .option('--health-wait <seconds>', 'how long health may take to become ok', '30')
    .action(async (uri: string, o: DriverTestOpts) => {
      const { err } = await import('../errors.js');
      const { openDriver } = await import('../kms/registry.js');
      const { redactGeneric } = await import('../kms/address.js');
      const { runConformance, summarize, assertUri } = await import('../kms/conformance.js');
      const wait = Number(o.healthWait);
      if (!Number.isFinite(wait) || wait < 0) throw err('USAGE', `--health-wait ${o.healthWait} is not a number of seconds`);
      // every address parsed once, here: the kit gets typed addresses (they print redacted)
      const addr = assertUri(uri, 'KMS URI');
      // the argument as the operator wrote it (local:DIR/ keeps its slash), credentials hidden
      const shown = redactGeneric(uri);
      const unreachable = o.unreachable ? assertUri(o.unreachable, '--unreachable') : undefined;
      const badCredentials = o.badCredentials ? assertUri(o.badCredentials, '--bad-credentials') : undefined;
      const driver = await openDriver(addr);
      const live = !o.json && process.stderr.isTTY;
      let results;
      try {
        results = await runConformance(driver, {
          uri: addr,
          ...(unreachable ? { unreachableUri: unreachable } : {}),
          ...(badCredentials ? { badCredentialsUri: badCredentials } : {}),
          cleanup: !o.keep,
          healthWaitMs: wait * 1000,
          onResult: live ? (r) => process.stderr.write(`${r.outcome.padEnd(4)} ${r.check}${r.spec ? ` ${r.spec}` : ''}\n`) : undefined,
        });
      } finally {
        await driver.close?.().catch(() => undefined);
      }
      const s = summarize(results);
      if (o.json) {
        printJson({ uri: shown, ...s, results });
      } else {
        printTable(
          results.map((r) => ({
            check: r.check,
            spec: r.spec ?? '',
            result: r.outcome.toUpperCase(),
            time: `${r.ms} ms`,
            detail: r.detail ?? '',
          })),
          ['check', 'spec', 'result', 'time', 'detail'],
        );
        process.stdout.write(`\n${shown}: ${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped\n`);
      }
      process.exitCode = s.failed ? 1 : 0;
    });
}
