/** `keyport protect enable|disable|rotate`: Canton's envelope protection of a store's private keys. */
import type { Command } from 'commander';
import { redactUri } from '../config/uri.js';
import { printJson } from './output.js';
import { progressBar, storeTarget } from './common.js';

interface ProtectOpts {
  store?: string;
  wrapper?: string;
  json?: boolean;
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
    if (op !== 'disable')
      c.requiredOption(
        '-w, --wrapper <kms-key-uri>',
        'wrapper key URI, e.g. local:/var/lib/keyport/wrapper.key or awskms:…;key-id=alias/x',
      );
    else c.option('-w, --wrapper <kms-key-uri>', 'ignored (the wrapper is recorded in the store)');
    c.action(async (o: ProtectOpts) => {
      const target = storeTarget(o);
      const { openRecordStore } = await import('../store/open.js');
      const { StoreKeyring } = await import('../keys/keyring.js');
      const { isYamlPath, loadStoreConfig } = await import('../keys/open.js');
      const prot = await import('../keys/protect.js');
      const store = await openRecordStore(isYamlPath(target) ? loadStoreConfig(target).store : target);
      const kr = new StoreKeyring(store);
      const bar = await progressBar(`protect ${op}`, undefined, o.json);
      try {
        const progress = (n: number) => bar.update(n);
        const r =
          op === 'enable'
            ? await prot.protectEnable(kr, o.wrapper!, progress)
            : op === 'disable'
              ? await prot.protectDisable(kr, progress)
              : await prot.protectRotate(kr, o.wrapper!, progress);
        bar.stop();
        const mode = r.protection.mode === 'envelope' ? `envelope under ${redactUri(r.protection.wrapper)}` : r.protection.mode;
        if (o.json)
          printJson({
            changed: r.changed,
            unchanged: r.unchanged,
            protection: r.protection.mode,
            ...(r.protection.mode === 'envelope' ? { wrapper: redactUri(r.protection.wrapper) } : {}),
          });
        else process.stdout.write(`${r.changed} key(s) rewritten, ${r.unchanged} already done; store is now ${mode}\n`);
      } catch (e) {
        bar.stop();
        throw e;
      } finally {
        await kr.close().catch(() => undefined);
      }
    });
  }
}
