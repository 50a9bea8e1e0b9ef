/** `keyport node …`: Canton node identities (init, ls, show, export, verify, delegate, root-cert, import-certs, import). */
import { readFileSync } from 'node:fs';
import { type Command, Option } from 'commander';
import { err } from '../errors.js';
import { KEY_TYPES, type KeyType } from '../crypto/keytypes.js';
import type { StoreKeyring } from '../keys/keyring.js';
import { printJson, printTable } from './output.js';
import { registerNodeOps } from './node-ops.js';
import { connectionOptions, kmsConnections, type OpenAccess, storeTarget, writeOutput, type StoreOpts } from './common.js';

interface NodeOpts extends StoreOpts {
  profile?: string;
  identifier?: string;
  namespaceOf?: string;
  signingSpec?: KeyType;
  encryptionSpec?: KeyType;
  singleSigningKey?: boolean;
  namespaceKeyId?: string;
  signingKeyId?: string;
  sequencerAuthKeyId?: string;
  encryptionKeyId?: string;
  offlineRoot?: boolean;
  out?: string;
  bundle?: string;
  toKey?: string;
  toPublicKey?: string;
  rootKey?: string;
  restriction?: string;
  revoke?: boolean;
  history?: string[];
  as?: string;
}

/**
 * node commands need the store itself (node records live in it), not a remote server. A missing store is
 * an error (nothing is created) except for `node init` and `node import`, which put keys in (withNewStore).
 * Commands that only read pass READ: their open writes nothing (common.ts OpenAccess).
 */
async function withStore<T>(o: StoreOpts, fn: (kr: StoreKeyring) => Promise<T>, access: OpenAccess = {}): Promise<T> {
  const { openKeyring } = await import('../keys/open.js');
  const kr = await openKeyring(storeTarget(o), {
    create: access.create === true,
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

const withNewStore = <T>(o: StoreOpts, fn: (kr: StoreKeyring) => Promise<T>) => withStore(o, fn, { create: true });
const READ = { readOnly: true } as const;

// the store keeps key references: its wrapper key or KMS is reached through the connections given here
const storeOpt = (c: Command) =>
  connectionOptions(
    c.option(
      '-s, --store <store>',
      "the node's key store or KMS: URI (sqlite:keys.db, awskms:…, pkcs11:…) or YAML file [env: KEYPORT_STORE]",
    ),
  );
const jsonOpt = (c: Command) => c.option('--json', 'machine-readable output');
const specOpt = (flag: string, what: string) => new Option(flag, what).choices(KEY_TYPES as unknown as string[]);

function nodeView(n: import('../canton/node/types.js').NodeRecord, id: string) {
  return { ...n, id, topology: n.topology.map((t) => t.name) };
}

async function signerForRootKey(uri: string) {
  const { KmsAddress } = await import('../kms/address.js');
  const { openInstrumentedDriver } = await import('../kms/instrument.js');
  const { driverSigner } = await import('../canton/topology/signer.js');
  // an operator-given KMS key URI, parsed and validated once here
  const addr = KmsAddress.parse(uri, { what: 'root key' });
  const keyRef = addr.key.keyId;
  const driver = await openInstrumentedDriver(addr.withoutKey());
  const keyId = driver.resolveKeyId ? await driver.resolveKeyId(keyRef) : keyRef;
  return { signer: await driverSigner(driver, keyId), close: () => driver.close?.() };
}

export function register(program: Command): void {
  const node = program
    .command('node')
    .description('Canton node identities: key sets per node type, namespace delegation, topology certificates');

  jsonOpt(
    storeOpt(
      node
        .command('init <name>')
        .description("create a node's keys (or register pre-generated KMS keys) and the topology transactions of its identity")
        .addOption(
          new Option('--profile <profile>', 'node type')
            .choices(['participant', 'sequencer', 'mediator', 'synchronizer-manager'])
            .makeOptionMandatory(),
        )
        .option('--identifier <id>', 'Canton identifier (the part before ::; default: the node name)')
        .option('--namespace-of <node>', "live in another node's namespace (no namespace key of its own)")
        .addOption(specOpt('--signing-spec <type>', 'signing key type (default: ec-p256)'))
        .addOption(specOpt('--encryption-spec <type>', 'encryption key type (default: rsa-2048 where the store can make it)'))
        .option('--single-signing-key', 'one signing key for sequencer authentication and protocol (default: one each)')
        .option('--namespace-key-id <id>', 'manual init: pre-generated KMS key for the namespace')
        .option(
          '--signing-key-id <id>',
          'manual init: pre-generated KMS signing key (protocol; also sequencer authentication unless --sequencer-auth-key-id)',
        )
        .option('--sequencer-auth-key-id <id>', 'manual init: pre-generated KMS key for sequencer authentication')
        .option('--encryption-key-id <id>', 'manual init: pre-generated KMS encryption key')
        .option(
          '--offline-root',
          "the namespace root key is held offline: the node's namespace key is an intermediate; finish with 'node import-certs'",
        ),
    ),
  ).action(async (name: string, o: NodeOpts) => {
    const { initNode, parseProfile } = await import('../canton/node/init.js');
    const { nodeId } = await import('../canton/node/identity.js');
    const manualGiven = o.namespaceKeyId || o.signingKeyId || o.sequencerAuthKeyId || o.encryptionKeyId;
    if (manualGiven && !o.signingKeyId) throw err('USAGE', 'manual init needs --signing-key-id');
    if (manualGiven && (o.signingSpec || o.encryptionSpec || o.singleSigningKey))
      throw err('USAGE', 'manual init registers existing keys: --signing-spec, --encryption-spec and --single-signing-key do not apply');
    await withNewStore(o, async (kr) => {
      const n = await initNode(kr, name, {
        profile: parseProfile(o.profile!),
        ...(o.identifier ? { identifier: o.identifier } : {}),
        ...(o.namespaceOf ? { namespaceOf: o.namespaceOf } : {}),
        ...(o.signingSpec ? { signingSpec: o.signingSpec } : {}),
        ...(o.encryptionSpec ? { encryptionSpec: o.encryptionSpec } : {}),
        ...(o.singleSigningKey ? { singleSigningKey: true } : {}),
        ...(o.offlineRoot ? { offlineRoot: true } : {}),
        ...(manualGiven
          ? {
              manual: {
                signingKeyId: o.signingKeyId!,
                ...(o.namespaceKeyId ? { namespaceKeyId: o.namespaceKeyId } : {}),
                ...(o.sequencerAuthKeyId ? { sequencerAuthKeyId: o.sequencerAuthKeyId } : {}),
                ...(o.encryptionKeyId ? { encryptionKeyId: o.encryptionKeyId } : {}),
              },
            }
          : {}),
      });
      if (o.json) return printJson(nodeView(n, nodeId(n)));
      process.stdout.write(
        `node ${n.name} (${n.profile}): ${n.awaitingRoot ? `awaiting the offline root's certificates (namespace key ${n.namespace})` : nodeId(n)}\n`,
      );
      printTable(
        n.keys.map((k) => ({ role: k.role, key: k.key, type: k.type, fingerprint: k.fingerprint, origin: k.origin })),
        ['role', 'key', 'type', 'fingerprint', 'origin'],
      );
    });
  });

  jsonOpt(storeOpt(node.command('ls').description('list the nodes of a store'))).action(async (o: NodeOpts) => {
    const { listNodes, loadNode } = await import('../canton/node/registry.js');
    const { nodeId } = await import('../canton/node/identity.js');
    await withStore(
      o,
      async (kr) => {
        const nodes = await Promise.all((await listNodes(kr)).map((n) => loadNode(kr, n)));
        if (o.json)
          return printJson(
            nodes.map((n) => ({ name: n.name, profile: n.profile, id: nodeId(n), namespace: n.namespace, keys: n.keys.length })),
          );
        printTable(
          nodes.map((n) => ({ name: n.name, profile: n.profile, id: nodeId(n), keys: n.keys.length })),
          ['name', 'profile', 'id', 'keys'],
        );
      },
      READ,
    );
  });

  jsonOpt(storeOpt(node.command('show <name>').description("a node's id, keys and topology transactions"))).action(
    async (name: string, o: NodeOpts) => {
      const { loadNode } = await import('../canton/node/registry.js');
      const { nodeId } = await import('../canton/node/identity.js');
      await withStore(
        o,
        async (kr) => {
          const n = await loadNode(kr, name);
          if (o.json) return printJson(nodeView(n, nodeId(n)));
          const w = (a: string, b: string) => process.stdout.write(`${a.padEnd(12)} ${b}\n`);
          w('Node', n.name);
          w('Profile', n.profile);
          w('Id', nodeId(n));
          w(
            'Namespace',
            `${n.namespace}${n.namespaceOf ? ` (of node ${n.namespaceOf})` : ''}${n.awaitingRoot ? ' (awaiting the offline root)' : ''}`,
          );
          w('Init', n.manualInit ? 'manual (pre-generated KMS keys; Canton init.auto-init = false)' : 'keys made by keyport');
          w('Created', n.createdAt);
          w('Topology', n.topology.map((t) => t.name).join(', ') || '(none)');
          process.stdout.write('\n');
          printTable(
            n.keys.map((k) => ({
              role: k.role,
              key: k.key,
              version: k.version,
              type: k.type,
              usage: k.usage.join(','),
              fingerprint: k.fingerprint,
            })),
            ['role', 'key', 'version', 'type', 'usage', 'fingerprint'],
          );
        },
        READ,
      );
    },
  );

  jsonOpt(
    storeOpt(
      node
        .command('export <name>')
        .description(
          "write the node's topology certificates for Canton's console (--out DIR), or its whole identity bundle (--bundle FILE)",
        )
        .option(
          '-o, --out <dir>',
          'directory for NN-NAME.cert files (init_id / load_single_from_file) and identity.certs (load_multiple_from_file)',
        )
        .option('--bundle <file>', 'write the identity bundle (private keys where the store allows export, else KMS key ids; 0600)'),
    ),
  ).action(async (name: string, o: NodeOpts) => {
    if (!o.out === !o.bundle) throw err('USAGE', 'pass --out DIR (certificates) or --bundle FILE (identity bundle)');
    await withStore(
      o,
      async (kr) => {
        if (o.bundle) {
          const { exportBundle } = await import('../canton/node/bundle.js');
          const { bundle, secrets } = await exportBundle(kr, name);
          writeOutput(o.bundle, `${JSON.stringify(bundle, null, 2)}\n`, { secret: true, binary: true });
          if (o.json) return printJson({ node: name, bundle: o.bundle, keys: bundle.keys.length, privateKeys: secrets });
          if (o.bundle !== '-')
            process.stderr.write(
              `wrote ${o.bundle}: ${bundle.keys.length} keys${secrets ? ' (holds private keys: keep it secret)' : ''}\n`,
            );
          return;
        }
        const { exportIdentity } = await import('../canton/node/identity.js');
        const r = await exportIdentity(kr, name, o.out!);
        if (o.json) return printJson(r);
        process.stdout.write(`${r.id}\n`);
        for (const f of [...r.files, r.collection]) process.stdout.write(`  ${f}\n`);
      },
      READ,
    );
  });

  jsonOpt(
    node
      .command('verify <paths...>')
      .description('check every signature and the delegation chain of Canton topology files (.cert, .certs, or directories of them)'),
  ).action(async (paths: string[], o: NodeOpts) => {
    const { verifyFiles, describeReport } = await import('../canton/node/identity.js');
    const r = verifyFiles(paths);
    if (o.json) printJson(r);
    else {
      for (const l of describeReport(r)) process.stdout.write(`${l}\n`);
      process.stdout.write(
        r.ok
          ? `verified: ${r.transactions.length} transactions; namespaces ${r.namespaces.join(', ') || '(none)'}\n`
          : `NOT verified: ${r.transactions.filter((t) => !t.ok).length} of ${r.transactions.length} transactions fail\n`,
      );
    }
    if (!r.ok) process.exitCode = 1;
  });

  jsonOpt(
    storeOpt(
      node
        .command('delegate')
        .description("sign a namespace delegation (or its revocation) with a node's namespace key or an offline root key in a KMS/HSM")
        .option('--namespace-of <node>', "sign with this node's namespace key; the certificate joins the node's topology")
        .option(
          '--root-key <kms-key-uri>',
          'sign with this root key in a KMS/HSM (offline root: e.g. pkcs11:…;object=root or awskms:…;key-id=…)',
        )
        .option('--to-key <key>', 'the key receiving authority: a key name in --store (e.g. a KMS key of the new node)')
        .option('--to-public-key <file>', 'the key receiving authority: a public key file (SPKI DER/PEM or Canton public key)')
        .option('--restriction <r>', 'all | all-but-namespace-delegations | mappings=NAME,… (default: all-but-namespace-delegations)')
        .option('--revoke', 'revoke the delegation instead (serial + 1)')
        .option('--history <files...>', "with --root-key: the namespace's earlier certificates (to pick the serial of a revocation)")
        .option('-o, --out <file>', 'write the certificate (.cert) here'),
    ),
  ).action(async (o: NodeOpts) => {
    const { parseRestriction } = await import('../canton/topology/builders.js');
    const { encodeVersionedSigned } = await import('../canton/topology/messages.js');
    const { keyFingerprint } = await import('../canton/topology/hash.js');
    const id = await import('../canton/node/identity.js');
    if (!o.namespaceOf === !o.rootKey) throw err('USAGE', 'pass --namespace-of NODE or --root-key KMS-KEY-URI');
    if (!o.toKey === !o.toPublicKey) throw err('USAGE', 'pass --to-key KEY or --to-public-key FILE');
    if (o.toKey && !o.store && !process.env.KEYPORT_STORE) throw err('USAGE', '--to-key names a key in --store: pass --store');
    const restriction = o.restriction ? parseRestriction(o.restriction) : undefined;
    const target = async (kr?: StoreKeyring) => (o.toPublicKey ? id.readPublicKeyFile(o.toPublicKey) : kr!.publicKey(o.toKey!));
    let cert: import('../canton/topology/messages.js').SignedTopologyTransaction;
    let targetKey: Buffer;
    if (o.namespaceOf) {
      const r = await withStore(o, async (kr) => {
        targetKey = await target(kr);
        return id.delegateFromNode(kr, o.namespaceOf!, targetKey, {
          ...(restriction ? { restriction } : {}),
          ...(o.revoke ? { revoke: true } : {}),
        });
      });
      cert = r.cert;
    } else {
      targetKey = o.toKey ? await withStore(o, (kr) => target(kr), READ) : await target();
      const { signer, close } = await signerForRootKey(o.rootKey!);
      try {
        cert = await id.makeDelegation(signer, {
          targetKey,
          history: o.history ? id.readTopologyFiles(o.history).map((x) => x.signed) : [],
          ...(restriction ? { restriction } : {}),
          ...(o.revoke ? { revoke: true } : {}),
        });
      } finally {
        await close();
      }
    }
    const bytes = encodeVersionedSigned(cert);
    if (o.out) writeOutput(o.out, bytes);
    const { transactionHash } = await import('../canton/topology/hash.js');
    const info = {
      namespace: cert.signatures[0]!.signedBy,
      target: keyFingerprint(targetKey!),
      operation: o.revoke ? 'revoke' : 'delegate',
      hash: transactionHash(cert.transaction).toString('hex'),
      ...(o.out ? { file: o.out } : {}),
    };
    if (o.json) return printJson(info);
    if (!o.out) writeOutput(undefined, bytes, { binary: true });
    else process.stdout.write(`${info.operation} ${info.target} signed by ${info.namespace}: ${o.out}\n`);
  });

  jsonOpt(
    node
      .command('root-cert')
      .description('the offline side: a root key in a KMS/HSM signs its own root namespace certificate')
      .requiredOption('--root-key <kms-key-uri>', 'the root key (e.g. pkcs11:module-path=…;token=…;object=root?pin-value=…)')
      .requiredOption('-o, --out <file>', 'write the certificate (.cert) here'),
  ).action(async (o: NodeOpts) => {
    const { makeRootCertificate } = await import('../canton/node/identity.js');
    const { encodeVersionedSigned } = await import('../canton/topology/messages.js');
    const { signer, close } = await signerForRootKey(o.rootKey!);
    try {
      const cert = await makeRootCertificate(signer);
      writeOutput(o.out, encodeVersionedSigned(cert));
      if (o.json) return printJson({ namespace: signer.fingerprint, file: o.out });
      process.stdout.write(`root namespace ${signer.fingerprint}: ${o.out}\n`);
    } finally {
      await close();
    }
  });

  jsonOpt(
    storeOpt(
      node
        .command('import-certs <name> <files...>')
        .description(
          "adopt certificates made elsewhere (an offline root's root certificate and its delegation to the node's namespace key)",
        ),
    ),
  ).action(async (name: string, files: string[], o: NodeOpts) => {
    const { importCertificates, nodeId } = await import('../canton/node/identity.js');
    await withStore(o, async (kr) => {
      const n = await importCertificates(kr, name, files);
      if (o.json) return printJson(nodeView(n, nodeId(n)));
      process.stdout.write(`${nodeId(n)}\n`);
    });
  });

  jsonOpt(
    storeOpt(
      node
        .command('import <bundle>')
        .description("recreate a node from an identity bundle ('node export NAME --bundle FILE') in another store")
        .option('--as <name>', "node name in the target store (default: the bundle's)"),
    ),
  ).action(async (file: string, o: NodeOpts) => {
    const { importBundle } = await import('../canton/node/bundle.js');
    const { nodeId } = await import('../canton/node/identity.js');
    let raw: string;
    try {
      raw = readFileSync(file === '-' ? 0 : file, 'utf8');
    } catch (e) {
      throw err('USAGE', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    await withNewStore(o, async (kr) => {
      const n = await importBundle(kr, raw, o.as ? { as: o.as } : {});
      if (o.json) return printJson(nodeView(n, nodeId(n)));
      process.stdout.write(`${n.name}: ${nodeId(n)} (${n.keys.length} keys)\n`);
    });
  });

  // rotate, canton-config, iam-policy, compat (src/cli/node-ops.ts)
  registerNodeOps(node);
}
