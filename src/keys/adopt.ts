/**
 * Which key a registration may adopt: the KMS key's spec and what the KMS lets it do (DescribeKey,
 * PKCS#11 attributes, …) against what the caller asked for (purpose, type, signing usages, a Canton
 * role's rule). A key that cannot serve is refused before anything is recorded, with one line that
 * names what the key is and what the role needs: a P-256 SIGN_VERIFY key is not an encryption key
 * (encrypt would work, decrypt never), an RSA SIGN_VERIFY key is not one either, and an
 * ECC_NIST_P521 key is not an aes256 key.
 */
import { err } from '../errors.js';
import { KEY_TYPE_INFO, isKeyType, type KeyType, type Purpose } from '../crypto/keytypes.js';
import type { Driver, DriverKeyDescription } from '../kms/driver.js';
import type { KeyUsage } from '../store/types.js';
import { ROLE_RULES, checkRole, roleForUsage, type CantonKeyRole } from '../canton/roles.js';

/** the Canton roles a registration is held to: the one asked for, and those its usage restrictions imply */
function rolesOf(want: AdoptWant): CantonKeyRole[] {
  const roles = new Set<CantonKeyRole>(want.role ? [want.role] : []);
  for (const u of want.usage ?? []) {
    const r = roleForUsage(u);
    if (r) roles.add(r);
  }
  return [...roles];
}
const rolePurpose = (r: CantonKeyRole): Purpose => (ROLE_RULES[r].operation === 'sign' ? 'signing' : 'encryption');

export interface AdoptWant {
  /** the purpose asked for (`--purpose`); default: what the KMS allows the key to do */
  purpose?: Purpose;
  /** the type asked for (`--type`): the key must be of it */
  type?: KeyType;
  /** signing-key usage restrictions asked for: only signing keys take them */
  usage?: KeyUsage[];
  /** a Canton node role (src/canton/roles.ts): its purpose and the specs Canton accepts for a KMS-held key */
  role?: CantonKeyRole;
}

const article = (s: string) => (/^[aeiou]/i.test(s) ? `an ${s}` : `a ${s}`);
const orList = (l: readonly string[]) => (l.length <= 1 ? (l[0] ?? 'none') : `${l.slice(0, -1).join(', ')} or ${l[l.length - 1]}`);

/** the key types a purpose may use on this driver (and under the role's rule, when given) */
export function typesFor(driver: Driver, purpose: Purpose, role?: CantonKeyRole): KeyType[] {
  const offered: readonly string[] =
    purpose === 'symmetric' ? ['aes256'] : purpose === 'signing' ? driver.supportedSigningKeySpecs() : driver.supportedEncryptionKeySpecs();
  return offered.filter(
    (t): t is KeyType => isKeyType(t) && KEY_TYPE_INFO[t].purposes.includes(purpose) && (!role || ROLE_RULES[role].kmsSpecs.includes(t)),
  );
}

/** describe a key for the check: the driver's own description, else what its public key shows */
export function describedFromPublicKey(keyId: string, type: KeyType | undefined): DriverKeyDescription {
  const info = type ? KEY_TYPE_INFO[type] : undefined;
  return {
    keyId,
    ...(type ? { spec: type } : {}),
    sign: info?.purposes.includes('signing') ?? false,
    decrypt: (info?.purposes.includes('encryption') || info?.purposes.includes('symmetric')) ?? false,
    native: type ? `${article(type)} key` : 'a key of a kind keyport does not use',
    words: { sign: 'signing allowed', decrypt: 'decryption allowed' },
  };
}

/**
 * The type and purpose a registration records, or a KEY_USAGE error naming what the key is and what
 * was needed. `what` names the key for messages ("AWS KMS key 'arn:…'").
 */
export function checkAdoptable(
  what: string,
  driver: Driver,
  d: DriverKeyDescription,
  want: AdoptWant,
): { type: KeyType; purpose: Purpose } {
  // usage restrictions (namespace, protocol, …) are a signing key's: asking for them asks for a signing key
  const asked =
    (want.role ? rolePurpose(want.role) : undefined) ?? want.purpose ?? (want.usage?.some((u) => u !== 'any') ? 'signing' : undefined);
  const needs = (purpose: Purpose): string => {
    const types = typesFor(driver, purpose, want.role).filter((t) => !want.type || t === want.type);
    const role = want.role ? `a Canton ${want.role} key` : `${article(purpose)} key`;
    if (purpose === 'symmetric') return `${role} needs a symmetric aes256 key with ${d.words.decrypt}`;
    const word = purpose === 'signing' ? d.words.sign : d.words.decrypt;
    if (!types.length) return `${role} cannot be held here: this ${driver.name} offers keyport no ${want.type ?? purpose} key type`;
    return `${role} needs ${orList(types)} with ${word}`;
  };
  const refuse = (purpose: Purpose) => err('KEY_USAGE', `${what} is ${d.native}: ${needs(purpose)}`);

  if (!d.spec || !isKeyType(d.spec)) {
    const all = `${needs('signing')}; ${needs('encryption')}; ${needs('symmetric')}`;
    throw err('KEY_USAGE', `${what} is ${d.native}, a key spec keyport does not use: ${asked ? needs(asked) : all}`);
  }
  const type = d.spec;
  if (type === 'aes256') {
    const purpose = asked ?? 'symmetric';
    if (purpose !== 'symmetric' || (want.type && want.type !== 'aes256') || rolesOf(want).length) throw refuse(purpose);
    if (!d.decrypt) throw refuse('symmetric');
    if (want.usage?.some((u) => u !== 'any')) throw err('USAGE', `${what} is ${d.native}: usage restrictions apply to signing keys only`);
    return { type, purpose };
  }
  // an asymmetric key: its purpose is what was asked, else what the KMS lets it do and keyport can use it for
  const fits = (p: Purpose) =>
    (p === 'signing' ? d.sign : d.decrypt) && KEY_TYPE_INFO[type].purposes.includes(p) && typesFor(driver, p).includes(type);
  const usable = (['signing', 'encryption'] as const).filter(fits);
  const purpose: Purpose =
    asked ??
    (usable.length === 1
      ? usable[0]!
      : d.sign && !d.decrypt
        ? 'signing'
        : d.decrypt && !d.sign
          ? 'encryption'
          : KEY_TYPE_INFO[type].defaultPurpose);
  if (purpose === 'symmetric') throw refuse('symmetric');
  if (!KEY_TYPE_INFO[type].purposes.includes(purpose) || !typesFor(driver, purpose).includes(type)) throw refuse(purpose);
  if (purpose === 'signing' ? !d.sign : !d.decrypt) throw refuse(purpose);
  if (want.type && want.type !== type) throw refuse(purpose);
  if (purpose !== 'signing' && want.usage?.some((u) => u !== 'any'))
    throw err('USAGE', `${what} is ${d.native}, ${article(purpose)} key: usage restrictions apply to signing keys only`);
  // Canton's own rule for the role (a KMS-held key: ECC_NIST_P256/P384 signing, RSA_2048 encryption)
  for (const r of rolesOf(want))
    checkRole(r, { type, usage: d.sign && d.decrypt ? 'sign-encrypt' : d.sign ? 'sign' : 'encrypt', native: d.native, inKms: true }, what);
  return { type, purpose };
}
