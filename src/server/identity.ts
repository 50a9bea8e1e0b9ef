/**
 * KES identities: the hex SHA-256 of a client certificate's SubjectPublicKeyInfo. A KES API key
 * (`kes:v1:` + base64(0x00 ‖ Ed25519 seed)) stands for the identity of its Ed25519 public key; the
 * KES client turns it into a self-signed client certificate.
 */
import { createHash, createPrivateKey, createPublicKey, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import { err } from '../errors.js';
import { selfSignedCertificate } from '../crypto/x509.js';

const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const API_KEY_HEADER = 'kes:v1:';

export function identityOfSpki(spki: Buffer): string {
  return createHash('sha256').update(spki).digest('hex');
}

export function identityOfCertificate(der: Buffer): string {
  const cert = new X509Certificate(der);
  return identityOfSpki(cert.publicKey.export({ type: 'spki', format: 'der' }) as Buffer);
}

export interface ApiKey {
  key: string;
  privateKey: KeyObject;
  identity: string;
}

export function parseApiKey(s: string): ApiKey {
  const t = s.trim();
  if (!t.startsWith(API_KEY_HEADER)) throw err('INVALID_INPUT', `not a KES API key: it starts with '${API_KEY_HEADER}'`);
  const b = Buffer.from(t.slice(API_KEY_HEADER.length), 'base64');
  if (b.length !== 33 || b[0] !== 0) throw err('INVALID_INPUT', 'not a KES API key: wrong length or type');
  const privateKey = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, b.subarray(1)]), format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' }) as Buffer;
  return { key: t, privateKey, identity: identityOfSpki(spki) };
}

export function generateApiKey(): ApiKey {
  return parseApiKey(API_KEY_HEADER + Buffer.concat([Buffer.from([0]), randomBytes(32)]).toString('base64'));
}

/** the client certificate a KES client presents for an API key */
export async function apiKeyCertificate(k: ApiKey): Promise<{ cert: Buffer; key: KeyObject }> {
  return { cert: await selfSignedCertificate(k.privateKey, { commonName: k.identity, usage: ['client'], days: 90 }), key: k.privateKey };
}
