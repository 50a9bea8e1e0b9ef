/** The key types of the contract and what each one can do. One table, used everywhere. */
import { err } from '../errors.js';

export const KEY_TYPES = ['aes256', 'ec-p256', 'ec-p384', 'secp256k1', 'ed25519', 'rsa-2048', 'rsa-3072'] as const;
export type KeyType = (typeof KEY_TYPES)[number];

export type Family = 'symmetric' | 'ec' | 'ed25519' | 'rsa';
export type Purpose = 'symmetric' | 'signing' | 'encryption';

export interface KeyTypeInfo {
  type: KeyType;
  family: Family;
  /** node:crypto curve name for EC keys */
  curve?: 'prime256v1' | 'secp384r1' | 'secp256k1';
  /** RSA modulus bits */
  bits?: number;
  /** digest used by ECDSA / RSA-PSS / RSA-OAEP for this type */
  hash?: 'sha256' | 'sha384';
  /** purposes the type can serve */
  purposes: readonly Purpose[];
  /** the purpose a new key of this type gets when none is given */
  defaultPurpose: Purpose;
}

export const KEY_TYPE_INFO: Record<KeyType, KeyTypeInfo> = {
  aes256: { type: 'aes256', family: 'symmetric', purposes: ['symmetric'], defaultPurpose: 'symmetric' },
  'ec-p256': {
    type: 'ec-p256',
    family: 'ec',
    curve: 'prime256v1',
    hash: 'sha256',
    purposes: ['signing', 'encryption'],
    defaultPurpose: 'signing',
  },
  'ec-p384': { type: 'ec-p384', family: 'ec', curve: 'secp384r1', hash: 'sha384', purposes: ['signing'], defaultPurpose: 'signing' },
  secp256k1: { type: 'secp256k1', family: 'ec', curve: 'secp256k1', hash: 'sha256', purposes: ['signing'], defaultPurpose: 'signing' },
  ed25519: { type: 'ed25519', family: 'ed25519', purposes: ['signing'], defaultPurpose: 'signing' },
  'rsa-2048': {
    type: 'rsa-2048',
    family: 'rsa',
    bits: 2048,
    hash: 'sha256',
    purposes: ['encryption', 'signing'],
    defaultPurpose: 'encryption',
  },
  'rsa-3072': {
    type: 'rsa-3072',
    family: 'rsa',
    bits: 3072,
    hash: 'sha256',
    purposes: ['encryption', 'signing'],
    defaultPurpose: 'encryption',
  },
};

export function isKeyType(s: string): s is KeyType {
  return (KEY_TYPES as readonly string[]).includes(s);
}

export function parseKeyType(s: string | undefined): KeyType {
  const t = (s ?? 'aes256').toLowerCase();
  if (!isKeyType(t)) throw err('USAGE', `unknown key type '${s}': use one of ${KEY_TYPES.join(', ')}`);
  return t;
}

export function keyTypeInfo(t: KeyType): KeyTypeInfo {
  return KEY_TYPE_INFO[t];
}

export const isAsymmetric = (t: KeyType) => KEY_TYPE_INFO[t].family !== 'symmetric';
