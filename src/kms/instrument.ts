/**
 * `instrument(driver, opts)`: the same Driver with, on every call,
 *  - a per-call timeout (TIMEOUT, retryable);
 *  - bounded retries with exponential back-off and full jitter on retryable errors
 *    (UNAVAILABLE / TIMEOUT / THROTTLED / CONFLICT), never on AUTH, PERMISSION, NOT_FOUND, …;
 *    calls that create something (generate*, importKey) are retried only when the request cannot have
 *    reached the KMS's state (UNAVAILABLE, THROTTLED), never after a TIMEOUT or CONFLICT, so that a
 *    slow answer does not leave a duplicate key behind;
 *  - errors that are not KeyportErrors become one-line INTERNAL errors naming the driver;
 *  - one audit line per call (see src/kms/audit.ts): sizes, never bytes.
 * health() never throws: a failing or hanging health check reports `failed`.
 */
import { err, isKeyportError, type KeyportError, oneLine, type ErrorCode } from '../errors.js';
import { parseUri, redactUri, type ParsedUri } from '../config/uri.js';
import { openDriver } from './registry.js';
import { auditSinkFromEnv, type AuditRecord, type AuditSink } from './audit.js';
import type { Driver, DriverKeyInfo, Health, KeyMaterialForImport } from './driver.js';

export interface InstrumentOptions {
  /** retries after the first attempt (default 4, so at most 5 attempts) */
  retries?: number;
  /** first back-off ceiling (default 100 ms); doubles per retry */
  baseDelayMs?: number;
  /** back-off ceiling cap (default 5000 ms) */
  maxDelayMs?: number;
  /** per-attempt timeout (default 15000 ms); 0 = none */
  timeoutMs?: number;
  audit?: AuditSink;
  /** the KMS URI, for audit lines and messages (redacted here again to be safe) */
  kmsUri: string;
}

const CREATE_RETRYABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['UNAVAILABLE', 'THROTTLED']);
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
  /** creates state in the KMS: no retry after an ambiguous failure */
  creates?: boolean;
  outputBytes?: (r: T) => number | undefined;
  keyIdOf?: (r: T) => string | undefined;
  /** deleteKey: NOT_FOUND after an ambiguous failed attempt means the earlier attempt worked */
  deletes?: boolean;
}

export function instrument(driver: Driver, opts: InstrumentOptions): Driver {
  const retries = Math.max(0, opts.retries ?? 4);
  const base = Math.max(0, opts.baseDelayMs ?? 100);
  const cap = Math.max(base, opts.maxDelayMs ?? 5000);
  const timeoutMs = Math.max(0, opts.timeoutMs ?? 15000);
  const kms = redactUri(opts.kmsUri);
  const audit = opts.audit;
  const dname = driver.name || 'driver';

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

  async function call<T>(op: string, meta: CallMeta, fn: () => Promise<T>, shape: CallShape<T> = {}): Promise<T> {
    const started = performance.now();
    const requestIds: string[] = [];
    let attempts = 0;
    let ambiguous = false;
    const finish = (outcome: 'ok' | 'error', extra: Partial<AuditRecord>) =>
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
    for (;;) {
      attempts++;
      try {
        const r = await attempt(op, fn);
        const keyId = shape.keyIdOf?.(r);
        const out = shape.outputBytes?.(r);
        finish('ok', { ...(keyId !== undefined ? { keyId } : {}), ...(out !== undefined ? { outputBytes: out } : {}) });
        return r;
      } catch (e) {
        for (const id of requestIdsOf(e)) if (!requestIds.includes(id)) requestIds.push(id);
        const ke = toKeyportError(e, dname);
        if (shape.deletes && ambiguous && ke.code === 'NOT_FOUND') {
          finish('ok', {});
          return undefined as T;
        }
        const again = ke.retryable && attempts <= retries && (!shape.creates || CREATE_RETRYABLE.has(ke.code));
        if (!again) {
          finish('error', { code: ke.code });
          throw ke;
        }
        if (ke.code === 'TIMEOUT' || ke.code === 'UNAVAILABLE') ambiguous = true;
        // full jitter: uniform in [0, min(cap, base * 2^(n-1))]
        const ceiling = Math.min(cap, base * 2 ** (attempts - 1));
        await sleep(Math.random() * ceiling);
      }
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
    generateSigningKeyPair: (spec, name) =>
      call('generateSigningKeyPair', { spec, name }, () => driver.generateSigningKeyPair(spec, name), { creates: true, keyIdOf: (r) => r }),
    generateEncryptionKeyPair: (spec, name) =>
      call('generateEncryptionKeyPair', { spec, name }, () => driver.generateEncryptionKeyPair(spec, name), {
        creates: true,
        keyIdOf: (r) => r,
      }),
    generateSymmetricKey: (name) =>
      call('generateSymmetricKey', { spec: 'aes256', name }, () => driver.generateSymmetricKey(name), { creates: true, keyIdOf: (r) => r }),
    sign: (keyId, data, algo) =>
      call('sign', { keyId, inputBytes: data.length, spec: algo }, () => driver.sign(keyId, data, algo), { outputBytes: (r) => r?.length }),
    decryptAsymmetric: (keyId, ct, algo) =>
      call('decryptAsymmetric', { keyId, inputBytes: ct.length, spec: algo }, () => driver.decryptAsymmetric(keyId, ct, algo), {
        outputBytes: (r) => r?.length,
      }),
    encryptSymmetric: (keyId, pt) =>
      call('encryptSymmetric', { keyId, inputBytes: pt.length }, () => driver.encryptSymmetric(keyId, pt), {
        outputBytes: (r) => r?.length,
      }),
    decryptSymmetric: (keyId, ct) =>
      call('decryptSymmetric', { keyId, inputBytes: ct.length }, () => driver.decryptSymmetric(keyId, ct), {
        outputBytes: (r) => r?.length,
      }),
    getPublicKey: (keyId) => call('getPublicKey', { keyId }, () => driver.getPublicKey(keyId)),
    keyExistsAndIsActive: (keyId) => call('keyExistsAndIsActive', { keyId }, () => driver.keyExistsAndIsActive(keyId)),
    deleteKey: (keyId) => call('deleteKey', { keyId }, () => driver.deleteKey(keyId), { deletes: true }),
  };
  if (driver.importKey) {
    const imp = driver.importKey.bind(driver);
    w.importKey = (m: KeyMaterialForImport, name?: string) =>
      call('importKey', { name, spec: m.spec, inputBytes: m.secret.length }, () => imp(m, name), { creates: true, keyIdOf: (r) => r });
  }
  if (driver.describeKey) {
    const desc = driver.describeKey.bind(driver);
    w.describeKey = (keyId: string) => call('describeKey', { keyId }, () => desc(keyId));
  }
  if (driver.resolveKeyId) {
    const res = driver.resolveKeyId.bind(driver);
    w.resolveKeyId = (ref: string) => call('resolveKeyId', { keyId: ref }, () => res(ref), { keyIdOf: (r) => r });
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
export async function openInstrumentedDriver(uri: string | ParsedUri, opts: Partial<InstrumentOptions> = {}): Promise<Driver> {
  const u = typeof uri === 'string' ? parseUri(uri) : uri;
  let d: Driver;
  try {
    d = await openDriver(u);
  } catch (e) {
    throw toKeyportError(e, u.scheme);
  }
  return instrument(d, { ...envOptions(), ...opts, kmsUri: opts.kmsUri ?? u.raw, audit: opts.audit ?? auditSinkFromEnv() });
}

/** KEYPORT_KMS_RETRIES, KEYPORT_KMS_TIMEOUT_MS, KEYPORT_KMS_BACKOFF_MS, KEYPORT_KMS_BACKOFF_MAX_MS */
function envOptions(env: NodeJS.ProcessEnv = process.env): Partial<InstrumentOptions> {
  const num = (name: string, max: number): number | undefined => {
    const v = env[name];
    if (v === undefined || v === '') return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0 || n > max) throw err('USAGE', `${name} must be a whole number from 0 to ${max}, got '${v}'`);
    return n;
  };
  const o: Partial<InstrumentOptions> = {};
  const r = num('KEYPORT_KMS_RETRIES', 20);
  if (r !== undefined) o.retries = r;
  const t = num('KEYPORT_KMS_TIMEOUT_MS', 600_000);
  if (t !== undefined) o.timeoutMs = t;
  const b = num('KEYPORT_KMS_BACKOFF_MS', 60_000);
  if (b !== undefined) o.baseDelayMs = b;
  const m = num('KEYPORT_KMS_BACKOFF_MAX_MS', 600_000);
  if (m !== undefined) o.maxDelayMs = m;
  return o;
}
