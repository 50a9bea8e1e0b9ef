/**
 * Key material: generation, parsing (PKCS#8 / SPKI, DER or PEM), export, and the key type of a key
 * object. Private keys travel as PKCS#8 DER, public keys as SPKI DER, aes256 keys as 32 raw bytes.
 */
import { createPrivateKey, createPublicKey, generateKeyPair, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { err } from '../errors.js';
import { KEY_TYPE_INFO, type KeyType } from './keytypes.js';

export interface KeyMaterial {
  type: KeyType;
  /**
   * PKCS#8 DER (asymmetric), or for aes256 the 32-byte key followed by a 32-byte HMAC key (KES keeps
   * a separate HMAC key per key version for /v1/key/hmac; keys made by old KES versions have none)
   */
  secret: Buffer;
  /** SPKI DER (asymmetric only) */
  publicKey?: Buffer;
}

export function generateKey(type: KeyType): KeyMaterial {
  const info = KEY_TYPE_INFO[type];
  const enc = { privateKeyEncoding: { type: 'pkcs8', format: 'der' }, publicKeyEncoding: { type: 'spki', format: 'der' } } as const;
  switch (info.family) {
    case 'symmetric':
      return { type, secret: randomBytes(64) };
    case 'ec': {
      const kp = generateKeyPairSync('ec', { namedCurve: info.curve!, ...enc });
      return { type, secret: kp.privateKey, publicKey: kp.publicKey };
    }
    case 'ed25519': {
      const kp = generateKeyPairSync('ed25519', enc);
      return { type, secret: kp.privateKey, publicKey: kp.publicKey };
    }
    case 'rsa': {
      const kp = generateKeyPairSync('rsa', { modulusLength: info.bits!, publicExponent: 65537, ...enc });
      return { type, secret: kp.privateKey, publicKey: kp.publicKey };
    }
  }
}

/**
 * How many key pairs are generated at once off the event loop. node:crypto's generateKeyPair runs in
 * libuv's thread pool (4 threads by default), which file system calls share: RSA generation takes
 * seconds, so at most two pool threads do it and the rest of the server keeps its file I/O.
 */
const GENERATE_SLOTS = 2;
let generating = 0;
const waiting: (() => void)[] = [];

function aborted(signal?: AbortSignal): Error {
  return err('TIMEOUT', 'key generation was cancelled: the request ran out of time', { cause: signal?.reason });
}

/**
 * generateKey off the event loop: the key pair is made in libuv's thread pool, a few at a time, so a
 * burst of RSA creates never stalls other work. A request that is cancelled while it waits for a
 * slot generates nothing.
 */
export async function generateKeyAsync(type: KeyType, signal?: AbortSignal): Promise<KeyMaterial> {
  const info = KEY_TYPE_INFO[type];
  if (info.family === 'symmetric') return { type, secret: randomBytes(64) };
  if (signal?.aborted) throw aborted(signal);
  // a finished generation hands its slot straight to the next waiter
  if (generating < GENERATE_SLOTS) generating++;
  else
    await new Promise<void>((resolve, reject) => {
      const go = () => {
        signal?.removeEventListener('abort', cancel);
        resolve();
      };
      const cancel = () => {
        const i = waiting.indexOf(go);
        if (i >= 0) waiting.splice(i, 1);
        reject(aborted(signal));
      };
      waiting.push(go);
      signal?.addEventListener('abort', cancel, { once: true });
    });
  try {
    const enc = { privateKeyEncoding: { type: 'pkcs8', format: 'der' }, publicKeyEncoding: { type: 'spki', format: 'der' } } as const;
    const pair = (alg: 'ec' | 'ed25519' | 'rsa', opts: object) =>
      new Promise<{ publicKey: Buffer; privateKey: Buffer }>((resolve, reject) =>
        generateKeyPair(alg as 'ec', { ...opts, ...enc } as never, (e: Error | null, publicKey: Buffer, privateKey: Buffer) =>
          e ? reject(e) : resolve({ publicKey, privateKey }),
        ),
      );
    const kp =
      info.family === 'ec'
        ? await pair('ec', { namedCurve: info.curve! })
        : info.family === 'ed25519'
          ? await pair('ed25519', {})
          : await pair('rsa', { modulusLength: info.bits!, publicExponent: 65537 });
    return { type, secret: kp.privateKey, publicKey: kp.publicKey };
  } finally {
    const next = waiting.shift();
    if (next) next();
    else generating--;
  }
}

const CURVE_TYPE: Record<string, KeyType> = { prime256v1: 'ec-p256', secp384r1: 'ec-p384', secp256k1: 'secp256k1' };

/** The contract key type of a node key object, or an UNSUPPORTED error. */
export function keyTypeOf(k: KeyObject): KeyType {
  const t = k.asymmetricKeyType;
  const d = k.asymmetricKeyDetails ?? {};
  if (t === 'ec') {
    const kt = CURVE_TYPE[d.namedCurve ?? ''];
    if (kt) return kt;
    throw err('UNSUPPORTED', `EC curve '${d.namedCurve}' is not supported: use P-256, P-384 or secp256k1`);
  }
  if (t === 'ed25519') return 'ed25519';
  if (t === 'rsa' || t === 'rsa-pss') {
    if (d.modulusLength === 2048) return 'rsa-2048';
    if (d.modulusLength === 3072) return 'rsa-3072';
    throw err('UNSUPPORTED', `RSA-${d.modulusLength} is not supported: use 2048 or 3072 bits`);
  }
  throw err('UNSUPPORTED', `key algorithm '${t}' is not supported`);
}

function looksPem(b: Buffer): boolean {
  return b.subarray(0, 64).toString('latin1').includes('-----BEGIN');
}

/**
 * Parse user-supplied key material: PKCS#8 (or SEC1 / PKCS#1) private key in DER or PEM, or 32 raw
 * bytes for aes256. `expected` checks the type when the user named one.
 */
export function parseKeyMaterial(input: Buffer, expected?: KeyType): KeyMaterial {
  if (expected === 'aes256' || (expected === undefined && input.length === 32 && !looksPem(input))) {
    if (input.length !== 32) throw err('INVALID_INPUT', `an aes256 key is exactly 32 raw bytes, got ${input.length}`);
    // like KES on import: the key as given, with a fresh HMAC key
    return { type: 'aes256', secret: Buffer.concat([input, randomBytes(32)]) };
  }
  let k: KeyObject;
  try {
    k = looksPem(input)
      ? createPrivateKey({ key: input.toString('latin1'), format: 'pem' })
      : createPrivateKey({ key: input, format: 'der', type: 'pkcs8' });
  } catch {
    throw err('INVALID_INPUT', 'not a private key: expected PKCS#8 in DER or PEM (or 32 raw bytes for aes256)');
  }
  const type = keyTypeOf(k);
  if (expected && expected !== type) throw err('INVALID_INPUT', `the key is ${type}, not ${expected}`);
  return {
    type,
    secret: k.export({ type: 'pkcs8', format: 'der' }) as Buffer,
    publicKey: createPublicKey(k).export({ type: 'spki', format: 'der' }) as Buffer,
  };
}

/** Parse a public key (SPKI DER or PEM, or a certificate PEM). */
export function parsePublicKey(input: Buffer): KeyObject {
  try {
    return looksPem(input) ? createPublicKey(input.toString('latin1')) : createPublicKey({ key: input, format: 'der', type: 'spki' });
  } catch {
    throw err('INVALID_INPUT', 'not a public key: expected SPKI in DER or PEM');
  }
}

export function privateKeyObject(pkcs8: Buffer): KeyObject {
  try {
    return createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
  } catch {
    throw err('INVALID_INPUT', 'stored private key is not valid PKCS#8');
  }
}

/**
 * Parsed public keys, shared by the whole process: OpenSSL 3 takes ~0.15 ms to decode an SPKI, and one
 * key is parsed again and again (the keyring's verify, a Canton signer, the delegation that names it).
 * Public keys are no secret; KeyObjects are immutable. Keyed by the DER's base64 (a record's own form).
 */
const PUBLICS = new LRUCache<string, KeyObject>({ max: 20_000 });

/** SPKI DER (bytes, or base64 as records hold it) as a KeyObject, parsed once per process */
export function publicKeyObject(spki: Buffer | string): KeyObject {
  const id = typeof spki === 'string' ? spki : spki.toString('base64');
  let k = PUBLICS.get(id);
  if (!k) {
    try {
      k = createPublicKey({ key: typeof spki === 'string' ? Buffer.from(spki, 'base64') : spki, format: 'der', type: 'spki' });
    } catch {
      throw err('INVALID_INPUT', 'public key is not valid SPKI DER');
    }
    PUBLICS.set(id, k);
  }
  return k;
}

export function spkiOf(k: KeyObject): Buffer {
  return createPublicKey(k).export({ type: 'spki', format: 'der' }) as Buffer;
}

export function toPem(der: Buffer, label: 'PRIVATE KEY' | 'PUBLIC KEY'): string {
  const b64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}-----END ${label}-----\n`;
}
