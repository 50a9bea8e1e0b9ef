/**
 * `keyport node rotate|canton-config|iam-policy|compat`: operating a Canton node keyport prepared (rotation,
 * what the operator pastes into Canton and AWS IAM, compatibility between nodes). Registered on the `node`
 * command by src/cli/node.ts.
 */
import { type Command, Option } from 'commander';
import type { StoreKeyring } from '../keys/keyring.js';
import { printJson, printTable } from './output.js';
import { connectionOptions, kmsConnections, storeTarget, type StoreOpts } from './common.js';

interface OpsOpts extends StoreOpts {
  role?: string;
  toKeyId?: string;
  certDir?: string;
  region?: string;
}

async function withStore<T>(o: StoreOpts, fn: (kr: StoreKeyring) => Promise<T>, access: { readOnly?: boolean } = {}): Promise<T> {
  const { openKeyring } = await import('../keys/open.js');
  // operating a node needs its store there: a missing one is an error, never a new store; commands that
  // only read (canton-config, iam-policy, compat) pass READ, so their open writes nothing (common.ts OpenAccess)
  const kr = await openKeyring(storeTarget(o), {
    create: false,
    readOnly: access.readOnly === true,
    kms: kmsConnections(o),
    onNotice: (m) => process.stderr.write(`keyport: ${m}\n`),
  });
  try {
    return await fn(kr);
  } finally {
    await kr.close().catch(() => undefined);
  }
}

const READ = { readOnly: true } as const;

// the store keeps key references: the KMS (region, endpoint, credentials) is reached through connections given here
const storeOpt = (c: Command) =>
  connectionOptions(
    c
      .option('-s, --store <store>', "the node's key store or KMS: URI or YAML file [env: KEYPORT_STORE]")
      .option('--json', 'machine-readable output'),
  );

export function registerNodeOps(node: Command): void {
  storeOpt(
    node
      .command('rotate <name>')
      .description(
        "new keys for a node's roles (same store or KMS, or a pre-generated KMS key) and a new OwnerToKeyMapping (serial + 1); old " +
          'versions keep verifying and decrypting',
      )
      .addOption(
        new Option('--role <role>', 'which keys').choices(['signing', 'sequencer-auth', 'protocol', 'encryption', 'all']).default('all'),
      )
      .option('--to-key-id <id>', 'rotate to this pre-generated KMS key (id, ARN, alias or label; checked against the role)'),
  ).action(async (name: string, o: OpsOpts) => {
    const r = await withStore(o, async (kr) => {
      const { rotateNode } = await import('../canton/node/rotate.js');
      return rotateNode(kr, name, { role: o.role as never, ...(o.toKeyId !== undefined ? { toKeyId: o.toKeyId } : {}) });
    });
    if (o.json) printJson({ node: name, rotated: r.rotated, ...(r.serial ? { ownerToKeyMappingSerial: r.serial } : {}) });
    else {
      for (const k of r.rotated)
        process.stdout.write(`rotated ${k.role} key '${k.key}' v${k.fromVersion} -> v${k.toVersion} ${k.fingerprint}\n`);
      if (r.serial)
        process.stdout.write(`new OwnerToKeyMapping serial ${r.serial}: keyport node export ${name} --out DIR, then load it in Canton\n`);
    }
  });

  storeOpt(
    node
      .command('canton-config <name>')
      .description(
        "the node's Canton config (crypto provider kms and its KMS block, manual init) and the console commands that register its keys and identity",
      )
      .option('--cert-dir <dir>', 'where `keyport node export` put the certificates (for the console commands)', 'CERT-DIR'),
  ).action(async (name: string, o: OpsOpts) => {
    const out = await withStore(
      o,
      async (kr) => {
        const { loadNode } = await import('../canton/node/registry.js');
        const { cantonConfig } = await import('../canton/node/canton-config.js');
        return cantonConfig(kr, await loadNode(kr, name), { certDir: o.certDir ?? 'CERT-DIR' });
      },
      READ,
    );
    if (o.json) printJson(out);
    else {
      process.stdout.write(`# Canton config for node '${name}' (HOCON)\n${out.config}\n\n// Canton console\n${out.console}\n`);
      for (const n of out.notes) process.stdout.write(`# note: ${n}\n`);
    }
  });

  storeOpt(
    node
      .command('iam-policy <name>')
      .description("the minimal AWS IAM policy for the node's KMS keys (Canton's actions narrowed to its keys; nothing keyport adds)")
      .option('--region <region>', 'the region for key ARNs keyport cannot read from AWS KMS'),
  ).action(async (name: string, o: OpsOpts) => {
    const policy = await withStore(
      o,
      async (kr) => {
        const { loadNode } = await import('../canton/node/registry.js');
        const { locateNodeKeys, iamPolicy } = await import('../canton/node/canton-config.js');
        const keys = await locateNodeKeys(kr, await loadNode(kr, name));
        const arns = new Map<string, string>();
        let region = o.region;
        for (const k of keys) {
          if (k.kms?.scheme !== 'awskms' || !k.keyId || k.keyId.startsWith('arn:')) continue;
          region ??= k.connection?.driverParams()['region'];
          // the exact ARN (account included) from DescribeKey, which the node needs anyway
          const d = await kr.kmsDriver(k.kmsUri!);
          const desc = d.describeKey ? await d.describeKey(k.keyId).catch(() => undefined) : undefined;
          if (desc?.arn) arns.set(k.keyId, desc.arn);
        }
        return iamPolicy(keys, region ?? process.env['AWS_REGION'] ?? '*', arns);
      },
      READ,
    );
    // a policy document is JSON either way
    printJson(policy);
  });

  storeOpt(
    node
      .command('compat [names...]')
      .description(
        "check nodes against each other and their KMSs: key schemes, what each KMS holds, Canton's provider rule; prints the jce config non-KMS nodes need",
      )
      .option('--peer <store...>', 'also every node of these stores (nodes kept in another store or KMS)'),
  ).action(async (names: string[], o: OpsOpts & { peer?: string[] }) => {
    const r = await withStore(
      o,
      async (kr) => {
        const { openKeyring } = await import('../keys/open.js');
        const peers: StoreKeyring[] = [];
        try {
          // a read-only command opens what exists and creates nothing
          for (const p of o.peer ?? []) peers.push(await openKeyring(p, { create: false, readOnly: true }));
          return await (await import('../canton/node/compat.js')).compatReport(kr, names ?? [], peers);
        } finally {
          for (const p of peers) await p.close().catch(() => undefined);
        }
      },
      READ,
    );
    if (o.json) printJson(r);
    else {
      printTable(
        r.nodes.map((n) => ({
          node: n.node,
          profile: n.profile,
          provider: n.provider + (n.kms ? ` (${n.kms})` : ''),
          signing: n.signing.join(' '),
          encryption: n.encryption.join(' ') || '-',
          'kms holds': n.supports ? `${n.supports.signing.join('/')} sign, ${n.supports.encryption.join('/') || 'no'} enc` : '-',
        })),
        ['node', 'profile', 'provider', 'signing', 'encryption', 'kms holds'],
      );
      for (const p of r.problems) process.stdout.write(`PROBLEM: ${p}\n`);
      for (const j of r.jceConfig)
        process.stdout.write(`\n# ${j.node} is not on a KMS: restrict its jce provider to the KMS nodes' schemes\n${j.config}\n`);
      for (const n of r.notes) process.stdout.write(`# note: ${n}\n`);
      process.stdout.write(r.ok ? '\ncompatible\n' : `\n${r.problems.length} problem(s)\n`);
    }
    if (!r.ok) process.exitCode = 1;
  });
}
