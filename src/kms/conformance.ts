/**
 * The KMS driver conformance kit (`keyport driver-test`): Canton's driver test kit and more, run
 * against any Driver. Every check is a real call to the KMS; public-key operations (verify, encrypt)
 * are done locally with src/crypto, so a driver cannot pass by agreeing with itself.
 *
 * The kit runs on the bare driver (not instrument()ed) so that what the driver itself throws is seen:
 * a non-KeyportError is a crash, INTERNAL is an unmapped error, and both fail a check. Each call has
 * the kit's own time limit so that a hanging driver fails a check instead of hanging the kit.
 *
 * Keys are named `keyport-conformance-<run>-<what>` and deleted at the end unless `cleanup: false`.
 */
import { randomBytes, generateKeyPairSync } from 'node:crypto';
import { isKeyportError, oneLine, type ErrorCode } from '../errors.js';
import { keyTypeOf, publicKeyObject } from '../crypto/keys.js';
import { verifyData } from '../crypto/sign.js';
import { eciesEncrypt, rsaOaepEncrypt } from '../crypto/asym.js';
import { openDriver } from './registry.js';
import { KmsAddress } from './address.js';
import type { Driver, EncryptionAlgoSpec, EncryptionKeySpec, Health, SigningAlgoSpec, SigningKeySpec } from './driver.js';

export interface CheckResult {
  check: string;
  spec?: string;
  outcome: 'pass' | 'fail' | 'skip';
  detail?: string;
  ms: number;
}

export interface ConformanceOptions {
  /** restrict the specs exercised (default: everything the driver says it supports) */
  specs?: { signing?: SigningKeySpec[]; encryption?: EncryptionKeySpec[]; symmetric?: boolean };
  /** delete the keys the kit created (default true) */
  cleanup?: boolean;
  /** called as each result is known (for live output) */
  onResult?: (r: CheckResult) => void;
  /** the address the driver was opened with: lets the kit derive the unreachable / bad-credentials addresses */
  uri?: string | KmsAddress;
  /** same scheme, pointing at a closed port; derived from `uri` when possible */
  unreachableUri?: string | KmsAddress;
  /** same KMS, wrong credentials; derived from `uri` when it carries credentials */
  badCredentialsUri?: string | KmsAddress;
  /** how long health() may take to reach ok (default 30 s) */
  healthWaitMs?: number;
  /** the kit's limit per driver call (default 60 s) */
  callTimeoutMs?: number;
  /** opens the unreachable / bad-credentials addresses (default openDriver) */
  open?: (a: KmsAddress) => Promise<Driver>;
}

export const CONFORMANCE_PREFIX = 'keyport-conformance-';

/** the one signing algorithm keyport uses with each key spec */
export const SIGNING_ALGO_OF: Record<SigningKeySpec, SigningAlgoSpec> = {
  'ec-p256': 'ecdsa-sha256',
  secp256k1: 'ecdsa-sha256',
  'ec-p384': 'ecdsa-sha384',
  ed25519: 'ed25519',
  'rsa-2048': 'rsa-pss-sha256',
  'rsa-3072': 'rsa-pss-sha256',
};
export const ENCRYPTION_ALGO_OF: Record<EncryptionKeySpec, EncryptionAlgoSpec> = {
  'rsa-2048': 'rsa-oaep-sha256',
  'rsa-3072': 'rsa-oaep-sha256',
  'ec-p256': 'ecies-p256-hkdf-sha256-aes-gcm',
};
const ALL_SIGNING_ALGOS: SigningAlgoSpec[] = ['ecdsa-sha256', 'ecdsa-sha384', 'ed25519', 'rsa-pss-sha256'];
const ALL_ENCRYPTION_ALGOS: EncryptionAlgoSpec[] = ['rsa-oaep-sha256', 'ecies-p256-hkdf-sha256-aes-gcm'];

class Skip extends Error {}
class Fail extends Error {}
/** the kit's own time limit (not the driver's TIMEOUT) */
class KitTimeout extends Error {}

const CREDENTIAL_PARAMS =
  /^(pin-value|pin|password|passphrase|secret|secret-key|secret-access-key|access-key-id|access-key|client-secret|api-key|token-secret|session-token)$/i;
const WRONG_SECRET = 'keyport-conformance-wrong-credential';

/** an address given as a string is parsed here, once, at the kit's edge */
const addressOf = (a: string | KmsAddress, what?: string): KmsAddress =>
  typeof a === 'string' ? KmsAddress.parse(a, what ? { what } : {}) : a;

/**
 * The same KMS address pointing at a closed port (127.0.0.1:1), or undefined when it names no network
 * endpoint (local:, pkcs11:, most driver: modules).
 */
export function deriveUnreachableUri(uri: string | KmsAddress): KmsAddress | undefined {
  const a = addressOf(uri);
  const params = a.driverParams();
  const changes: Record<string, string> = {};
  for (const [k, v] of Object.entries(params)) {
    if (/^https?:\/\//i.test(v)) {
      try {
        const url = new URL(v);
        url.hostname = '127.0.0.1';
        url.port = '1';
        changes[k] = url.origin + url.pathname.replace(/\/$/, '');
      } catch {
        changes[k] = `http://127.0.0.1:1`;
      }
    } else if (k === 'endpoint' || k === 'api-endpoint') changes[k] = '127.0.0.1:1';
  }
  if ('host' in params) {
    changes['host'] = '127.0.0.1';
    changes['port'] = '1';
  } else if ('port' in params) changes['port'] = '1';
  return Object.keys(changes).length ? a.with(changes) : undefined;
}

/** The same KMS address with its credentials replaced by wrong ones, or undefined when it carries none. */
export function deriveBadCredentialsUri(uri: string | KmsAddress): KmsAddress | undefined {
  const a = addressOf(uri);
  const changes: Record<string, string> = {};
  for (const k of Object.keys(a.driverParams()))
    if (CREDENTIAL_PARAMS.test(k)) changes[k] = k.toLowerCase().startsWith('pin') ? '000000' : WRONG_SECRET;
  return Object.keys(changes).length ? a.with(changes) : undefined;
}

function describe(e: unknown): string {
  if (e instanceof Fail || e instanceof Skip) return e.message;
  if (e instanceof KitTimeout) return e.message;
  if (isKeyportError(e)) return `${e.code}: ${oneLine(e)}`;
  return `crashed with a non-keyport error (${e instanceof Error ? e.constructor.name : typeof e}): ${oneLine(e).slice(0, 200)}`;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Mutate the tail of a real key id so it is well-formed for the KMS but names no key. */
function unknownIdLike(id: string): string {
  // a KMS that numbers its keys (PyKMIP: 1, 2, 3…): changed digits may name another key made earlier, so go far past them
  if (/^[0-9]{1,15}$/.test(id)) return String(Number(id) + 1_000_000_000);
  const chars = [...id];
  let changed = 0;
  for (let i = chars.length - 1; i >= 0 && changed < 4; i--) {
    const c = chars[i]!;
    if (/[0-9]/.test(c)) chars[i] = String((Number(c) + 5) % 10);
    else if (/[a-f]/.test(c)) chars[i] = String.fromCharCode(((c.charCodeAt(0) - 97 + 3) % 6) + 97);
    else if (/[A-F]/.test(c)) chars[i] = String.fromCharCode(((c.charCodeAt(0) - 65 + 3) % 6) + 65);
    else continue;
    changed++;
  }
  if (changed === 0) return `${id}-missing`;
  return chars.join('');
}

interface MadeKey {
  id: string;
  kind: 'signing' | 'encryption' | 'symmetric';
  spec: string;
  label: string;
  deleted?: boolean;
}

export async function runConformance(driver: Driver, opts: ConformanceOptions = {}): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const callTimeout = opts.callTimeoutMs ?? 60_000;
  const run = randomBytes(3).toString('hex');
  const made: MadeKey[] = [];
  const cleanup = opts.cleanup ?? true;
  const open = opts.open ?? ((a: KmsAddress) => openDriver(a));

  const push = (r: CheckResult) => {
    results.push(r);
    opts.onResult?.(r);
  };

  /** one check: a thrown Skip skips, any other throw fails; a returned string is the detail */
  async function check(name: string, spec: string | undefined, fn: () => Promise<string | undefined>): Promise<boolean> {
    const t0 = performance.now();
    let outcome: CheckResult['outcome'] = 'pass';
    let detail: string | undefined;
    try {
      const d = await fn();
      if (typeof d === 'string' && d) detail = d;
    } catch (e) {
      outcome = e instanceof Skip ? 'skip' : 'fail';
      detail = describe(e);
    }
    push({ check: name, ...(spec ? { spec } : {}), outcome, ...(detail ? { detail } : {}), ms: Math.round(performance.now() - t0) });
    return outcome === 'pass';
  }
  const skip = (name: string, spec: string | undefined, why: string) =>
    push({ check: name, ...(spec ? { spec } : {}), outcome: 'skip', detail: why, ms: 0 });

  /** a driver call under the kit's time limit (the abandoned call's late rejection is swallowed) */
  function call<T>(what: string, f: () => Promise<T>, ms = callTimeout): Promise<T> {
    const p = (async () => f())();
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        p.catch(() => undefined);
        reject(new KitTimeout(`${what} did not return within ${Math.round(ms / 1000)} s`));
      }, ms);
      p.then(
        (v) => (clearTimeout(t), resolve(v)),
        (e) => (clearTimeout(t), reject(e)),
      );
    });
  }

  /** the call must fail with a KeyportError whose code is in `want` (`also` = accepted with a note) */
  async function mustFail(what: string, f: () => Promise<unknown>, want: ErrorCode[], also: ErrorCode[] = []): Promise<string> {
    let e: unknown;
    try {
      await call(what, f);
    } catch (x) {
      e = x;
    }
    if (e === undefined) throw new Fail(`${what} succeeded; it must fail with ${want.join(' or ')}`);
    if (e instanceof KitTimeout) throw new Fail(e.message);
    if (!isKeyportError(e)) throw new Fail(`${what}: ${describe(e)}`);
    if (want.includes(e.code)) return e.code;
    if (also.includes(e.code)) return `${e.code} (${want.join(' or ')} expected; accepted)`;
    throw new Fail(`${what} failed with ${e.code} instead of ${want.join(' or ')}: ${oneLine(e)}`);
  }

  /** the call may succeed or fail cleanly (a KeyportError other than INTERNAL); it must not crash */
  async function cleanOutcome<T>(what: string, f: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; code: ErrorCode }> {
    try {
      return { ok: true, value: await call(what, f) };
    } catch (e) {
      if (e instanceof KitTimeout) throw new Fail(e.message);
      if (!isKeyportError(e)) throw new Fail(`${what}: ${describe(e)}`);
      if (e.code === 'INTERNAL') throw new Fail(`${what} failed with an unmapped error (INTERNAL): ${oneLine(e)}`);
      return { ok: false, code: e.code };
    }
  }

  const keyName = (label: string) => `${CONFORMANCE_PREFIX}${run}-${label}`.slice(0, 63);

  // ---- health -------------------------------------------------------------------------------
  const healthy = await check('health', undefined, async () => {
    const deadline = Date.now() + (opts.healthWaitMs ?? 30_000);
    let last: Health | undefined;
    for (;;) {
      try {
        last = await call('health()', () => driver.health(), Math.max(5_000, opts.healthWaitMs ?? 30_000));
      } catch (e) {
        throw new Fail(`health() must never throw: ${describe(e)}`);
      }
      if (last?.state === 'ok') return;
      if (last?.state === 'fatal' || Date.now() >= deadline) break;
      await sleep(1000);
    }
    throw new Fail(`health is ${last?.state ?? 'invalid'}${last && 'reason' in last ? `: ${last.reason}` : ''}`);
  });
  if (!healthy) {
    skip('remaining checks', undefined, 'health never reached ok');
    return results;
  }

  // ---- supported specs (symmetric support is probed by generating the symmetric key) ----------
  let signingSpecs: SigningKeySpec[] = [];
  let signingAlgos: SigningAlgoSpec[] = [];
  let encSpecs: EncryptionKeySpec[] = [];
  let encAlgos: EncryptionAlgoSpec[] = [];
  let sym: MadeKey | undefined;
  let symProbe: CheckResult | undefined;
  await check('supported-specs', undefined, async () => {
    const list = <T>(what: string, f: () => T[]): T[] => {
      let v: unknown;
      try {
        v = f();
      } catch (e) {
        throw new Fail(`${what}() threw: ${describe(e)}`);
      }
      if (!Array.isArray(v)) throw new Fail(`${what}() did not return an array`);
      return v as T[];
    };
    signingSpecs = list('supportedSigningKeySpecs', () => driver.supportedSigningKeySpecs());
    signingAlgos = list('supportedSigningAlgoSpecs', () => driver.supportedSigningAlgoSpecs());
    encSpecs = list('supportedEncryptionKeySpecs', () => driver.supportedEncryptionKeySpecs());
    encAlgos = list('supportedEncryptionAlgoSpecs', () => driver.supportedEncryptionAlgoSpecs());
    const unknownSpecs = [
      ...signingSpecs.filter((s) => !(s in SIGNING_ALGO_OF)),
      ...signingAlgos.filter((s) => !ALL_SIGNING_ALGOS.includes(s)),
      ...encSpecs.filter((s) => !(s in ENCRYPTION_ALGO_OF)),
      ...encAlgos.filter((s) => !ALL_ENCRYPTION_ALGOS.includes(s)),
    ];
    if (unknownSpecs.length) throw new Fail(`unknown spec names: ${unknownSpecs.join(', ')} (see src/kms/driver.ts)`);

    let symmetric = false;
    let symNote = '';
    if (opts.specs?.symmetric !== false) {
      const t0 = performance.now();
      let outcome: CheckResult['outcome'] = 'pass';
      let detail: string | undefined;
      try {
        const id = await call('generateSymmetricKey', () => driver.generateSymmetricKey(keyName('aes256')));
        if (typeof id !== 'string' || !id) throw new Fail('generateSymmetricKey returned no key id');
        sym = { id, kind: 'symmetric', spec: 'aes256', label: 'aes256' };
        made.push(sym);
        symmetric = true;
      } catch (e) {
        if (isKeyportError(e, 'UNSUPPORTED')) {
          outcome = 'skip';
          detail = 'the KMS has no symmetric keys (UNSUPPORTED)';
          symNote = 'symmetric: none';
        } else {
          outcome = 'fail';
          detail = describe(e);
          symmetric = true; // it claims to, by not saying UNSUPPORTED
          symNote = 'symmetric: generation failed';
        }
      }
      symProbe = {
        check: 'symmetric.generate',
        spec: 'aes256',
        outcome,
        ...(detail ? { detail } : {}),
        ms: Math.round(performance.now() - t0),
      };
    }
    const empty = [
      signingSpecs.length ? '' : 'signing',
      encSpecs.length ? '' : 'encryption',
      symmetric || opts.specs?.symmetric === false ? '' : 'symmetric',
    ].filter(Boolean);
    const summary =
      `signing: ${signingSpecs.join(' ') || 'none'}; encryption: ${encSpecs.join(' ') || 'none'}; ` +
      `${symNote || (opts.specs?.symmetric === false ? 'symmetric: not tested' : 'symmetric: aes256')}`;
    if (!signingSpecs.length && !encSpecs.length && !symmetric) throw new Fail(`the driver supports nothing (${summary})`);
    return empty.length ? `${summary} (empty: ${empty.join(', ')})` : summary;
  });
  if (opts.specs?.signing) signingSpecs = signingSpecs.filter((s) => opts.specs!.signing!.includes(s));
  if (opts.specs?.encryption) encSpecs = encSpecs.filter((s) => opts.specs!.encryption!.includes(s));

  // ---- symmetric -------------------------------------------------------------------------------
  if (symProbe) push(symProbe);
  if (sym) {
    const s = sym;
    await check('symmetric.key-active', 'aes256', async () => {
      await call('keyExistsAndIsActive', () => driver.keyExistsAndIsActive(s.id));
    });
    await check('symmetric.round-trip', 'aes256', async () => {
      for (const n of [1, 32, 4096]) {
        const pt = randomBytes(n);
        const ct = await call('encryptSymmetric', () => driver.encryptSymmetric(s.id, pt));
        if (!Buffer.isBuffer(ct)) throw new Fail('encryptSymmetric did not return a Buffer');
        if (ct.length >= pt.length && ct.includes(pt) && n >= 32) throw new Fail('the ciphertext contains the plaintext');
        const back = await call('decryptSymmetric', () => driver.decryptSymmetric(s.id, ct));
        if (!Buffer.isBuffer(back) || !back.equals(pt)) throw new Fail(`decryptSymmetric did not return the ${n}-byte plaintext`);
      }
      const a = await call('encryptSymmetric', () => driver.encryptSymmetric(s.id, Buffer.from('same')));
      const b = await call('encryptSymmetric', () => driver.encryptSymmetric(s.id, Buffer.from('same')));
      if (a.equals(b)) return 'two encryptions of the same plaintext are identical (no random IV?)';
      return '1, 32 and 4096 bytes';
    });
    await check('symmetric.tampered-ciphertext', 'aes256', async () => {
      const ct = await call('encryptSymmetric', () => driver.encryptSymmetric(s.id, randomBytes(32)));
      const codes: string[] = [];
      const variants: [string, Buffer][] = [
        ['last byte flipped', Buffer.from(ct)],
        ['middle byte flipped', Buffer.from(ct)],
        ['truncated', ct.subarray(0, Math.max(0, ct.length - 5))],
      ];
      variants[0]![1][ct.length - 1] ^= 0x01;
      variants[1]![1][ct.length >> 1] ^= 0x80;
      for (const [what, bad] of variants) {
        const call = () => driver.decryptSymmetric(s.id, bad);
        codes.push(
          `${what}: ${await mustFail(`decryptSymmetric of a ciphertext with the ${what}`, call, ['INVALID_CIPHERTEXT'], ['INVALID_INPUT'])}`,
        );
      }
      return codes.join('; ');
    });
  }

  // ---- signing --------------------------------------------------------------------------------
  const signingKeys: MadeKey[] = [];
  for (const spec of signingSpecs) {
    let key: MadeKey | undefined;
    await check('signing.generate', spec, async () => {
      const id = await call('generateSigningKeyPair', () => driver.generateSigningKeyPair(spec, keyName(`sig-${spec}`)));
      if (typeof id !== 'string' || !id) throw new Fail('generateSigningKeyPair returned no key id');
      key = { id, kind: 'signing', spec, label: `sig-${spec}` };
      made.push(key);
      signingKeys.push(key);
    });
    if (!key) {
      for (const c of ['signing.key-active', 'signing.public-key', 'signing.sign-verify']) skip(c, spec, 'no key: generate failed');
      continue;
    }
    const k = key;
    await check('signing.key-active', spec, async () => {
      await call('keyExistsAndIsActive', () => driver.keyExistsAndIsActive(k.id));
    });
    let pub: ReturnType<typeof publicKeyObject> | undefined;
    await check('signing.public-key', spec, async () => {
      const pk = await call('getPublicKey', () => driver.getPublicKey(k.id));
      if (!pk || !Buffer.isBuffer(pk.spki)) throw new Fail('getPublicKey did not return { spki: Buffer }');
      const obj = publicKeyObject(pk.spki);
      const t = keyTypeOf(obj);
      if (t !== spec) throw new Fail(`the SPKI is a ${t} key, not ${spec}`);
      if (pk.spec !== spec) throw new Fail(`getPublicKey says spec ${pk.spec}, the key is ${spec}`);
      pub = obj;
    });
    await check('signing.sign-verify', spec, async () => {
      if (!pub) throw new Skip('no public key');
      const algo = SIGNING_ALGO_OF[spec];
      if (!signingAlgos.includes(algo))
        throw new Fail(`${spec} is supported but its algorithm ${algo} is not in supportedSigningAlgoSpecs`);
      const msg = Buffer.from(`keyport conformance ${run} ${spec} ${randomBytes(8).toString('hex')}`);
      const sig = await call('sign', () => driver.sign(k.id, msg, algo));
      if (!Buffer.isBuffer(sig)) throw new Fail('sign did not return a Buffer');
      if (!verifyData(spec, pub, msg, sig, 'der'))
        throw new Fail(`the ${algo} signature does not verify locally with the KMS's public key (ECDSA must be DER)`);
      const other = Buffer.concat([msg, Buffer.from('!')]);
      if (verifyData(spec, pub, other, sig, 'der')) throw new Fail('the signature also verifies for a different message');
      return algo;
    });
  }

  // ---- encryption -----------------------------------------------------------------------------
  const encKeys: MadeKey[] = [];
  for (const spec of encSpecs) {
    let key: MadeKey | undefined;
    await check('encryption.generate', spec, async () => {
      const id = await call('generateEncryptionKeyPair', () => driver.generateEncryptionKeyPair(spec, keyName(`enc-${spec}`)));
      if (typeof id !== 'string' || !id) throw new Fail('generateEncryptionKeyPair returned no key id');
      key = { id, kind: 'encryption', spec, label: `enc-${spec}` };
      made.push(key);
      encKeys.push(key);
    });
    if (!key) {
      for (const c of ['encryption.key-active', 'encryption.public-key', 'encryption.decrypt']) skip(c, spec, 'no key: generate failed');
      continue;
    }
    const k = key;
    await check('encryption.key-active', spec, async () => {
      await call('keyExistsAndIsActive', () => driver.keyExistsAndIsActive(k.id));
    });
    let pub: ReturnType<typeof publicKeyObject> | undefined;
    await check('encryption.public-key', spec, async () => {
      const pk = await call('getPublicKey', () => driver.getPublicKey(k.id));
      if (!pk || !Buffer.isBuffer(pk.spki)) throw new Fail('getPublicKey did not return { spki: Buffer }');
      const obj = publicKeyObject(pk.spki);
      const t = keyTypeOf(obj);
      if (t !== spec) throw new Fail(`the SPKI is a ${t} key, not ${spec}`);
      if (pk.spec !== spec) throw new Fail(`getPublicKey says spec ${pk.spec}, the key is ${spec}`);
      pub = obj;
    });
    await check('encryption.decrypt', spec, async () => {
      if (!pub) throw new Skip('no public key');
      const algo = ENCRYPTION_ALGO_OF[spec];
      if (!encAlgos.includes(algo)) throw new Fail(`${spec} is supported but its algorithm ${algo} is not in supportedEncryptionAlgoSpecs`);
      for (const n of [1, 32, 190]) {
        const pt = randomBytes(n);
        const ct = algo === 'rsa-oaep-sha256' ? rsaOaepEncrypt(pub, pt) : eciesEncrypt(pub, pt);
        const back = await call('decryptAsymmetric', () => driver.decryptAsymmetric(k.id, ct, algo));
        if (!Buffer.isBuffer(back) || !back.equals(pt))
          throw new Fail(`decryptAsymmetric did not return the ${n}-byte plaintext encrypted locally with ${algo}`);
      }
      const bad = algo === 'rsa-oaep-sha256' ? rsaOaepEncrypt(pub, randomBytes(32)) : eciesEncrypt(pub, randomBytes(32));
      bad[bad.length - 1] ^= 0x01;
      const code = await mustFail(
        'decryptAsymmetric of a tampered ciphertext',
        () => driver.decryptAsymmetric(k.id, bad, algo),
        ['INVALID_CIPHERTEXT'],
        ['INVALID_INPUT'],
      );
      return `${algo}; tampered: ${code}`;
    });
  }

  const anyKey = made[0];

  // ---- unknown key ----------------------------------------------------------------------------
  await check('unknown-key', undefined, async () => {
    if (!anyKey) throw new Skip('no key was created to derive an unknown id from');
    const ghost = unknownIdLike(anyKey.id);
    const c1 = await mustFail(`keyExistsAndIsActive(${ghost})`, () => driver.keyExistsAndIsActive(ghost), ['NOT_FOUND']);
    const use =
      anyKey.kind === 'symmetric'
        ? () => driver.encryptSymmetric(ghost, Buffer.from('x'))
        : anyKey.kind === 'signing'
          ? () => driver.sign(ghost, Buffer.from('x'), SIGNING_ALGO_OF[anyKey.spec as SigningKeySpec])
          : () => driver.getPublicKey(ghost);
    const c2 = await mustFail(`using the unknown key ${ghost}`, use, ['NOT_FOUND']);
    const bogus = `${CONFORMANCE_PREFIX}no-such-key-${run}`;
    const c3 = await cleanOutcome(`keyExistsAndIsActive(${bogus})`, () => driver.keyExistsAndIsActive(bogus));
    if (c3.ok) throw new Fail(`keyExistsAndIsActive(${bogus}) succeeded for a key that does not exist`);
    return `exists: ${c1}; use: ${c2}; malformed id: ${c3.code}`;
  });

  // ---- wrong usage / algorithm ----------------------------------------------------------------
  const sk = signingKeys[0];
  await check('wrong-usage.sign-algorithm', sk?.spec, async () => {
    if (!sk) throw new Skip('no signing key');
    const right = SIGNING_ALGO_OF[sk.spec as SigningKeySpec];
    const wrong = signingAlgos.find((a) => a !== right) ?? ALL_SIGNING_ALGOS.find((a) => a !== right)!;
    const call = () => driver.sign(sk.id, Buffer.from('x'), wrong);
    return `${wrong}: ${await mustFail(`sign with ${wrong} using a ${sk.spec} key`, call, ['KEY_USAGE', 'UNSUPPORTED'], ['INVALID_INPUT'])}`;
  });
  const nonEncSigner =
    signingKeys.find((k) => !(k.spec in ENCRYPTION_ALGO_OF)) ?? signingKeys.find((k) => k.spec !== 'ec-p256' && !k.spec.startsWith('rsa'));
  await check('wrong-usage.decrypt-with-signing-key', nonEncSigner?.spec ?? sk?.spec, async () => {
    const k = nonEncSigner ?? sk;
    if (!k) throw new Skip('no signing key');
    const algo = k.spec.startsWith('rsa') ? 'rsa-oaep-sha256' : 'ecies-p256-hkdf-sha256-aes-gcm';
    return mustFail(
      `decryptAsymmetric with the signing key ${k.spec}`,
      () => driver.decryptAsymmetric(k.id, randomBytes(k.spec.startsWith('rsa') ? 256 : 120), algo),
      ['KEY_USAGE', 'UNSUPPORTED'],
      ['INVALID_INPUT', 'INVALID_CIPHERTEXT'],
    );
  });
  const asym = signingKeys[0] ?? encKeys[0];
  await check('wrong-usage.symmetric-with-asymmetric-key', asym?.spec, async () => {
    if (!asym) throw new Skip('no asymmetric key');
    return mustFail(
      `encryptSymmetric with the ${asym.kind} key ${asym.spec}`,
      () => driver.encryptSymmetric(asym.id, Buffer.from('x')),
      ['KEY_USAGE', 'UNSUPPORTED'],
      ['INVALID_INPUT'],
    );
  });
  await check('wrong-usage.asymmetric-with-symmetric-key', 'aes256', async () => {
    if (!sym) throw new Skip('no symmetric key');
    const algo = signingAlgos[0] ?? 'ecdsa-sha256';
    return mustFail(
      `sign with the symmetric key`,
      () => driver.sign(sym!.id, Buffer.from('x'), algo),
      ['KEY_USAGE', 'UNSUPPORTED'],
      ['INVALID_INPUT'],
    );
  });
  const ek = encKeys.find((k) => k.spec in SIGNING_ALGO_OF && signingAlgos.includes(SIGNING_ALGO_OF[k.spec as SigningKeySpec]));
  await check('wrong-usage.sign-with-encryption-key', ek?.spec, async () => {
    if (!ek) throw new Skip('no encryption key whose type can also sign');
    const algo = SIGNING_ALGO_OF[ek.spec as SigningKeySpec];
    const r = await cleanOutcome(`sign with the encryption key ${ek.spec}`, () => driver.sign(ek.id, Buffer.from('x'), algo));
    if (r.ok) throw new Skip('not enforced: the KMS signed with a key created for encryption (keyport keeps the usage itself)');
    if (!['KEY_USAGE', 'UNSUPPORTED', 'INVALID_INPUT'].includes(r.code))
      throw new Fail(`sign with an encryption key failed with ${r.code} instead of KEY_USAGE`);
    return r.code;
  });

  // ---- oversize input -------------------------------------------------------------------------
  const MiB = 1024 * 1024;
  await check('oversize.symmetric-1mib', 'aes256', async () => {
    if (!sym) throw new Skip('no symmetric key');
    const pt = randomBytes(MiB);
    const r = await cleanOutcome('encryptSymmetric of 1 MiB', () => driver.encryptSymmetric(sym!.id, pt));
    if (!r.ok) return `rejected: ${r.code}`;
    const back = await cleanOutcome('decryptSymmetric of the 1 MiB ciphertext', () => driver.decryptSymmetric(sym!.id, r.value));
    if (!back.ok) throw new Fail(`encrypting 1 MiB worked but decrypting it failed with ${back.code}`);
    if (!back.value.equals(pt)) throw new Fail('1 MiB round trip returned other bytes');
    return 'accepted (round trip ok)';
  });
  await check('oversize.sign-1mib', sk?.spec, async () => {
    if (!sk) throw new Skip('no signing key');
    const msg = randomBytes(MiB);
    const r = await cleanOutcome('sign of 1 MiB', () => driver.sign(sk.id, msg, SIGNING_ALGO_OF[sk.spec as SigningKeySpec]));
    if (!r.ok) return `rejected: ${r.code}`;
    const pk = await call('getPublicKey', () => driver.getPublicKey(sk.id));
    if (!verifyData(sk.spec as SigningKeySpec, publicKeyObject(pk.spki), msg, r.value, 'der'))
      throw new Fail('the signature over 1 MiB does not verify');
    return 'accepted (signature verifies)';
  });
  await check('oversize.decrypt-asymmetric-1mib', encKeys[0]?.spec, async () => {
    const k = encKeys[0];
    if (!k) throw new Skip('no encryption key');
    const r = await cleanOutcome('decryptAsymmetric of 1 MiB of garbage', () =>
      driver.decryptAsymmetric(k.id, randomBytes(MiB), ENCRYPTION_ALGO_OF[k.spec as EncryptionKeySpec]),
    );
    if (r.ok) throw new Fail('decryptAsymmetric accepted 1 MiB of random bytes as a ciphertext');
    return `rejected: ${r.code}`;
  });

  // ---- import ---------------------------------------------------------------------------------
  const importKey = driver.importKey?.bind(driver);
  await check('import.aes256', 'aes256', async () => {
    if (!importKey) throw new Skip('the driver has no importKey (BYOK)');
    if (!sym) throw new Skip('the KMS has no symmetric keys');
    let id: string;
    try {
      id = await call('importKey', () => importKey({ kind: 'symmetric', spec: 'aes256', secret: randomBytes(32) }, keyName('imp-aes256')));
    } catch (e) {
      if (isKeyportError(e, 'UNSUPPORTED')) throw new Skip(`importKey: ${oneLine(e)}`);
      throw e;
    }
    made.push({ id, kind: 'symmetric', spec: 'aes256', label: 'imp-aes256' });
    const pt = randomBytes(48);
    const ct = await call('encryptSymmetric', () => driver.encryptSymmetric(id, pt));
    const back = await call('decryptSymmetric', () => driver.decryptSymmetric(id, ct));
    if (!back.equals(pt)) throw new Fail('the imported AES key does not round-trip');
    if (sym) {
      const other = await cleanOutcome('decryptSymmetric under another key', () => driver.decryptSymmetric(sym!.id, ct));
      if (other.ok) throw new Fail('a ciphertext of the imported key decrypts under a different key');
    }
  });
  await check('import.ec-p256', 'ec-p256', async () => {
    if (!importKey) throw new Skip('the driver has no importKey (BYOK)');
    const asSigning = signingSpecs.includes('ec-p256');
    const asEnc = !asSigning && encSpecs.includes('ec-p256');
    if (!asSigning && !asEnc) throw new Skip('ec-p256 is not supported');
    const kp = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const pkcs8 = kp.privateKey.export({ type: 'pkcs8', format: 'der' }) as Buffer;
    const spki = kp.publicKey.export({ type: 'spki', format: 'der' }) as Buffer;
    let id: string;
    try {
      id = await call('importKey', () =>
        importKey({ kind: asSigning ? 'signing' : 'encryption', spec: 'ec-p256', secret: pkcs8 }, keyName('imp-ec-p256')),
      );
    } catch (e) {
      if (isKeyportError(e, 'UNSUPPORTED')) throw new Skip(`importKey: ${oneLine(e)}`);
      throw e;
    }
    made.push({ id, kind: asSigning ? 'signing' : 'encryption', spec: 'ec-p256', label: 'imp-ec-p256' });
    const pk = await call('getPublicKey', () => driver.getPublicKey(id));
    if (!Buffer.from(pk.spki).equals(spki)) throw new Fail('getPublicKey of the imported key is not the public key of what was imported');
    if (asSigning) {
      const msg = randomBytes(100);
      const sig = await call('sign', () => driver.sign(id, msg, 'ecdsa-sha256'));
      if (!verifyData('ec-p256', kp.publicKey, msg, sig, 'der'))
        throw new Fail('a signature by the imported key does not verify with its public key');
      return 'imported as a signing key; sign/verify ok';
    }
    const pt = randomBytes(32);
    const back = await call('decryptAsymmetric', () =>
      driver.decryptAsymmetric(id, eciesEncrypt(kp.publicKey, pt), 'ecies-p256-hkdf-sha256-aes-gcm'),
    );
    if (!back.equals(pt)) throw new Fail('the imported key does not decrypt');
    return 'imported as an encryption key; ECIES decrypt ok';
  });

  // ---- listing --------------------------------------------------------------------------------
  await check('list-keys', undefined, async () => {
    if (!driver.listKeys) throw new Skip('the driver cannot list keys');
    const ids = new Set(made.map((m) => m.id));
    const names = new Set(made.map((m) => keyName(m.label)));
    let n = 0;
    let seen = 0;
    const it = driver.listKeys()[Symbol.asyncIterator]();
    try {
      for (;;) {
        const r = await call('listKeys', () => it.next());
        if (r.done) break;
        const k = r.value;
        if (!k || typeof k.keyId !== 'string' || !k.keyId) throw new Fail('listKeys yielded an entry without a keyId');
        if (ids.has(k.keyId) || (k.name && names.has(k.name))) seen++;
        if (++n >= 10_000) break;
      }
    } finally {
      await it.return?.().catch(() => undefined);
    }
    if (made.length && seen === 0) throw new Fail(`listKeys returned ${n} key(s) but none of the ${made.length} the kit created`);
    return `${n} key(s) listed, ${seen} of the kit's ${made.length} among them`;
  });

  // ---- unreachable / bad credentials ----------------------------------------------------------
  const probeId = anyKey?.id ?? `${CONFORMANCE_PREFIX}probe`;
  await check('unreachable', undefined, async () => {
    const u = opts.unreachableUri ? addressOf(opts.unreachableUri, '--unreachable') : opts.uri ? deriveUnreachableUri(opts.uri) : undefined;
    if (!u)
      throw new Skip(
        opts.uri ? 'the URI names no network endpoint: pass --unreachable URI' : 'no URI to derive from: pass --unreachable URI',
      );
    let d: Driver;
    try {
      d = await call('opening the unreachable URI', () => open(u));
    } catch (e) {
      if (isKeyportError(e) && e.retryable) return `open failed retryably (${e.code}) for ${u}`;
      throw new Fail(`opening ${u}: ${describe(e)} (a refused connection must be retryable: UNAVAILABLE)`);
    }
    try {
      let h: Health;
      try {
        h = await call('health()', () => d.health());
      } catch (e) {
        throw new Fail(`health() threw on an unreachable KMS: ${describe(e)}`);
      }
      if (h?.state === 'ok') throw new Fail(`health is ok for ${u} (a closed port)`);
      let e: unknown;
      try {
        await call('keyExistsAndIsActive on an unreachable KMS', () => d.keyExistsAndIsActive(probeId));
      } catch (x) {
        e = x;
      }
      if (e === undefined) throw new Fail(`keyExistsAndIsActive succeeded against ${u}`);
      if (e instanceof KitTimeout) throw new Fail(`${e.message}: the driver must give up on a refused connection`);
      if (!isKeyportError(e)) throw new Fail(describe(e));
      if (!e.retryable)
        throw new Fail(`a refused connection failed with ${e.code}, which is not retryable (want UNAVAILABLE): ${oneLine(e)}`);
      return `health ${h.state}; ${e.code} (retryable)`;
    } finally {
      await d.close?.().catch(() => undefined);
    }
  });
  await check('bad-credentials', undefined, async () => {
    const given = opts.badCredentialsUri ? addressOf(opts.badCredentialsUri, '--bad-credentials') : undefined;
    const u = given ?? (opts.uri ? deriveBadCredentialsUri(opts.uri) : undefined);
    if (!u)
      throw new Skip(
        opts.uri
          ? 'the URI carries no credentials to falsify: pass --bad-credentials URI'
          : 'no URI to derive from: pass --bad-credentials URI',
      );
    const judge = (e: unknown): string => {
      if (e instanceof KitTimeout) throw new Fail(e.message);
      if (!isKeyportError(e)) throw new Fail(describe(e));
      if (e.retryable) throw new Fail(`bad credentials failed with ${e.code}, which is retryable (want AUTH): ${oneLine(e)}`);
      if (e.code === 'AUTH' || e.code === 'PERMISSION') return e.code;
      throw new Fail(`bad credentials failed with ${e.code} instead of AUTH: ${oneLine(e)}`);
    };
    let d: Driver;
    try {
      d = await call('opening the bad-credentials URI', () => open(u));
    } catch (e) {
      return `open: ${judge(e)}`;
    }
    try {
      try {
        await call('keyExistsAndIsActive with bad credentials', () => d.keyExistsAndIsActive(probeId));
      } catch (e) {
        return judge(e);
      }
      if (given) throw new Fail(`the KMS accepted the credentials of ${u}`);
      throw new Skip(
        'the KMS accepted wrong credentials (an emulator that does not check them?): pass --bad-credentials URI to test a real one',
      );
    } finally {
      await d.close?.().catch(() => undefined);
    }
  });

  // ---- delete: every key the kit made; a deleted key is unusable -------------------------------
  if (!cleanup) {
    skip('delete', undefined, `kept ${made.length} key(s) (--keep): ${made.map((m) => m.id).join(', ')}`);
    return results;
  }
  for (const k of made) {
    await check(`${k.kind}.delete`, k.label.startsWith('imp-') ? `${k.spec} (imported)` : k.spec, async () => {
      await call('deleteKey', () => driver.deleteKey(k.id));
      k.deleted = true;
      const c1 = await mustFail('keyExistsAndIsActive of a deleted key', () => driver.keyExistsAndIsActive(k.id), [
        'NOT_FOUND',
        'KEY_DISABLED',
      ]);
      const use =
        k.kind === 'symmetric'
          ? () => driver.encryptSymmetric(k.id, Buffer.from('x'))
          : k.kind === 'signing'
            ? () => driver.sign(k.id, Buffer.from('x'), SIGNING_ALGO_OF[k.spec as SigningKeySpec])
            : () =>
                driver.decryptAsymmetric(
                  k.id,
                  randomBytes(k.spec.startsWith('rsa') ? 256 : 120),
                  ENCRYPTION_ALGO_OF[k.spec as EncryptionKeySpec],
                );
      const c2 = await mustFail(
        'using a deleted key',
        use,
        ['NOT_FOUND', 'KEY_DISABLED'],
        ['INVALID_CIPHERTEXT', 'INVALID_INPUT', 'KEY_USAGE'],
      );
      return `then: exists ${c1}; use ${c2}`;
    });
  }
  const left = made.filter((m) => !m.deleted);
  if (left.length) {
    // a failed delete check may have left keys: one more quiet attempt each
    for (const k of left)
      await call('deleteKey', () => driver.deleteKey(k.id)).then(
        () => (k.deleted = true),
        () => undefined,
      );
    const still = made.filter((m) => !m.deleted);
    if (still.length) push({ check: 'cleanup', outcome: 'fail', detail: `could not delete: ${still.map((m) => m.id).join(', ')}`, ms: 0 });
  }
  return results;
}

/** a result list's counts */
export function summarize(results: CheckResult[]): { passed: number; failed: number; skipped: number } {
  return {
    passed: results.filter((r) => r.outcome === 'pass').length,
    failed: results.filter((r) => r.outcome === 'fail').length,
    skipped: results.filter((r) => r.outcome === 'skip').length,
  };
}

/** used by the CLI to reject an unusable option early: the typed address, parsed once */
export function assertUri(uri: string, what: string): KmsAddress {
  return KmsAddress.parse(uri, { what });
}
