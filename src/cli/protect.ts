/** `keyport protect enable|disable|rotate`: Canton's envelope protection of a store's private keys. */
import type { Command } from 'commander';
import { dirname } from 'node:path';
import { printJson } from './output.js';
import { EXIT_INTERRUPTED, confirm, connectionOptions, interruptible, kmsConnections, progressBar, storeTarget } from './common.js';

interface ProtectOpts {
  store?: string;
  kms?: string[];
  wrapper?: string;
  json?: boolean;
  yes?: boolean;
}

export function register(program: Command): void {
  const p = program
    .command('protect')
    .description("envelope-encrypt a store's secret keys under a KMS wrapper key (Canton encrypted private key storage)");
  for (const op of ['enable', 'disable', 'rotate'] as const) {
    const c = p
      .command(op)
      .description(
        op === 'enable'
          ? 'seal every clear key under the wrapper key (one transaction where the store has them)'
          : op === 'disable'
            ? 'decrypt every sealed key back to clear'
            : 're-wrap every key under a new wrapper key (the old one is kept; retire it yourself)',
      )
      .option('-s, --store <store>', 'store URI or YAML file [env: KEYPORT_STORE]')
      .option('--json', 'machine-readable output');
    connectionOptions(c, false);
    if (op !== 'disable')
      c.requiredOption(
        '-w, --wrapper <kms-key-uri>',
        'wrapper key URI, e.g. local:/var/lib/keyport/wrapper.key or awskms:…;key-id=alias/x',
      );
    else {
      c.option('-w, --wrapper <kms-key-uri>', "connection to the store's wrapper key (the store keeps only its reference)");
      c.option('-y, --yes', 'do not ask for confirmation (asked only on a terminal)');
    }
    c.action(async (o: ProtectOpts) => {
      // parsed once, here: the store (or YAML) and the new wrapper; the layers below take the typed values
      const { parseTarget, targetString } = await import('../keys/target.js');
      const { KmsAddress } = await import('../kms/address.js');
      const target = parseTarget(storeTarget(o), { what: '--store' });
      const wrapper = op !== 'disable' ? KmsAddress.parse(o.wrapper!, { what: '--wrapper' }) : undefined;
      if (op === 'disable') await confirm(`decrypt every sealed key in ${targetString(target)} back to clear?`, o.yes, 'nothing changed');
      const { openKeyring, loadStoreConfig } = await import('../keys/open.js');
      const prot = await import('../keys/protect.js');
      // the store as configured, but without enabling anything on open: this command does the protecting.
      // A YAML's relative paths mean beside it; the command line's, the current directory.
      const cfg = target.kind === 'yaml' ? loadStoreConfig(target.path) : undefined;
      const base = target.kind === 'yaml' ? dirname(target.path) : undefined;
      const fromYaml = (a: string, what: string) => KmsAddress.parse(a, { ...(base ? { base } : {}), what });
      const kms = [
        ...(cfg?.kms ?? []).map((a) => fromYaml(a, 'kms')),
        ...(cfg?.envelope ? [fromYaml(cfg.envelope.wrapper, 'envelope.wrapper')] : []),
        ...kmsConnections(op === 'disable' ? o : { kms: o.kms }),
      ];
      // protecting changes a store that is there: a missing one is an error, never a new store
      const kr = await openKeyring(cfg ? { store: cfg.store, ...(cfg.cache ? { cache: cfg.cache } : {}) } : target, {
        kms,
        create: false,
        ...(base ? { base } : {}),
      });
      const bar = await progressBar(`protect ${op}`, undefined, o.json);
      const stop = interruptible(`keyport protect ${op}`, 'stopping after the keys in flight; run the same command again to finish');
      try {
        const progress = (n: number) => bar.update(n);
        const r =
          op === 'enable'
            ? await prot.protectEnable(kr, wrapper!, progress, stop.signal)
            : op === 'disable'
              ? await prot.protectDisable(kr, progress, stop.signal)
              : await prot.protectRotate(kr, wrapper!, progress, stop.signal);
        bar.stop();
        if (r.interrupted) {
          process.exitCode = EXIT_INTERRUPTED;
          const where = r.changed
            ? `${r.changed} key(s) rewritten, the rest not yet; the store still says ${r.protection.mode}`
            : 'nothing changed';
          if (o.json) printJson({ changed: r.changed, unchanged: r.unchanged, protection: r.protection.mode, interrupted: true });
          else process.stdout.write(`interrupted: ${where}; run the same command again to finish\n`);
          return;
        }
        const mode = r.protection.mode === 'envelope' ? `envelope under ${r.protection.wrapper}` : r.protection.mode;
        if (o.json)
          printJson({
            changed: r.changed,
            unchanged: r.unchanged,
            protection: r.protection.mode,
            ...(r.protection.mode === 'envelope' ? { wrapper: r.protection.wrapper } : {}),
          });
        else process.stdout.write(`${r.changed} key(s) rewritten, ${r.unchanged} already done; store is now ${mode}\n`);
      } catch (e) {
        bar.stop();
        throw e;
      } finally {
        stop.release();
        await kr.close().catch(() => undefined);
      }
    });
  }
}
