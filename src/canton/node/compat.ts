/**
 * `keyport node compat A B …`: can these nodes talk to each other, given where their keys live?
 *
 * Canton's rule (operator guide, "Interoperability between KMS and non-KMS nodes"): a node on the `kms`
 * crypto provider signs and decrypts only with what its KMS holds (AWS KMS and GCP KMS: ECDSA P-256/P-384
 * with SHA-256/384 signing, RSA-2048 with OAEP-SHA256 encryption), so it talks only to nodes on `kms` or on
 * `jce` restricted to those schemes (and a synchronizer whose required signing and encryption specs are among
 * them). Canton 2.x's default provider `tink` cannot be restricted that way and is incompatible. For a
 * non-KMS node this prints the `jce` provider config that keeps it within the KMS nodes' schemes.
 */
import { err } from '../../errors.js';
import type { KeyType } from '../../crypto/keytypes.js';
import type { StoreKeyring } from '../../keys/keyring.js';
import { ROLE_RULES } from '../roles.js';
import { loadNode, listNodes } from './registry.js';
import { locateNodeKeys } from './canton-config.js';
import type { NodeRecord } from './types.js';

/** Canton's config names for key and algorithm specs (crypto-schemes documentation snippet) */
const SIGN_KEY_NAME: Partial<Record<KeyType, string>> = {
  'ec-p256': 'ec-p-256',
  'ec-p384': 'ec-p-384',
  ed25519: 'ec-curve-25519',
  secp256k1: 'ec-secp-256k-1',
};
const SIGN_ALGO_NAME: Partial<Record<KeyType, string>> = {
  'ec-p256': 'ec-dsa-sha-256',
  'ec-p384': 'ec-dsa-sha-384',
  ed25519: 'ed-25519',
  secp256k1: 'ec-dsa-sha-256',
};
const ENC_KEY_NAME: Partial<Record<KeyType, string>> = { 'rsa-2048': 'rsa-2048', 'ec-p256': 'ec-p-256' };
const ENC_ALGO_NAME: Partial<Record<KeyType, string>> = {
  'rsa-2048': 'rsa-oaep-sha-256',
  'ec-p256': 'ecies-hkdf-hmac-sha-256-aes-128-cbc',
};

/** what a KMS Canton supports holds (Canton's KMS providers: AWS and GCP alike; drivers declare their own) */
const KMS_SIGNING: readonly KeyType[] = ROLE_RULES.protocol.kmsSpecs;
const KMS_ENCRYPTION: readonly KeyType[] = ROLE_RULES.encryption.kmsSpecs;

export interface NodeCompat {
  node: string;
  profile: NodeRecord['profile'];
  provider: 'kms' | 'jce';
  kms?: string;
  signing: KeyType[];
  encryption: KeyType[];
  /** schemes this node's KMS can hold (kms nodes) */
  supports?: { signing: KeyType[]; encryption: KeyType[] };
}

export interface CompatReport {
  nodes: NodeCompat[];
  ok: boolean;
  problems: string[];
  /** the schemes a synchronizer joining these nodes must require */
  required: { signing: KeyType[]; encryption: KeyType[] };
  /** per non-KMS node: the jce provider config restricted to the KMS nodes' schemes */
  jceConfig: { node: string; config: string }[];
  notes: string[];
}

const uniq = <T>(a: T[]) => [...new Set(a)];

export async function nodeCompat(kr: StoreKeyring, node: NodeRecord): Promise<NodeCompat> {
  const keys = await locateNodeKeys(kr, node);
  const inKms = keys.filter((k) => k.kms);
  const provider = inKms.length && inKms.length === keys.length ? 'kms' : 'jce';
  const c: NodeCompat = {
    node: node.name,
    profile: node.profile,
    provider,
    signing: uniq(keys.filter((k) => k.role !== 'encryption').map((k) => k.type)),
    encryption: uniq(keys.filter((k) => k.role === 'encryption').map((k) => k.type)),
  };
  if (provider === 'kms') {
    const kms = inKms[0]!.kms!;
    c.kms = kms.scheme;
    const driver = await kr.kmsDriver(inKms[0]!.kmsUri!);
    const drvSign = driver.supportedSigningKeySpecs() as string[];
    const drvEnc = driver.supportedEncryptionKeySpecs() as string[];
    // Canton's own AWS/GCP providers hold exactly KMS_SIGNING / KMS_ENCRYPTION; a driver what it declares
    c.supports = {
      signing: KMS_SIGNING.filter((t) => drvSign.includes(t)),
      encryption: KMS_ENCRYPTION.filter((t) => drvEnc.includes(t)),
    };
  }
  return c;
}

export function jceConfig(profile: NodeRecord['profile'], name: string, signing: KeyType[], encryption: KeyType[]): string {
  const section = profile === 'participant' ? 'participants' : profile === 'mediator' ? 'mediators' : 'sequencers';
  const list = (m: Partial<Record<KeyType, string>>, ts: KeyType[]) => uniq(ts.map((t) => m[t]!).filter(Boolean));
  const block = (what: string, names: string[]) => `    ${what} { default = ${names[0]}, allowed = [${names.join(', ')}] }`;
  const lines = [
    `canton.${section}.${name}.crypto {`,
    '    provider = jce',
    block('signing.algorithms', list(SIGN_ALGO_NAME, signing)),
    block('signing.keys', list(SIGN_KEY_NAME, signing)),
  ];
  if (encryption.length)
    lines.push(block('encryption.algorithms', list(ENC_ALGO_NAME, encryption)), block('encryption.keys', list(ENC_KEY_NAME, encryption)));
  lines.push('}');
  return lines.join('\n');
}

/** `names` in `kr` (all of its nodes when none is named), and every node of each `peers` store */
export async function compatReport(kr: StoreKeyring, names: string[], peers: StoreKeyring[] = []): Promise<CompatReport> {
  if (names.length === 0) names = await listNodes(kr);
  const nodes: NodeCompat[] = [];
  for (const n of names) nodes.push(await nodeCompat(kr, await loadNode(kr, n)));
  for (const p of peers) for (const n of await listNodes(p)) nodes.push(await nodeCompat(p, await loadNode(p, n)));
  if (nodes.length === 0) throw err('NOT_FOUND', 'no nodes in this store: name nodes made with keyport node init');
  const problems: string[] = [];
  const notes: string[] = [];
  const kmsNodes = nodes.filter((n) => n.provider === 'kms');
  // what every KMS node can hold bounds what the synchronizer may require
  let signing: KeyType[] = uniq(nodes.flatMap((n) => n.signing));
  let encryption: KeyType[] = uniq(nodes.flatMap((n) => n.encryption));
  if (kmsNodes.length) {
    const canSign = kmsNodes.reduce<KeyType[]>((acc, n) => acc.filter((t) => n.supports!.signing.includes(t)), [...KMS_SIGNING]);
    const canEnc = kmsNodes.reduce<KeyType[]>((acc, n) => acc.filter((t) => n.supports!.encryption.includes(t)), [...KMS_ENCRYPTION]);
    for (const n of nodes) {
      const badS = n.signing.filter((t) => !canSign.includes(t));
      const badE = n.encryption.filter((t) => !canEnc.includes(t));
      if (badS.length || badE.length)
        problems.push(
          `${n.node} (${n.provider}) uses ${[...badS.map((t) => `${t} signing`), ...badE.map((t) => `${t} encryption`)].join(', ')}, ` +
            `which the KMS node(s) ${kmsNodes.map((k) => k.node).join(', ')} cannot use: KMS nodes need ${canSign.join('/')} signing ` +
            `and ${canEnc.join('/')} encryption keys`,
        );
    }
    signing = signing.filter((t) => canSign.includes(t));
    encryption = encryption.filter((t) => canEnc.includes(t));
    if (!signing.length) signing = canSign.slice(0, 1);
    if (!encryption.length) encryption = canEnc.slice(0, 1);
    notes.push(
      "a node on the kms provider talks only to nodes on kms or on jce restricted to the KMS's schemes; Canton 2.x's default provider tink is incompatible",
    );
    notes.push(
      `the synchronizer's static parameters must require these: required-signing-specs { algorithms = ` +
        `[${uniq(signing.map((t) => SIGN_ALGO_NAME[t]!)).join(', ')}], keys = ` +
        `[${uniq(signing.map((t) => SIGN_KEY_NAME[t]!)).join(', ')}] }, required-encryption-specs { algorithms = ` +
        `[${uniq(encryption.map((t) => ENC_ALGO_NAME[t]!)).join(', ')}], keys = [${uniq(encryption.map((t) => ENC_KEY_NAME[t]!)).join(', ')}] }`,
    );
  }
  if (!kmsNodes.length) notes.push('no node is on a KMS: the jce configs below only pin each node to the schemes its keys use');
  const jce = nodes
    .filter((n) => n.provider === 'jce')
    .map((n) => ({
      node: n.node,
      config: jceConfig(n.profile, n.node, kmsNodes.length ? signing : n.signing, kmsNodes.length ? encryption : n.encryption),
    }));
  return { nodes, ok: problems.length === 0, problems, required: { signing, encryption }, jceConfig: jce, notes };
}

/**
 * The Canton-node check for `migrate` plans (issue 11 item 7): a node key moving into a KMS must be one Canton's
 * kms provider can use for its role there, or the plan refuses it up front. Keyed by key name.
 */
export async function nodeKeyMigrationRefusals(src: StoreKeyring, dst: StoreKeyring): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const p = await dst.protection();
  if (p.mode !== 'external') return out;
  let nodes: string[];
  try {
    nodes = await listNodes(src);
  } catch {
    return out;
  }
  if (!nodes.length) return out;
  const driver = await dst.kmsDriver(p.kms);
  for (const name of nodes) {
    const node = await loadNode(src, name);
    for (const k of node.keys) {
      const rule = ROLE_RULES[k.role];
      const offered = (rule.operation === 'sign' ? driver.supportedSigningKeySpecs() : driver.supportedEncryptionKeySpecs()) as string[];
      if (!rule.kmsSpecs.includes(k.type) || !offered.includes(k.type))
        out.set(
          k.key,
          `node '${name}''s ${k.role} key is ${k.type}: in a KMS Canton's kms provider needs ` +
            `${rule.kmsSpecs.filter((t) => offered.includes(t)).join(' or ') || 'a key type this KMS cannot hold'} for this role`,
        );
    }
  }
  return out;
}
