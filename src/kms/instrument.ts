/**
 * `instrument(driver, opts)`: the same Driver with, on every call,
 *  - the retry policy of src/kms/retry.ts (one layer): per-attempt timeout, a deadline for the whole
 *    call, the caller's AbortSignal, throttling retried through the process's adaptive limiter of
 *    this KMS and operation while the deadline allows, other retryable errors (UNAVAILABLE / TIMEOUT /
 *    CONFLICT) a bounded number of times — creates (generate*, importKey) only when the request cannot
 *    have reached the KMS, so that a lost answer does not leave a duplicate key behind. A driver that
 *    runs its own KMS requests through that layer (`retriesRequests`, e.g. awskms, per AWS operation)
 *    gets one attempt per call here;
 *  - errors that are not KeyportErrors become one-line INTERNAL errors naming the driver;
 *  - one audit line per call (see src/kms/audit.ts): sizes, never bytes.
 * health() never throws: a failing or hanging health check reports `failed`.
 */
import { err, isKeyportError, type KeyportError, oneLine, type ErrorCode } from '../errors.js';
import { KmsAddress, redactGeneric } from './address.js';
import { openDriver } from './registry.js';
import { auditSinkFromEnv, type AuditRecord, type AuditSink } from './audit.js';
import type { CallOptions, Driver, DriverKeyInfo, Health, KeyMaterialForImport } from './driver.js';
import { limiterFor } from './limiter.js';
import { DEFAULT_RETRY_POLICY, retryPolicyFromEnv, runKmsCall, type RetryPolicy } from './retry.js';

export interface InstrumentOptions {
  /** retries after the first attempt (default 4, so at most 5 attempts) */
  retries?: number;
  /** first back-off ceiling (default 100 ms); doubles per retry */
  baseDelayMs?: number;
  /** back-off ceiling cap (default 5000 ms) */
  maxDelayMs?: number;
  /** per-attempt timeout (default 15000 ms); 0 = none */
  timeoutMs?: number;
  /** the whole call, throttled retries and waiting for the limiter included (default 300000 ms); 0 = none */
  deadlineMs?: number;
  audit?: AuditSink;
  /** the KMS, for audit lines and messages: an address prints redacted (a string is redacted here) */
  kmsUri: string | KmsAddress;
}

const MAX_MESSAGE = 300;

/** Any thrown value as a KeyportError: KeyportErrors pass, everything else is a one-line INTERNAL. */
export function toKeyportError(e: unknown, driverName: string): KeyportError {
  if (isKeyportError(e)) return e;
  let msg = oneLine(e);
  if (msg.length > MAX_MESSAGE) msg = msg.slice(0, MAX_MESSAGE) + '…';
  return err('INTERNAL', `KMS driver ${driverName} failed unexpectedly: ${msg}`, { cause: e });
}

/** request ids an SDK error may carry (AWS $metadata, Azure/GCP requestId), on the error or its cause */
function requestIdsOf(e: unknown): string[] {
  const out: string[] = [];
  const seen = new Set<unknown>();
  let cur: unknown = e;
  for (let depth = 0; cur && typeof cur === 'object' && depth < 4 && !seen.has(cur); depth++) {
    seen.add(cur);
    const o = cur as { requestId?: unknown; $metadata?: { requestId?: unknown; extendedRequestId?: unknown }; cause?: unknown };
    for (const v of [o.requestId, o.$metadata?.requestId, o.$metadata?.extendedRequestId])
      if (typeof v === 'string' && v && !out.includes(v)) out.push(v);
    cur = o.cause;
  }
  return out;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface CallMeta {
  keyId?: string;
  inputBytes?: number;
  name?: string;
  spec?: string;
}

interface CallShape<T> {
  /** creates state in the KMS: no blind retry after a failure that may have reached it */
  creates?: boolean;
  outputBytes?: (r: T) => number | undefined;
  keyIdOf?: (r: T) => string | undefined;
  /** deleteKey: NOT_FOUND after an ambiguous failed attempt means the earlier attempt worked */
  deletes?: boolean;
}

/** call shapes, made once (not per call) */
const OUTPUT_BYTES: CallShape<Buffer> = { outputBytes: (r) => r?.length };
const CREATES_KEY: CallShape<string> = { creates: true, keyIdOf: (r) => r };

export function instrument(driver: Driver, opts: InstrumentOptions): Driver {
  // an address prints redacted; a string from a library caller is redacted like one
  const kms = typeof opts.kmsUri === 'string' ? redactGeneric(opts.kmsUri) : opts.kmsUri.toString();
  const policy: RetryPolicy = {
    retries: Math.max(0, opts.retries ?? DEFAULT_RETRY_POLICY.retries),
    baseDelayMs: Math.max(0, opts.baseDelayMs ?? DEFAULT_RETRY_POLICY.baseDelayMs),
    maxDelayMs: Math.max(opts.baseDelayMs ?? 0, opts.maxDelayMs ?? DEFAULT_RETRY_POLICY.maxDelayMs),
    attemptTimeoutMs: Math.max(0, opts.timeoutMs ?? DEFAULT_RETRY_POLICY.attemptTimeoutMs),
    deadlineMs: Math.max(0, opts.deadlineMs ?? DEFAULT_RETRY_POLICY.deadlineMs),
  };
  // a driver that retries its own KMS requests (per KMS operation) gets one attempt per Driver call
  // here, bounded by the deadline only: never retries on top of retries
  const own = driver.retriesRequests === true;
  // (its own deadline applies there; one here only when the caller set one, so no second timer per call)
  const callPolicy: RetryPolicy = own
    ? { ...policy, retries: 0, attemptTimeoutMs: 0, deadlineMs: Math.max(0, opts.deadlineMs ?? 0) }
    : policy;
  const retries = policy.retries;
  const base = policy.baseDelayMs;
  const cap = policy.maxDelayMs;
  const timeoutMs = policy.attemptTimeoutMs;
  const audit = opts.audit;
  const dname = driver.name || 'driver';
  // the limiter's identity of this KMS: scheme and connection without any key id (one per KMS)
  const kmsKey = kms.replace(/;key-id=[^;]*/g, '');

  const mapError = (e: unknown) => toKeyportError(e, dname);
  const record = (r: AuditRecord) => {
    if (!audit) return;
    try {
      audit.write(r);
    } catch {
      /* an audit sink must not break a KMS call; the file sink reports its own failures */
    }
  };

  /** one attempt with the timeout; a late rejection of the abandoned attempt is swallowed */
  function attempt<T>(op: string, fn: () => Promise<T>): Promise<T> {
    const p = (async () => fn())();
    if (!timeoutMs) return p;
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        p.catch(() => undefined);
        reject(
          err('TIMEOUT', `KMS ${kms} did not answer ${op} within ${timeoutMs} ms: check the network and the KMS, or raise the timeout`),
        );
      }, timeoutMs);
      p.then(
        (v) => {
          clearTimeout(t);
          resolve(v);
        },
        (e) => {
          clearTimeout(t);
          reject(e);
        },
      );
    });
  }

  async function call<T>(
    op: string,
    meta: CallMeta,
    fn: (o: CallOptions) => Promise<T>,
    shape: CallShape<T> = {},
    signal?: AbortSignal,
  ): Promise<T> {
    const started = audit ? performance.now() : 0;
    const requestIds: string[] = [];
    let attempts = 0;
    let ambiguous = false;
    const finish = (outcome: 'ok' | 'error', extra: Partial<AuditRecord>) => {
      if (!audit) return;
      record({
        time: new Date().toISOString(),
        kms,
        operation: op,
        ...(meta.keyId !== undefined ? { keyId: meta.keyId } : {}),
        ...(meta.name !== undefined ? { name: meta.name } : {}),
        ...(meta.spec !== undefined ? { spec: meta.spec } : {}),
        latencyMs: Math.round((performance.now() - started) * 10) / 10,
        outcome,
        attempts,
        ...(requestIds.length ? { requestIds } : {}),
        ...(meta.inputBytes !== undefined ? { inputBytes: meta.inputBytes } : {}),
        ...extra,
      });
    };
    try {
      const r = await runKmsCall<T>(
        {
          op,
          kms,
          idempotent: !shape.creates,
          signal,
          limiter: own ? undefined : limiterFor(kmsKey, op),
          policy: callPolicy,
          race: !own,
          once: own,
          map: mapError,
          onError: (e) => {
            attempts++;
            for (const id of requestIdsOf(e)) if (!requestIds.includes(id)) requestIds.push(id);
            if (shape.deletes) {
              const c = (e as { code?: unknown }).code;
              if (c === 'TIMEOUT' || c === 'UNAVAILABLE') ambiguous = true;
            }
          },
        },
        (s) => fn({ signal: s }),
      );
      attempts = r.attempts;
      const keyId = shape.keyIdOf?.(r.value);
      const out = shape.outputBytes?.(r.value);
      finish('ok', { ...(keyId !== undefined ? { keyId } : {}), ...(out !== undefined ? { outputBytes: out } : {}) });
      return r.value;
    } catch (e) {
      const ke = toKeyportError(e, dname);
      if (shape.deletes && ambiguous && ke.code === 'NOT_FOUND') {
        finish('ok', {});
        return undefined as T;
      }
      finish('error', { code: ke.code });
      throw ke;
    }
  }

  const w: Driver = {
    name: driver.name,
    async health(): Promise<Health> {
      const started = performance.now();
      let h: Health;
      try {
        h = await attempt('health', () => driver.health());
        if (!h || typeof h !== 'object' || !['ok', 'degraded', 'failed', 'fatal'].includes((h as Health).state))
          h = { state: 'failed', reason: `driver ${dname} returned an invalid health value` };
      } catch (e) {
        h = { state: 'failed', reason: toKeyportError(e, dname).message };
      }
      record({
        time: new Date().toISOString(),
        kms,
        operation: 'health',
        latencyMs: Math.round((performance.now() - started) * 10) / 10,
        outcome: h.state === 'ok' ? 'ok' : 'error',
        ...(h.state === 'ok' ? {} : { code: 'UNAVAILABLE' as const }),
        attempts: 1,
        health: h.state,
      });
      return h;
    },
    supportedSigningKeySpecs: () => driver.supportedSigningKeySpecs(),
    supportedSigningAlgoSpecs: () => driver.supportedSigningAlgoSpecs(),
    supportedEncryptionKeySpecs: () => driver.supportedEncryptionKeySpecs(),
    supportedEncryptionAlgoSpecs: () => driver.supportedEncryptionAlgoSpecs(),
    generateSigningKeyPair: (spec, name, o) =>
      call('generateSigningKeyPair', { spec, name }, (x) => driver.generateSigningKeyPair(spec, name, x), CREATES_KEY, o?.signal),
    generateEncryptionKeyPair: (spec, name, o) =>
      call('generateEncryptionKeyPair', { spec, name }, (x) => driver.generateEncryptionKeyPair(spec, name, x), CREATES_KEY, o?.signal),
    generateSymmetricKey: (name, o) =>
      call('generateSymmetricKey', { spec: 'aes256', name }, (x) => driver.generateSymmetricKey(name, x), CREATES_KEY, o?.signal),
    sign: (keyId, data, algo, o) =>
      call('sign', { keyId, inputBytes: data.length, spec: algo }, (x) => driver.sign(keyId, data, algo, x), OUTPUT_BYTES, o?.signal),
    decryptAsymmetric: (keyId, ct, algo, o) =>
      call(
        'decryptAsymmetric',
        { keyId, inputBytes: ct.length, spec: algo },
        (x) => driver.decryptAsymmetric(keyId, ct, algo, x),
        OUTPUT_BYTES,
        o?.signal,
      ),
    encryptSymmetric: (keyId, pt, o) =>
      call('encryptSymmetric', { keyId, inputBytes: pt.length }, (x) => driver.encryptSymmetric(keyId, pt, x), OUTPUT_BYTES, o?.signal),
    decryptSymmetric: (keyId, ct, o) =>
      call('decryptSymmetric', { keyId, inputBytes: ct.length }, (x) => driver.decryptSymmetric(keyId, ct, x), OUTPUT_BYTES, o?.signal),
    getPublicKey: (keyId, o) => call('getPublicKey', { keyId }, (x) => driver.getPublicKey(keyId, x), {}, o?.signal),
    keyExistsAndIsActive: (keyId, o) =>
      call('keyExistsAndIsActive', { keyId }, (x) => driver.keyExistsAndIsActive(keyId, x), {}, o?.signal),
    deleteKey: (keyId, o) => call('deleteKey', { keyId }, (x) => driver.deleteKey(keyId, x), { deletes: true }, o?.signal),
  };
  if (own) (w as { retriesRequests?: boolean }).retriesRequests = true;
  if (driver.importKey) {
    const imp = driver.importKey.bind(driver);
    w.importKey = (m: KeyMaterialForImport, name?: string, o?: CallOptions) =>
      call('importKey', { name, spec: m.spec, inputBytes: m.secret.length }, (x) => imp(m, name, x), CREATES_KEY, o?.signal);
  }
  if (driver.importRefusal) w.importRefusal = driver.importRefusal.bind(driver);
  if (driver.describeKey) {
    const desc = driver.describeKey.bind(driver);
    w.describeKey = (keyId: string, o?: CallOptions) => call('describeKey', { keyId }, (x) => desc(keyId, x), {}, o?.signal);
  }
  if (driver.resolveKeyId) {
    const res = driver.resolveKeyId.bind(driver);
    w.resolveKeyId = (ref: string, o?: CallOptions) =>
      call('resolveKeyId', { keyId: ref }, (x) => res(ref, x), { keyIdOf: (r) => r }, o?.signal);
  }
  if (driver.listKeys) {
    const list = driver.listKeys.bind(driver);
    w.listKeys = () => listInstrumented(list);
  }
  if (driver.close) {
    const close = driver.close.bind(driver);
    w.close = async () => {
      try {
        await attempt('close', close);
      } catch (e) {
        throw toKeyportError(e, dname);
      }
    };
  }

  /** listing: each page step gets the timeout; the listing restarts (with back-off) only while nothing was yielded yet */
  async function* listInstrumented(list: () => AsyncIterable<DriverKeyInfo>): AsyncGenerator<DriverKeyInfo> {
    const started = performance.now();
    let attempts = 0;
    let count = 0;
    let recorded = false;
    const done = (outcome: 'ok' | 'error', code?: ErrorCode) => {
      recorded = true;
      record({
        time: new Date().toISOString(),
        kms,
        operation: 'listKeys',
        latencyMs: Math.round((performance.now() - started) * 10) / 10,
        outcome,
        ...(code ? { code } : {}),
        attempts,
      });
    };
    try {
      for (;;) {
        attempts++;
        let it: AsyncIterator<DriverKeyInfo> | undefined;
        try {
          it = list()[Symbol.asyncIterator]();
          for (;;) {
            const r = await attempt('listKeys', () => it!.next());
            if (r.done) {
              done('ok');
              return;
            }
            count++;
            yield r.value;
          }
        } catch (e) {
          const ke = toKeyportError(e, dname);
          if (count === 0 && ke.retryable && attempts <= retries) {
            await it?.return?.().catch(() => undefined);
            await sleep(Math.random() * Math.min(cap, base * 2 ** (attempts - 1)));
            continue;
          }
          done('error', ke.code);
          throw ke;
        }
      }
    } finally {
      // the consumer stopped early (break / return): still one audit line
      if (!recorded) done('ok');
    }
  }

  return w;
}

/** openDriver + instrument: the driver for a KMS URI with timeouts, retries and the audit trail
 * (KEYPORT_KMS_AUDIT unless `audit` is given). */
export async function openInstrumentedDriver(uri: string | KmsAddress, opts: Partial<InstrumentOptions> = {}): Promise<Driver> {
  const a = typeof uri === 'string' ? KmsAddress.parse(uri) : uri;
  let d: Driver;
  try {
    d = await openDriver(a);
  } catch (e) {
    throw toKeyportError(e, a.scheme);
  }
  return instrument(d, { ...envOptions(), ...opts, kmsUri: opts.kmsUri ?? a, audit: opts.audit ?? auditSinkFromEnv() });
}

/** the operator's overrides (src/kms/retry.ts retryPolicyFromEnv) as instrument options */
function envOptions(): Partial<InstrumentOptions> {
  const p = retryPolicyFromEnv();
  return {
    ...(p.retries !== undefined ? { retries: p.retries } : {}),
    ...(p.attemptTimeoutMs !== undefined ? { timeoutMs: p.attemptTimeoutMs } : {}),
    ...(p.baseDelayMs !== undefined ? { baseDelayMs: p.baseDelayMs } : {}),
    ...(p.maxDelayMs !== undefined ? { maxDelayMs: p.maxDelayMs } : {}),
    ...(p.deadlineMs !== undefined ? { deadlineMs: p.deadlineMs } : {}),
  };
}
