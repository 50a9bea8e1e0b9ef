// EXAMPLE keyport KMS driver — NOT A KMS.
//
// This package shows third parties what a keyport driver implements (docs/driver-api.md). It keeps
// keys in process memory with node:crypto, so every key is lost when the process exits and nothing is
// protected by hardware or access control. Use it as a template and as a fixture for
// `keyport driver-test driver:./examples/driver-example`; never to protect real keys.
//
// Load it with a URI such as  driver:./examples/driver-example;max-plaintext=65536
// Every URI parameter except the module itself arrives in `params`.
import {
  constants,
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  privateDecrypt,
  randomBytes,
  sign as nodeSign,
} from 'node:crypto';

/**
 * Errors carry one of keyport's error codes in `code` (see docs/driver-api.md): keyport maps them to
 * its own typed errors and decides what is retried. Messages are one line and never hold key bytes.
 */
class DriverError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'DriverError';
    this.code = code;
  }
}

const SIGNING_KEY_SPECS = ['ec-p256', 'ec-p384', 'secp256k1', 'ed25519', 'rsa-2048', 'rsa-3072'];
const SIGNING_ALGOS = ['ecdsa-sha256', 'ecdsa-sha384', 'ed25519', 'rsa-pss-sha256'];
const ENCRYPTION_KEY_SPECS = ['rsa-2048', 'rsa-3072', 'ec-p256'];
const ENCRYPTION_ALGOS = ['rsa-oaep-sha256', 'ecies-p256-hkdf-sha256-aes-gcm'];

/** the one signing algorithm keyport uses with each key spec */
const ALGO_OF_SPEC = {
  'ec-p256': 'ecdsa-sha256',
  secp256k1: 'ecdsa-sha256',
  'ec-p384': 'ecdsa-sha384',
  ed25519: 'ed25519',
  'rsa-2048': 'rsa-pss-sha256',
  'rsa-3072': 'rsa-pss-sha256',
};
const CURVE = { 'ec-p256': 'prime256v1', 'ec-p384': 'secp384r1', secp256k1: 'secp256k1' };
const SPEC_OF_CURVE = { prime256v1: 'ec-p256', secp384r1: 'ec-p384', secp256k1: 'secp256k1' };

function generatePair(spec) {
  if (CURVE[spec]) return generateKeyPairSync('ec', { namedCurve: CURVE[spec] }).privateKey;
  if (spec === 'ed25519') return generateKeyPairSync('ed25519').privateKey;
  if (spec === 'rsa-2048' || spec === 'rsa-3072') return generateKeyPairSync('rsa', { modulusLength: spec === 'rsa-2048' ? 2048 : 3072, publicExponent: 65537 }).privateKey;
  throw new DriverError('UNSUPPORTED', `key spec ${spec} is not supported by the example driver`);
}

function specOfPrivateKey(k) {
  const d = k.asymmetricKeyDetails ?? {};
  if (k.asymmetricKeyType === 'ec' && SPEC_OF_CURVE[d.namedCurve]) return SPEC_OF_CURVE[d.namedCurve];
  if (k.asymmetricKeyType === 'ed25519') return 'ed25519';
  if (k.asymmetricKeyType === 'rsa' && (d.modulusLength === 2048 || d.modulusLength === 3072)) return `rsa-${d.modulusLength}`;
  throw new DriverError('UNSUPPORTED', 'the example driver imports only P-256, P-384, secp256k1, Ed25519 and RSA-2048/3072 keys');
}

// keyport's ECIES (src/crypto/asym.ts): ephemeral P-256 point (65 bytes) ‖ nonce (12) ‖ AES-256-GCM
// ciphertext ‖ tag (16); key = HKDF-SHA256(ECDH secret, salt empty, info "keyport-ecies-v1" ‖ point)
function eciesDecrypt(privateKey, data) {
  if (data.length < 65 + 12 + 16 || data[0] !== 4) throw new DriverError('INVALID_CIPHERTEXT', 'not an ECIES ciphertext');
  const point = data.subarray(0, 65);
  let eph;
  try {
    eph = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: point.subarray(1, 33).toString('base64url'), y: point.subarray(33).toString('base64url') }, format: 'jwk' });
  } catch {
    throw new DriverError('INVALID_CIPHERTEXT', 'ECIES ciphertext has an invalid ephemeral key');
  }
  const shared = diffieHellman({ privateKey, publicKey: eph });
  const key = Buffer.from(hkdfSync('sha256', shared, Buffer.alloc(0), Buffer.concat([Buffer.from('keyport-ecies-v1'), point]), 32));
  return gcmOpen(key, data.subarray(65, 77), data.subarray(77));
}

function gcmSeal(key, plaintext) {
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, nonce);
  return Buffer.concat([nonce, c.update(plaintext), c.final(), c.getAuthTag()]);
}

function gcmOpen(key, nonce, sealed) {
  if (sealed.length < 16) throw new DriverError('INVALID_CIPHERTEXT', 'ciphertext is too short');
  try {
    const d = createDecipheriv('aes-256-gcm', key, nonce);
    d.setAuthTag(sealed.subarray(sealed.length - 16));
    return Buffer.concat([d.update(sealed.subarray(0, sealed.length - 16)), d.final()]);
  } catch {
    throw new DriverError('INVALID_CIPHERTEXT', 'ciphertext is not authentic: wrong key or corrupted data');
  }
}

class ExampleDriver {
  name = 'driver-example';
  #keys = new Map(); // keyId -> { kind, spec, name, key (KeyObject | Buffer), state }
  #maxPlaintext;

  constructor(params) {
    this.#maxPlaintext = Number(params['max-plaintext'] ?? 65536);
    if (!Number.isInteger(this.#maxPlaintext) || this.#maxPlaintext < 1) throw new DriverError('USAGE', 'max-plaintext= must be a positive integer');
  }

  #get(keyId, kind) {
    const k = this.#keys.get(keyId);
    if (!k) throw new DriverError('NOT_FOUND', `key ${keyId} does not exist`);
    if (k.state !== 'enabled') throw new DriverError('KEY_DISABLED', `key ${keyId} is ${k.state}`);
    if (kind && k.kind !== kind) throw new DriverError('KEY_USAGE', `key ${keyId} is a ${k.kind} key, not a ${kind} key`);
    return k;
  }

  #add(entry) {
    const id = `example-${randomBytes(8).toString('hex')}`;
    this.#keys.set(id, { ...entry, state: 'enabled' });
    return id;
  }

  async health() {
    return { state: 'ok' };
  }
  supportedSigningKeySpecs() {
    return [...SIGNING_KEY_SPECS];
  }
  supportedSigningAlgoSpecs() {
    return [...SIGNING_ALGOS];
  }
  supportedEncryptionKeySpecs() {
    return [...ENCRYPTION_KEY_SPECS];
  }
  supportedEncryptionAlgoSpecs() {
    return [...ENCRYPTION_ALGOS];
  }

  async generateSigningKeyPair(spec, name) {
    if (!SIGNING_KEY_SPECS.includes(spec)) throw new DriverError('UNSUPPORTED', `signing key spec ${spec} is not supported`);
    return this.#add({ kind: 'signing', spec, name, key: generatePair(spec) });
  }
  async generateEncryptionKeyPair(spec, name) {
    if (!ENCRYPTION_KEY_SPECS.includes(spec)) throw new DriverError('UNSUPPORTED', `encryption key spec ${spec} is not supported`);
    return this.#add({ kind: 'encryption', spec, name, key: generatePair(spec) });
  }
  async generateSymmetricKey(name) {
    return this.#add({ kind: 'symmetric', spec: 'aes256', name, key: randomBytes(32) });
  }

  async importKey(material, name) {
    if (material.kind === 'symmetric') {
      if (material.secret.length !== 32) throw new DriverError('INVALID_INPUT', 'a symmetric key is 32 raw bytes');
      return this.#add({ kind: 'symmetric', spec: 'aes256', name, key: Buffer.from(material.secret) });
    }
    let key;
    try {
      key = createPrivateKey({ key: material.secret, format: 'der', type: 'pkcs8' });
    } catch {
      throw new DriverError('INVALID_INPUT', 'not a PKCS#8 DER private key');
    }
    const spec = specOfPrivateKey(key);
    if (spec !== material.spec) throw new DriverError('INVALID_INPUT', `the key is ${spec}, not ${material.spec}`);
    const allowed = material.kind === 'signing' ? SIGNING_KEY_SPECS : ENCRYPTION_KEY_SPECS;
    if (!allowed.includes(spec)) throw new DriverError('UNSUPPORTED', `${spec} keys cannot be ${material.kind} keys`);
    return this.#add({ kind: material.kind, spec, name, key });
  }

  async sign(keyId, data, algo) {
    const k = this.#get(keyId, 'signing');
    if (ALGO_OF_SPEC[k.spec] !== algo) throw new DriverError('KEY_USAGE', `key ${keyId} is ${k.spec}: it cannot sign with ${algo}`);
    if (algo === 'ed25519') return nodeSign(null, data, k.key);
    if (algo === 'rsa-pss-sha256') return nodeSign('sha256', data, { key: k.key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
    return nodeSign(algo === 'ecdsa-sha384' ? 'sha384' : 'sha256', data, { key: k.key, dsaEncoding: 'der' });
  }

  async decryptAsymmetric(keyId, ciphertext, algo) {
    const k = this.#get(keyId, 'encryption');
    if (algo === 'rsa-oaep-sha256' && k.spec.startsWith('rsa-')) {
      try {
        return privateDecrypt({ key: k.key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, ciphertext);
      } catch {
        throw new DriverError('INVALID_CIPHERTEXT', 'RSA-OAEP decryption failed: wrong key or corrupted ciphertext');
      }
    }
    if (algo === 'ecies-p256-hkdf-sha256-aes-gcm' && k.spec === 'ec-p256') return eciesDecrypt(k.key, ciphertext);
    throw new DriverError('KEY_USAGE', `key ${keyId} is ${k.spec}: it cannot decrypt with ${algo}`);
  }

  async encryptSymmetric(keyId, plaintext) {
    const k = this.#get(keyId, 'symmetric');
    if (plaintext.length > this.#maxPlaintext) throw new DriverError('INVALID_INPUT', `plaintext of ${plaintext.length} bytes is over this driver's ${this.#maxPlaintext}-byte limit`);
    return gcmSeal(k.key, plaintext);
  }

  async decryptSymmetric(keyId, ciphertext) {
    const k = this.#get(keyId, 'symmetric');
    if (ciphertext.length < 28) throw new DriverError('INVALID_CIPHERTEXT', 'ciphertext is too short');
    return gcmOpen(k.key, ciphertext.subarray(0, 12), ciphertext.subarray(12));
  }

  async getPublicKey(keyId) {
    const k = this.#get(keyId);
    if (k.kind === 'symmetric') throw new DriverError('KEY_USAGE', `key ${keyId} is symmetric: it has no public key`);
    return { spki: createPublicKey(k.key).export({ type: 'spki', format: 'der' }), spec: k.spec };
  }

  async keyExistsAndIsActive(keyId) {
    this.#get(keyId);
  }

  async deleteKey(keyId) {
    if (!this.#keys.delete(keyId)) throw new DriverError('NOT_FOUND', `key ${keyId} does not exist`);
  }

  async *listKeys() {
    for (const [keyId, k] of this.#keys) yield { keyId, name: k.name, kind: k.kind, spec: k.spec, state: k.state };
  }

  async close() {
    this.#keys.clear();
  }
}

/** keyport calls this with the URI parameters (all but the module) and the redacted URI */
export const factory = async (params, _uri) => new ExampleDriver(params);
