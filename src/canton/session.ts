/**
 * Session signing keys, Canton's way (3.3+) to sign protocol messages without one KMS call per signature:
 * a short-lived software key, held in memory only, signs; one signature by the long-term (KMS-held) key
 * authorises it for a validity window. The result is Canton's own `Signature` with `signature_delegation`
 * (crypto v30), so any verifier that knows the long-term key checks the chain.
 *
 * Canton's rules, read from digital-asset/canton 3.4 (crypto/Signing.scala SignatureDelegation,
 * signer/SyncCryptoSignerWithSessionKeys.scala, verifier/SyncCryptoVerifier.scala):
 * - the long-term key signs `SignatureDelegation.generateHash` = multihash of SHA-256 over
 *   int32BE(56 SessionKeyDelegation) ‖ lp(utf8 session key fingerprint) ‖ int32BE(session key spec) ‖
 *   int32BE(key format 4, DER SPKI) ‖ lp(int32BE(#usages) ‖ int32BE(usage)… sorted) ‖
 *   lp(int64BE(validFrom µs) ‖ int64BE(duration s)) ‖ lp(utf8 synchronizer id), lp = int32BE length prefix;
 *   session keys carry usage {PROTOCOL, PROOF_OF_OWNERSHIP};
 * - the session key signs the message hash exactly as a long-term key would (the 34-byte hash);
 * - the outer Signature: session key's format and algorithm, `signed_by` = the long-term key's fingerprint,
 *   `signature_delegation` = {session SPKI, spec, validity from (µs) and duration (s), the long-term signature's
 *   format, bytes and algorithm};
 * - a delegation covers `from <= t < from + duration`; the signer stops using a key `cutOff` before it
 *   expires and starts new windows `cutOff/2` before now; Canton's defaults: Ed25519, 5 min, 30 s (keyport: P-256).
 * Session keys are only for PROTOCOL signatures (Canton refuses any other usage with them).
 */
import { generateKeyPairSync, type KeyObject, sign as nodeSign, verify as nodeVerify } from 'node:crypto';
import { err } from '../errors.js';
import { publicKeyObject } from '../crypto/keys.js';
import type { KeyType } from '../crypto/keytypes.js';
import { lowS } from '../crypto/ecdsa-encoding.js';
import { cantonHash, keyFingerprint } from './topology/hash.js';
import { ALGO_OF, SIGNING_SPEC_OF, keyTypeOfSpki } from './topology/keys.js';
import {
  type Signature,
  type SignatureDelegation,
  CryptoKeyFormat,
  SignatureFormat,
  SigningAlgorithmSpec,
  SigningKeyUsage,
} from './topology/messages.js';
import type { TopologySigner } from './topology/signer.js';

export const SESSION_KEY_DELEGATION_PURPOSE = 56;
/** the usages a session key carries (Canton's ProtocolWithProofOfOwnership) */
const SESSION_USAGES = [SigningKeyUsage.PROTOCOL, SigningKeyUsage.PROOF_OF_OWNERSHIP].sort((a, b) => a - b);

export type SessionKeySpec = 'ed25519' | 'ec-p256' | 'ec-p384';

export interface SessionSignerOptions {
  /** the long-term key (typically KMS-held) that authorises each session key: one signature per session key */
  longTerm: TopologySigner;
  /** the synchronizer id the delegations are for (part of what the long-term key signs) */
  synchronizerId: string;
  /** how long a session key is valid, seconds (default 300, Canton's keyValidityDuration) */
  validitySeconds?: number;
  /** stop using a key this long before it expires, seconds (default 30, Canton's cutOffDuration) */
  cutOffSeconds?: number;
  /**
   * the session key's spec. Default ec-p256, not Canton's ed25519: a node on the KMS provider talks to
   * synchronizers whose required signing specs are what KMSs hold (ECDSA P-256/P-384), and P-256 signs
   * faster than Ed25519 with Node's OpenSSL (bench/session-sign.ts). Set Canton's
   * `crypto.session-signing-keys.signing-key-spec` / `signing-algorithm-spec` to match.
   */
  sessionKeySpec?: SessionKeySpec;
  /** the clock, ms since the epoch (tests) */
  now?: () => number;
}

interface Session {
  key: KeyObject;
  spec: SessionKeySpec;
  delegation: SignatureDelegation;
  fromMs: number;
  toMs: number;
}

const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const int64 = (n: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(n);
  return b;
};
const lp = (b: Buffer) => Buffer.concat([int32(b.length), b]);

/** the 34-byte hash the long-term key signs to authorise a session key (Canton's SignatureDelegation.generateHash) */
export function delegationHash(
  synchronizerId: string,
  sessionSpki: Buffer,
  sessionKeySpec: number,
  fromMicros: bigint,
  durationSeconds: number,
): Buffer {
  const usage = Buffer.concat([int32(SESSION_USAGES.length), ...SESSION_USAGES.map(int32)]);
  return cantonHash(
    SESSION_KEY_DELEGATION_PURPOSE,
    lp(Buffer.from(keyFingerprint(sessionSpki), 'utf8')),
    int32(sessionKeySpec),
    int32(CryptoKeyFormat.DER_X509_SPKI),
    lp(usage),
    lp(Buffer.concat([int64(fromMicros), int64(BigInt(durationSeconds))])),
    lp(Buffer.from(synchronizerId, 'utf8')),
  );
}

function softSign(type: KeyType, key: KeyObject, data: Buffer): Buffer {
  const hash = type === 'ed25519' ? null : type === 'ec-p384' ? 'sha384' : 'sha256';
  // low-S like every ECDSA signature keyport makes (lowS leaves Ed25519 as it is)
  return lowS(type, nodeSign(hash, data, hash ? { key, dsaEncoding: 'der' } : key), 'der');
}

const formatOf = (algo: number) => (algo === SigningAlgorithmSpec.ED25519 ? SignatureFormat.CONCAT : SignatureFormat.DER);

/**
 * Signs Canton hashes with session keys authorised by a long-term key. Keys live in this object only
 * (never serialised, never written); `close()` drops them. Concurrent callers share one new key.
 */
export class SessionSigner {
  private sessions: Session[] = [];
  private pending?: Promise<Session>;
  private closed = false;
  private readonly validityS: number;
  private readonly cutOffMs: number;
  private readonly spec: SessionKeySpec;
  private readonly now: () => number;
  /** long-term (KMS) signatures made and session keys created, for accounting */
  readonly stats = { longTermSignatures: 0, sessionKeys: 0, signatures: 0 };

  constructor(private readonly o: SessionSignerOptions) {
    this.validityS = o.validitySeconds ?? 300;
    this.cutOffMs = (o.cutOffSeconds ?? 30) * 1000;
    this.spec = o.sessionKeySpec ?? 'ec-p256';
    this.now = o.now ?? Date.now;
    if (!Number.isInteger(this.validityS) || this.validityS <= 0 || this.validityS > 0xffffffff)
      throw err('USAGE', `session key validity must be a positive number of seconds, got ${o.validitySeconds}`);
    if (this.cutOffMs >= this.validityS * 1000)
      throw err('USAGE', 'the session key cut-off must be shorter than its validity, or no key could ever be used');
    if (!o.synchronizerId) throw err('USAGE', 'session signing needs the synchronizer id the delegations are for');
    if (ALGO_OF[o.longTerm.keySpec] === undefined)
      throw err('KEY_USAGE', `the long-term key is ${o.longTerm.keySpec}: Canton signs with ec-p256, ec-p384, secp256k1 or ed25519`);
  }

  /** a session key usable at `t` (valid, and not within the cut-off of its end) */
  private usable(t: number): Session | undefined {
    this.sessions = this.sessions.filter((s) => s.toMs > t); // expired keys are dropped from memory at once
    let best: Session | undefined;
    for (const s of this.sessions) if (s.fromMs <= t && t < s.toMs - this.cutOffMs && (!best || s.fromMs > best.fromMs)) best = s;
    return best;
  }

  private async newSession(t: number): Promise<Session> {
    const { privateKey, publicKey } =
      this.spec === 'ed25519'
        ? generateKeyPairSync('ed25519')
        : generateKeyPairSync('ec', { namedCurve: this.spec === 'ec-p256' ? 'prime256v1' : 'secp384r1' });
    const spki = publicKey.export({ format: 'der', type: 'spki' });
    // Canton starts a window cutOff/2 before the signing time, so requests slightly in the past reuse it
    const fromMs = Math.max(0, t - Math.floor(this.cutOffMs / 2));
    const fromMicros = BigInt(fromMs) * 1000n;
    const specNum = SIGNING_SPEC_OF[this.spec]!;
    const hash = delegationHash(this.o.synchronizerId, spki, specNum, fromMicros, this.validityS);
    const lt = this.o.longTerm;
    const algo = ALGO_OF[lt.keySpec]!;
    const sig = await lt.sign(hash);
    this.stats.longTermSignatures++;
    this.stats.sessionKeys++;
    return {
      key: privateKey,
      spec: this.spec,
      fromMs,
      toMs: fromMs + this.validityS * 1000,
      delegation: {
        sessionKey: spki,
        sessionKeySpec: specNum,
        validityPeriodFromInclusive: fromMicros,
        validityPeriodDurationSeconds: this.validityS,
        format: formatOf(algo),
        signature: sig,
        signingAlgorithmSpec: algo,
      },
    };
  }

  private async session(t: number): Promise<Session> {
    for (;;) {
      if (this.closed) throw err('UNAVAILABLE', 'the session signer is closed', { retryable: false });
      const s = this.usable(t);
      if (s) return s;
      if (!this.pending) {
        this.pending = this.newSession(t).then(
          (n) => {
            if (!this.closed) this.sessions.push(n);
            this.pending = undefined;
            return n;
          },
          (e: unknown) => {
            this.pending = undefined;
            throw e;
          },
        );
      }
      const n = await this.pending;
      if (n.fromMs <= t && t < n.toMs - this.cutOffMs && !this.closed) return n;
    }
  }

  /** Canton's Signature over a 34-byte hash, by a session key, with its delegation */
  async sign(hash: Buffer): Promise<Signature> {
    const t = this.now();
    const s = await this.session(t);
    // expiry is enforced at use too: a key whose window no longer covers the clock never signs
    if (!(s.fromMs <= this.now() && this.now() < s.toMs)) throw err('KEY_DISABLED', 'the session key expired while signing: retry');
    const algo = ALGO_OF[s.spec]!;
    this.stats.signatures++;
    return {
      format: formatOf(algo),
      signature: softSign(s.spec, s.key, hash),
      signedBy: this.o.longTerm.fingerprint,
      signingAlgorithmSpec: algo,
      signatureDelegation: s.delegation,
    };
  }

  /** forget every session key */
  close(): void {
    this.closed = true;
    this.sessions = [];
  }
}

function verifyRaw(spki: Buffer, algo: number, data: Buffer, sig: Buffer): boolean {
  const hash = algo === SigningAlgorithmSpec.EC_DSA_SHA_384 ? 'sha384' : algo === SigningAlgorithmSpec.EC_DSA_SHA_256 ? 'sha256' : null;
  try {
    const key = publicKeyObject(spki);
    return nodeVerify(hash, data, hash ? { key, dsaEncoding: 'der' } : key, sig);
  } catch {
    return false;
  }
}

/**
 * Verify a session-signed Signature over `hash` the way Canton does: the delegation must be signed by the
 * long-term key (its fingerprint = `signed_by`) over Canton's delegation hash for `synchronizerId`, cover
 * `atMs`, and the session key must have made the signature. Returns null when it verifies, else why not.
 */
export function verifySessionSignature(
  longTermSpki: Buffer,
  hash: Buffer,
  sig: Signature,
  opts: { synchronizerId: string; atMs: number },
): string | null {
  const d = sig.signatureDelegation;
  if (!d) return 'the signature carries no session-key delegation';
  const lt = keyFingerprint(longTermSpki);
  if (sig.signedBy !== lt) return `signed on behalf of ${sig.signedBy}, not of long-term key ${lt}`;
  const ltType = keyTypeOfSpki(longTermSpki);
  if (ALGO_OF[ltType] !== d.signingAlgorithmSpec)
    return `the delegation's algorithm ${d.signingAlgorithmSpec} does not fit the ${ltType} long-term key`;
  if (formatOf(d.signingAlgorithmSpec) !== d.format) return `the delegation's signature format ${d.format} is wrong for its algorithm`;
  if (d.validityPeriodDurationSeconds <= 0) return 'the delegation has no validity period';
  let sessionType: KeyType;
  try {
    sessionType = keyTypeOfSpki(d.sessionKey);
  } catch {
    return 'the session key is not a valid public key';
  }
  if (SIGNING_SPEC_OF[sessionType] !== d.sessionKeySpec) return `the session key is ${sessionType}, not key spec ${d.sessionKeySpec}`;
  const dh = delegationHash(
    opts.synchronizerId,
    d.sessionKey,
    d.sessionKeySpec,
    d.validityPeriodFromInclusive,
    d.validityPeriodDurationSeconds,
  );
  if (!verifyRaw(longTermSpki, d.signingAlgorithmSpec, dh, d.signature)) return `the delegation is not signed by long-term key ${lt}`;
  const fromMs = Number(d.validityPeriodFromInclusive / 1000n);
  const toMs = fromMs + d.validityPeriodDurationSeconds * 1000;
  if (!(fromMs <= opts.atMs && opts.atMs < toMs))
    return (
      `the session key is valid from ${new Date(fromMs).toISOString()} to ${new Date(toMs).toISOString()}, not at ` +
      `${new Date(opts.atMs).toISOString()}: expired or not yet valid`
    );
  if (ALGO_OF[sessionType] !== sig.signingAlgorithmSpec || formatOf(sig.signingAlgorithmSpec) !== sig.format)
    return 'the signature algorithm or format does not fit the session key';
  if (!verifyRaw(d.sessionKey, sig.signingAlgorithmSpec, hash, sig.signature)) return 'the session key did not make this signature';
  return null;
}
