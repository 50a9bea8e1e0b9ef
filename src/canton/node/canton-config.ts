/**
 * What a Canton operator pastes for a node keyport prepared: the node's Canton config (crypto provider `kms`
 * and the KMS block for AWS, GCP or a KMS driver; manual identity initialisation, since the keys exist
 * before Canton starts), the console commands that register its KMS keys and load its identity, and the
 * minimal AWS IAM policy.
 *
 * Canton's names, read from digital-asset/canton 3.4/3.5: `crypto.provider = kms`; `crypto.kms { type = aws,
 * region, multi-region-key, audit-logging, endpoint-override }`, `{ type = gcp, location-id, project-id,
 * key-ring-id }`, `{ type = driver, name, config }` (config/KmsConfig.scala, pureconfig kebab-case);
 * `init { generate-topology-transactions-and-keys = false, identity.type = manual }` (release notes 3.3.0:
 * what `init.auto-init = false` was in 2.x); `keys.secret.register_kms_signing_key(kmsKeyId, usage, name)`,
 * `register_kms_encryption_key(kmsKeyId, name)` (console VaultAdministration.scala), `topology.init_id(
 * identifier, delegationFiles = …)`, `topology.transactions.load_single_from_files(files,
 * TopologyStoreId.Authorized)` (TopologyAdministrationGroup.scala); the AWS actions from Canton's KMS guide.
 * Nothing printed carries a credential: URIs give only region, project, key ring and endpoint. Those come
 * from the operator's configured connection to the node's KMS (src/kms/connections.ts: --kms, KEYPORT_KMS,
 * the store YAML), never from the stored reference, which names only which KMS; without one, canton-config
 * says so in one line instead of guessing.
 */
import { err } from '../../errors.js';
import { type KmsAddress, type KmsRef, parseStoredKmsRef } from '../../kms/address.js';
import type { StoreKeyring } from '../../keys/keyring.js';
import type { CantonKeyRole } from '../roles.js';
import type { NodeKeyRef, NodeRecord } from './types.js';

/** a node key with where it lives */
export interface NodeKeyLocation extends NodeKeyRef {
  /** the stored KMS reference of the key's version (kr.kmsDriver opens it) */
  kmsUri?: string;
  /** which KMS the key lives in (the stored reference) */
  kms?: KmsRef;
  /** how keyport reaches that KMS (region, endpoint, project…): the operator's configured connection, if any */
  connection?: KmsAddress;
  keyId?: string;
}

export async function locateNodeKeys(kr: StoreKeyring, node: NodeRecord): Promise<NodeKeyLocation[]> {
  const out: NodeKeyLocation[] = [];
  for (const k of node.keys) {
    const rec = await kr.store.get(k.key);
    const v = rec.versions.find((x) => x.version === k.version) ?? rec.versions[rec.versions.length - 1]!;
    if (!v.external) {
      out.push({ ...k });
      continue;
    }
    // the record keeps a KMS reference; region, endpoint, project… come from the configured connection
    const kms = parseStoredKmsRef(v.external.kms);
    const connection = kr.connections.forKms(kms);
    out.push({ ...k, kmsUri: v.external.kms, kms, ...(connection ? { connection } : {}), keyId: v.external.keyId });
  }
  return out;
}

const SECTION: Record<NodeRecord['profile'], string> = {
  participant: 'participants',
  sequencer: 'sequencers',
  mediator: 'mediators',
  // Canton 2.x's domain manager; in 3.x a synchronizer's owners act from their sequencer/participant nodes
  'synchronizer-manager': 'sequencers',
};

const hoconString = (s: string) => JSON.stringify(s);

/** Canton's `crypto.kms` block for the KMS `kms`, keyport's configured connection to which is `connection` (no credentials in it) */
export function kmsBlock(kms: KmsRef, connection: KmsAddress): { lines: string[]; notes: string[] } {
  const p = connection.driverParams();
  const notes: string[] = [];
  if (kms.scheme === 'awskms') {
    const region = p['region'] || process.env['AWS_REGION'] || process.env['AWS_DEFAULT_REGION'];
    if (!region) notes.push('set region: the configured connection names none (keyport took it from the environment or the endpoint)');
    const lines = ['type = aws', `region = ${hoconString(region ?? 'REGION')}`, 'multi-region-key = false', 'audit-logging = true'];
    if (p['endpoint']) {
      lines.push(`endpoint-override = ${hoconString(p['endpoint'])}`);
      notes.push('endpoint-override points Canton at the same AWS KMS endpoint keyport uses (drop it for the AWS default)');
    }
    notes.push('AWS credentials: Canton uses the default AWS credential chain (environment, profile, instance role)');
    return { lines, notes };
  }
  if (kms.scheme === 'gcpkms') {
    const lines = [
      'type = gcp',
      `location-id = ${hoconString(p['location'] || 'global')}`,
      `project-id = ${hoconString(p['project'] || process.env['GOOGLE_CLOUD_PROJECT'] || 'PROJECT')}`,
      `key-ring-id = ${hoconString(p['keyring'] || p['key-ring'] || 'KEY-RING')}`,
      'audit-logging = true',
    ];
    if (p['endpoint']) lines.push(`endpoint-override = ${hoconString(p['endpoint'])}`);
    notes.push('GCP credentials: Canton uses Application Default Credentials');
    return { lines, notes };
  }
  // anything else reaches Canton through a KMS driver (Canton's v1 driver API): name and config are the driver's
  const name = kms.scheme === 'driver' ? (kms.identity['name'] ?? 'DRIVER') : `${kms.scheme}-kms-driver`;
  notes.push(
    `Canton has no built-in ${kms.scheme} KMS: it needs a KMS driver jar for it on its classpath (Canton's KMS driver API); name and ` +
      `config below are that driver's`,
  );
  return { lines: ['type = driver', `name = ${hoconString(name)}`, 'config = {', '  # the driver’s own settings', '}'], notes };
}

const USAGE_SET: Record<CantonKeyRole, string> = {
  namespace: 'SigningKeyUsage.NamespaceOnly',
  'sequencer-auth': 'SigningKeyUsage.SequencerAuthenticationOnly',
  protocol: 'SigningKeyUsage.ProtocolOnly',
  signing: 'Set(SigningKeyUsage.SequencerAuthentication, SigningKeyUsage.Protocol)',
  encryption: '',
};

const scalaName = (role: CantonKeyRole) => `${role.replace(/-(\w)/g, (_, c: string) => c.toUpperCase())}Key`;

export interface CantonConfigOutput {
  /** HOCON for the node */
  config: string;
  /** Canton console commands (Scala) */
  console: string;
  notes: string[];
}

export async function cantonConfig(kr: StoreKeyring, node: NodeRecord, opts: { certDir?: string } = {}): Promise<CantonConfigOutput> {
  const keys = await locateNodeKeys(kr, node);
  const inKms = keys.filter((k) => k.kms);
  const notes: string[] = [];
  const section = SECTION[node.profile];
  const ref = `canton.${section}.${node.identifier}`;
  const lines: string[] = [];
  if (node.profile === 'synchronizer-manager')
    notes.push(
      'a synchronizer manager is Canton 2.x’s domain manager; Canton 3.x has none: its config is printed for the sequencer that hosts ' +
        'the synchronizer’s topology',
    );
  if (inKms.length && inKms.length !== keys.length)
    throw err(
      'UNSUPPORTED',
      `node '${node.name}' has keys both inside and outside a KMS: Canton's kms provider needs all of them in the KMS`,
    );
  const where = (k: NodeKeyLocation) => {
    const p = k.connection?.driverParams() ?? {};
    return `${k.kms}|${p['region'] ?? ''}|${p['endpoint'] ?? ''}`;
  };
  if (new Set(inKms.map(where)).size > 1)
    throw err('UNSUPPORTED', `node '${node.name}' has keys in more than one KMS: Canton's node config names one`);
  lines.push(`${ref} {`);
  if (inKms.length) {
    // region, endpoint, project: from the connection the operator configured, never guessed
    const kms = inKms[0]!.kms!;
    const connection = inKms[0]!.connection;
    if (!connection)
      throw err(
        'USAGE',
        `node '${node.name}''s keys live in ${kms} and no connection to it is configured: canton-config prints the region and endpoint ` +
          `Canton needs from it — give it with --kms '${kms.scheme}:…', KEYPORT_KMS or kms: in the store YAML (docs/connections.md)`,
      );
    const b = kmsBlock(kms, connection);
    notes.push(...b.notes);
    lines.push('  crypto.provider = kms', '  crypto.kms {', ...b.lines.map((l) => `    ${l}`), '  }');
  } else {
    lines.push('  # the keys live in keyport’s store, not a KMS: Canton holds its own keys (provider jce) and cannot use them');
    lines.push('  crypto.provider = jce');
    notes.push(
      `node '${node.name}' keeps its keys in ${kr.store.capabilities.kind}: Canton's kms provider needs KMS keys (create the node with ` +
        `--store awskms:… or gcpkms:…)`,
    );
  }
  // the keys exist before Canton starts (made or registered by keyport): Canton must neither make keys nor an identity
  lines.push(
    '  # the keys exist already (made by keyport): no key or identity generation (Canton 2.x: init.auto-init = false)',
    '  init {',
    '    generate-topology-transactions-and-keys = false',
    '    identity.type = manual',
    '  }',
    '}',
  );

  const n = node.identifier;
  const dir = opts.certDir ?? 'CERT-DIR';
  const c: string[] = [];
  c.push(`// ${node.name}: register its KMS keys (ids as recorded by keyport), then load the identity keyport made`);
  c.push(`// first: keyport node export ${node.name} --out ${dir}`);
  for (const k of keys) {
    if (!k.keyId) continue;
    const v = scalaName(k.role);
    if (k.role === 'encryption')
      c.push(`val ${v} = ${n}.keys.secret.register_kms_encryption_key(${hoconString(k.keyId)}, name = ${hoconString(k.key)})`);
    else
      c.push(
        `val ${v} = ${n}.keys.secret.register_kms_signing_key(${hoconString(k.keyId)}, ${USAGE_SET[k.role]}, name = ${hoconString(k.key)})`,
      );
    c.push(`require(${v}.fingerprint.unwrap == ${hoconString(k.fingerprint)}, "${k.role} key: not the key keyport recorded")`);
  }
  const certs = node.topology.map((t, i) => `${dir}/${String(i + 1).padStart(2, '0')}-${t.name}.cert`);
  const delegations = node.topology
    .map((t, i) => ({ t, f: certs[i]! }))
    .filter(({ t }) => t.name === 'root-namespace' || t.name.startsWith('delegation') || t.name.startsWith('root'));
  const rest = certs.filter((f) => !delegations.some((d) => d.f === f));
  c.push(
    `${n}.topology.init_id(identifier = ${hoconString(node.identifier)}, namespace = ${hoconString(node.namespace)}, delegationFiles = ` +
      `Seq(${delegations.map((d) => hoconString(d.f)).join(', ')}))`,
  );
  if (rest.length)
    c.push(`${n}.topology.transactions.load_single_from_files(Seq(${rest.map(hoconString).join(', ')}), TopologyStoreId.Authorized)`);
  if (!node.topology.length)
    notes.push(`node '${node.name}' has no topology transactions yet: finish its identity first (node import-certs)`);
  return { config: lines.join('\n'), console: c.join('\n'), notes };
}

/** Canton's six AWS actions (its KMS guide), and the ones keyport itself adds: none */
export const CANTON_AWS_ACTIONS = ['kms:CreateKey', 'kms:TagResource', 'kms:Decrypt', 'kms:Sign', 'kms:DescribeKey', 'kms:GetPublicKey'];

export interface IamPolicy {
  Version: '2012-10-17';
  Statement: {
    Sid: string;
    Effect: 'Allow';
    Action: string[];
    Resource: string | string[];
    Condition?: Record<string, Record<string, string[]>>;
  }[];
}

/**
 * The minimal IAM policy for a node in AWS KMS: the key actions narrowed to the node's keys; CreateKey and
 * TagResource (new keys: Canton's rotation, keyport's `node rotate`) narrowed by key spec and usage, and left
 * out when every key is registered by ARN (possibly another account: nothing is ever created here).
 * `arns` maps key ids to their ARNs (DescribeKey); an id without one gets a wildcard account.
 */
export function iamPolicy(keys: NodeKeyLocation[], region: string, arns: Map<string, string>): IamPolicy {
  const aws = keys.filter((k) => k.kms?.scheme === 'awskms' && k.keyId);
  if (!aws.length) throw err('UNSUPPORTED', 'the node has no keys in AWS KMS: an IAM policy applies to AWS KMS keys only');
  const resources = [
    ...new Set(aws.map((k) => (k.keyId!.startsWith('arn:') ? k.keyId! : (arns.get(k.keyId!) ?? `arn:aws:kms:${region}:*:key/${k.keyId}`)))),
  ].sort();
  const statements: IamPolicy['Statement'] = [
    {
      Sid: 'CantonNodeKeysUse',
      Effect: 'Allow',
      Action: ['kms:DescribeKey', 'kms:GetPublicKey', 'kms:Sign', ...(aws.some((k) => k.role === 'encryption') ? ['kms:Decrypt'] : [])],
      Resource: resources,
    },
  ];
  const byArn = aws.every((k) => k.origin === 'registered' && k.keyId!.startsWith('arn:'));
  if (!byArn) {
    const specs = new Set<string>();
    const usages = new Set<string>();
    for (const k of aws) {
      specs.add(
        { 'ec-p256': 'ECC_NIST_P256', 'ec-p384': 'ECC_NIST_P384', 'rsa-2048': 'RSA_2048' }[k.type as string] ?? k.type.toUpperCase(),
      );
      usages.add(k.role === 'encryption' ? 'ENCRYPT_DECRYPT' : 'SIGN_VERIFY');
    }
    statements.push({
      Sid: 'CantonNodeKeysCreate',
      Effect: 'Allow',
      Action: ['kms:CreateKey', 'kms:TagResource'],
      Resource: '*',
      Condition: { StringEquals: { 'kms:KeySpec': [...specs].sort(), 'kms:KeyUsage': [...usages].sort() } },
    });
  }
  return { Version: '2012-10-17', Statement: statements };
}
