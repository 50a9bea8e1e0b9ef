/** `keyport migrate`: move keys between any two stores or KMSs (the job of `kes migrate`, done safely). */
import { type Command, Option } from 'commander';
import { err } from '../errors.js';
import { printJson } from './output.js';
import { EXIT_INTERRUPTED, collectKms, interruptible, kmsConnections, progressBar } from './common.js';

/** exit code of a migration that finished with same-name keys of other material left untouched (`--merge`) */
export const EXIT_CONFLICTS_LEFT = 3;
interface MigrateCliOpts {
  kms?: string[];
  from: string;
  to?: string;
  target?: string;
  force?: boolean;
  merge?: boolean;
  dryRun?: boolean;
  verify: boolean;
  rekey?: boolean;
  concurrency: string;
  journal?: string;
  allowClear?: boolean;
  json?: boolean;
  all?: boolean;
  keepJournal?: boolean;
}

export function register(program: Command): void {
  program
    .command('migrate [pattern]')
    .description('move keys (all, a glob, or one name) between stores and KMSs: planned first, verified after, resumable')
    .requiredOption('--from <store>', 'source: store URI, store YAML, or a KES server config (its keystore section)')
    .option('--to <store>', 'target: store URI, store YAML, or a KES server config (its keystore section)')
    .addOption(new Option('--target <store>', 'the same as --to').hideHelp())
    .addOption(new Option('-f, --force', 'replace keys the target already has (atomically)').conflicts('merge'))
    .addOption(new Option('--merge', 'add only what the target lacks; same-material keys are skipped').conflicts('force'))
    .option('--dry-run', 'print the plan and write nothing')
    .option('--no-verify', 'skip the fingerprint and cryptographic round-trip checks')
    .option('--rekey', 'where the source cannot export (a KMS key), create a new key at the target with a signed delegation')
    .option('--concurrency <n>', 'keys in flight', '16')
    .option('--journal <path>', 'journal file (default: beside the target); removed when the run finishes cleanly')
    .option('--keep-journal', 'keep the journal of a finished run (a re-run then knows the target keys are its own)')
    .option('--allow-clear', 'allow keys from a protected (envelope or KMS) source to be written in the clear at a clear target')
    .option('--json', 'one JSON report, no progress bar')
    .option('--kms <kms-uri>', 'connection to a KMS or wrapper key either store references (repeatable) [env: KEYPORT_KMS]', collectKms)
    .option('--all', 'with --dry-run: list every plan entry, not the first 50')
    .addHelpText(
      'after',
      `\nExit status: 0 done; ${EXIT_CONFLICTS_LEFT} done with --merge, but same-name keys of different material were left untouched at ` +
        `the target (listed on stderr); 1 failed or refused (nothing, or not everything, migrated); 2 usage; ${EXIT_INTERRUPTED} ` +
        `interrupted (Ctrl-C or SIGTERM): the keys in flight finished or were cancelled, none is half-written, and the same ` +
        `command resumes the run (a second Ctrl-C exits at once).\nKES users: 'keyport ` +
        `migrate --from kes-a.yml --to kes-b.yml' reads KES server configs as 'kes migrate' does; --target is --to, -f is --force.`,
    )
    .action(async (pattern: string | undefined, o: MigrateCliOpts) => {
      if (o.to !== undefined && o.target !== undefined) throw err('USAGE', 'give the target once: --to or --target');
      const to = o.to ?? o.target;
      if (to === undefined) throw err('USAGE', "required option '--to <store>' not specified");
      // --all lists a dry run's whole plan; it never widens a real run (a pattern picks keys; none means all)
      if (o.all && !o.dryRun) throw err('USAGE', '--all only lists the whole plan of a --dry-run: without --dry-run nothing is listed');
      const conc = Number(o.concurrency);
      if (!Number.isInteger(conc) || conc < 1 || conc > 1024) throw err('USAGE', `--concurrency must be 1-1024, got '${o.concurrency}'`);
      const { migrate } = await import('../migrate/index.js');
      // both sides parsed once, here; the migration takes the typed targets
      const { parseTarget } = await import('../keys/target.js');
      const fromT = parseTarget(o.from, { what: '--from' });
      const toT = parseTarget(to, { what: '--to' });
      const plan = await progressBar('planning', undefined, o.json);
      let bar: Awaited<ReturnType<typeof progressBar>> | undefined;
      const stop = o.dryRun
        ? undefined
        : interruptible('keyport migrate', 'stopping after the keys in flight; run the same command again to resume');
      const report = await migrate({
        from: fromT,
        to: toT,
        pattern,
        mode: o.force ? 'force' : o.merge ? 'merge' : 'default',
        dryRun: o.dryRun,
        verify: o.verify,
        rekey: o.rekey,
        concurrency: conc,
        journal: o.journal,
        allowClear: o.allowClear,
        kms: kmsConnections(o),
        keepJournal: o.keepJournal === true,
        ...(stop ? { signal: stop.signal } : {}),
        onNotice: (m) => process.stderr.write(`keyport: ${m}\n`),
        onProgress: (phase, done, total) => {
          if (phase === 'plan') return plan.update(done);
          if (!bar) {
            plan.stop();
            void progressBar('migrating', total, o.json).then((b) => (bar = b));
          }
          bar?.update(done, total);
        },
      }).finally(() => {
        stop?.release();
        plan.stop();
        bar?.stop();
      });
      if (report.clearTarget && !o.json)
        process.stderr.write(
          `keyport: --allow-clear: ${report.dryRun ? `${report.planned} key(s) would be` : `${report.migrated} key(s) were`} written in ` +
            `the clear at ${report.to}; at the source they are protected (${report.clearTarget.sourceProtection} under ${report.clearTarget.via})\n`,
        );
      const bad = report.conflicts.length + report.failed.length + report.refused.length;
      if (o.json) {
        const { plan: p, ...rest } = report;
        // the plan in words (the journal keeps its compact n/a/s/f/r form)
        const words = (p ?? []).map((e) => ({
          name: e.n,
          action: e.a,
          ...(e.s ? { strategy: e.s } : {}),
          ...(e.f ? { replace: true } : {}),
          ...(e.r ? { reason: e.r } : {}),
        }));
        printJson(o.dryRun ? { ...rest, plan: words } : rest);
      } else {
        const w = (s: string) => process.stdout.write(s + '\n');
        if (report.dryRun) {
          w(
            `plan (dry run, nothing written): ${report.planned} to migrate (${
              Object.entries(report.strategies)
                .filter(([, n]) => n)
                .map(([s, n]) => `${s} ${n}`)
                .join(', ') || 'none'
            }), ${report.skipped} already there`,
          );
          const entries = report.plan ?? [];
          const shown = o.all ? entries : entries.slice(0, 50);
          for (const e of shown) w(`  ${e.a.padEnd(8)} ${e.n}${e.s ? ` (${e.s}${e.f ? ', replace' : ''})` : ''}${e.r ? `: ${e.r}` : ''}`);
          const total = report.planned + report.skipped + report.conflicts.length + report.refused.length;
          const more = Math.max(entries.length, total) - shown.length;
          if (more > 0)
            w(
              `  … and ${more} more entr${more === 1 ? 'y' : 'ies'} (--all lists ` +
                `${entries.length < total ? `the first ${entries.length}` : 'them all'}; --json gives the plan as JSON)`,
            );
        } else if (report.alreadyFinished)
          w(`this migration already finished: ${report.skipped} key(s) already at the target, nothing to do`);
        else
          w(
            `${report.interrupted ? 'interrupted: ' : ''}` +
              `${report.migrated} migrated, ${report.verified} verified, ${report.skipped} skipped${report.resumed ? ' (resumed)' : ''} ` +
              `in ${report.durationMs < 1000 ? `${Math.round(report.durationMs)} ms` : `${(report.durationMs / 1000).toFixed(1)} s`} ` +
              `(${report.keysPerSecond.toFixed(0)} keys/s)` +
              (report.interrupted
                ? `; ${report.cancelled ? `${report.cancelled} key(s) of the batch in progress cancelled, ` : ''}` +
                  'the rest not started: run the same command again to resume'
                : ''),
          );
        // refusals, conflicts and failures are for stderr: stdout keeps the report
        const e = (s: string) => process.stderr.write(s + '\n');
        if (report.conflicts.length)
          e(
            `conflicts (${report.conflicts.length}, ` +
              `untouched${!o.merge && !o.force && !report.dryRun ? '; nothing was written: use --merge or --force' : ''}): ` +
              `${report.conflicts.slice(0, 20).join(', ')}${report.conflicts.length > 20 ? ', …' : ''}`,
          );
        for (const r of report.refused.slice(0, 20)) e(`refused ${r.name}: ${r.reason}`);
        for (const x of report.errors.slice(0, 20)) e(`failed ${x.name}: ${x.error}`);
        if (report.rekeyMap) w(`old → new key map and delegations: ${report.rekeyMap}`);
      }
      // with --merge, keys left untouched are the outcome asked for: their own exit code, not failure
      const leftOnly = o.merge && report.conflicts.length > 0 && report.failed.length + report.refused.length === 0;
      if (report.interrupted) process.exitCode = EXIT_INTERRUPTED;
      else if (leftOnly) process.exitCode = EXIT_CONFLICTS_LEFT;
      else if (bad) process.exitCode = 1;
    });
}
