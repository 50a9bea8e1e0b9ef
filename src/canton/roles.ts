/**
 * Canton key roles and the one rule of which key may play which role. Used by `node init` (generated and
 * pre-generated keys) and by generic `key register` (via the drivers), so a refusal reads the same everywhere.
 *
 * Canton's node keys (operator guide, "Key management" / "External key storage with a KMS"):
 * - namespace: a signing key with usage NAMESPACE (roots the node's identity);
 * - sequencer-auth: a signing key with usage SEQUENCER_AUTHENTICATION (the node's sequencer client);
 * - protocol: a signing key with usage PROTOCOL (confirmations, topology, …);
 * - encryption: an asymmetric encryption key (view encryption).
 * Canton's signing key specs: EC_CURVE25519, EC_P256, EC_P384, EC_SECP256K1; encryption: EC_P256, RSA_2048.
 * On a KMS (AWS KMS) Canton uses ECC_NIST_P256 / ECC_NIST_P384 SIGN_VERIFY and RSA_2048 ENCRYPT_DECRYPT.
 */
import { err } from '../errors.js';
import type { KeyType } from '../crypto/keytypes.js';
import type { KeyUsage } from '../store/types.js';

export const CANTON_KEY_ROLES = ['namespace', 'sequencer-auth', 'protocol', 'signing', 'encryption'] as const;
/** `signing` = one key for both sequencer-auth and protocol (what a single --signing-key-id registers) */
export type CantonKeyRole = (typeof CANTON_KEY_ROLES)[number];

/** Canton's SigningKeyUsage names, as keyport's usage restrictions (src/store/types KEY_USAGES) */
export const ROLE_USAGES: Record<CantonKeyRole, KeyUsage[]> = {
  namespace: ['namespace'],
  'sequencer-auth': ['sequencer-auth'],
  protocol: ['protocol'],
  signing: ['sequencer-auth', 'protocol'],
  encryption: [],
};

export interface RoleRule {
  role: CantonKeyRole;
  /** what the key must be able to do */
  operation: 'sign' | 'encrypt';
  /** key types Canton accepts for the role (src/crypto/keytypes names) */
  specs: readonly KeyType[];
  /** key types a KMS-held key may have (Canton's KMS providers: AWS, GCP, drivers) */
  kmsSpecs: readonly KeyType[];
  /** how the role's needs read in a refusal */
  needs: string;
}

const SIGNING_SPECS: readonly KeyType[] = ['ec-p256', 'ec-p384', 'ed25519', 'secp256k1'];
const SIGNING_KMS_SPECS: readonly KeyType[] = ['ec-p256', 'ec-p384'];
const ENCRYPTION_SPECS: readonly KeyType[] = ['rsa-2048', 'ec-p256'];
const ENCRYPTION_KMS_SPECS: readonly KeyType[] = ['rsa-2048'];

function signingRule(role: CantonKeyRole): RoleRule {
  return {
    role,
    operation: 'sign',
    specs: SIGNING_SPECS,
    kmsSpecs: SIGNING_KMS_SPECS,
    needs: `a signing key (sign/verify usage; EC P-256 or P-384, in a KMS ECC_NIST_P256 or ECC_NIST_P384 SIGN_VERIFY; locally also Ed25519 or secp256k1)`,
  };
}

export const ROLE_RULES: Record<CantonKeyRole, RoleRule> = {
  namespace: signingRule('namespace'),
  'sequencer-auth': signingRule('sequencer-auth'),
  protocol: signingRule('protocol'),
  signing: signingRule('signing'),
  encryption: {
    role: 'encryption',
    operation: 'encrypt',
    specs: ENCRYPTION_SPECS,
    kmsSpecs: ENCRYPTION_KMS_SPECS,
    needs: 'an asymmetric encryption key (encrypt/decrypt usage; RSA-2048, in a KMS RSA_2048 ENCRYPT_DECRYPT; locally also EC P-256)',
  },
};

/**
 * What a KMS (or a store) says a key is, as far as the role check needs it. Drivers fill it from their own
 * metadata (AWS DescribeKey/GetPublicKey KeySpec + KeyUsage, PKCS#11 CKA_KEY_TYPE/CKA_EC_PARAMS + CKA_SIGN/CKA_DECRYPT…).
 */
export interface KeyFacts {
  /** keyport key type when keyport knows the spec; undefined for specs keyport does not use (ECC_NIST_P521, HMAC_256, …) */
  type?: KeyType;
  /** what the key may be used for; 'unknown' when the KMS does not say */
  usage: 'sign' | 'encrypt' | 'sign-encrypt' | 'symmetric' | 'unknown';
  /** the KMS's own words for the key, for messages: e.g. "ECC_NIST_P521 SIGN_VERIFY" */
  native?: string;
  /** true when the key lives in a KMS (then `kmsSpecs` apply) */
  inKms?: boolean;
}

export function describeFacts(f: KeyFacts): string {
  if (f.native) return f.native;
  const usage = { sign: 'signing', encrypt: 'encryption', 'sign-encrypt': 'sign+encrypt', symmetric: 'symmetric', unknown: '' }[f.usage];
  return [f.type ?? 'unknown-spec', usage].filter(Boolean).join(' ') + ' key';
}

/** null when the key may play the role, else why not (one line: what the key is and what the role needs) */
export function roleMismatch(role: CantonKeyRole, f: KeyFacts): string | null {
  const rule = ROLE_RULES[role];
  const allowed = f.inKms ? rule.kmsSpecs : rule.specs;
  const usageOk =
    f.usage === 'unknown' ||
    f.usage === 'sign-encrypt' ||
    (rule.operation === 'sign' && f.usage === 'sign') ||
    (rule.operation === 'encrypt' && f.usage === 'encrypt');
  const specOk = f.type !== undefined && allowed.includes(f.type);
  if (usageOk && specOk) return null;
  return `the key is ${/^[aeiou]/i.test(describeFacts(f)) ? 'an' : 'a'} ${describeFacts(f)}; the ${role} role needs ${rule.needs}`;
}

/** throws KEY_USAGE naming what the key is and what the role needs */
export function checkRole(role: CantonKeyRole, f: KeyFacts, keyDesc = 'key'): void {
  const why = roleMismatch(role, f);
  if (why) throw err('KEY_USAGE', `${keyDesc} cannot be the node's ${role} key: ${why.replace(/^the key/, 'it')}`);
}

/** The Canton role a keyport usage restriction implies (for `key register --usage`); undefined for 'any' */
export function roleForUsage(usage: KeyUsage): CantonKeyRole | undefined {
  switch (usage) {
    case 'namespace':
      return 'namespace';
    case 'sequencer-auth':
      return 'sequencer-auth';
    case 'protocol':
    case 'identity-delegation':
      return 'protocol';
    default:
      return undefined;
  }
}
