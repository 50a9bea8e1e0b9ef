/**
 * The one retry layer for KMS calls. No SDK retries under it (drivers configure their SDKs for a single
 * attempt) and nothing above it retries KMS calls again (migrate's pool and protect retry nothing of
 * their own on a KMS error). Every attempt goes through the process's adaptive limiter of its KMS and
 * operation (src/kms/limiter.ts).
 *
 *  - THROTTLED: the limiter slows down and the call is tried again, as often as the deadline allows
 *    (throttling is a reason to wait, never a failure while there is time);
 *  - UNAVAILABLE / TIMEOUT / CONFLICT: at most `retries` more attempts with exponential back-off and
 *    full jitter — for a call that creates state (idempotent: false) only when the request cannot
 *    have reached the KMS (connection refused, throttled); otherwise the failure is marked
 *    outcome-unknown (`isOutcomeUnknown`) so the driver looks the new key up instead of creating a
 *    second one;
 *  - anything else fails at once.
 * Every attempt gets an AbortSignal that fires at the attempt timeout, the call's deadline or the
 * caller's own signal, whichever comes first; drivers hand it to their SDK so the work is cancelled,
 * not raced. (Calls without a signal of their own share deadline signals: see joinDeadline.)
 */
import { setMaxListeners } from 'node:events';
import { err, isKeyportError, type KeyportError } from '../errors.js';
import { abortableDelay, type AdaptiveLimiter } from './limiter.js';
import { mayHaveReachedKms } from './neterrors.js';

export interface RetryPolicy {
  /** retries after the first attempt for UNAVAILABLE / TIMEOUT / CONFLICT (default 4) */
  retries: number;
  /** first back-off ceiling (default 100 ms), doubling per retry up to maxDelayMs (5000) */
  baseDelayMs: number;
  maxDelayMs: number;
  /** per-attempt timeout (default 15000 ms; 0 = none) */
  attemptTimeoutMs: number;
  /** the whole call, waiting for the limiter and throttled retries included (default 300000 ms) */
  deadlineMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  retries: 4,
  baseDelayMs: 100,
  maxDelayMs: 5000,
  attemptTimeoutMs: 15_000,
  deadlineMs: 300_000,
};

export interface KmsCall {
  /** operation name, for messages */
  op: string;
  /** creates state: after a failure that may have reached the KMS, no blind retry */
  idempotent: boolean;
  signal?: AbortSignal | undefined;
  limiter?: AdaptiveLimiter | undefined;
  policy: RetryPolicy;
  /** any thrown value as a KeyportError */
  map: (e: unknown) => KeyportError;
  /** every failed attempt's raw error (request ids for the audit trail) */
  onError?: (e: unknown) => void;
  /** label of the KMS for messages (redacted) */
  kms: string;
  /**
   * false: `fn` honours the signal itself and is awaited to its end (a driver running its own
   * requests through this layer reports better why it stopped, e.g. THROTTLED); default true:
   * the call stops waiting for `fn` when the signal fires
   */
  race?: boolean;
  /**
   * one attempt whatever the error, throttling included: `fn` retried its own requests already (a
   * driver with retriesRequests; no retries on top of retries)
   */
  once?: boolean;
  /**
   * `fn` ends every attempt within this many ms by itself (a hard per-request timeout of its SDK:
   * awskms's timeout-ms). Without a caller signal, an attempt that starts further than this from the
   * deadline then gets no signal at all: it ends before the deadline anyway, and the SDK need not
   * listen to one (a listener or three per request, CPU per KMS call)
   */
  attemptBoundMs?: number;
}

export interface CallResult<T> {
  value: T;
  attempts: number;
}

/**
 * KEYPORT_KMS_RETRIES, KEYPORT_KMS_TIMEOUT_MS (per attempt), KEYPORT_KMS_BACKOFF_MS,
 * KEYPORT_KMS_BACKOFF_MAX_MS, KEYPORT_KMS_DEADLINE_MS (whole call): the operator's overrides.
 */
export function retryPolicyFromEnv(env: NodeJS.ProcessEnv = process.env): Partial<RetryPolicy> {
  const num = (name: string, max: number): number | undefined => {
    const v = env[name];
    if (v === undefined || v === '') return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0 || n > max) throw err('USAGE', `${name} must be a whole number from 0 to ${max}, got '${v}'`);
    return n;
  };
  const o: Partial<RetryPolicy> = {};
  const set = <K extends keyof RetryPolicy>(k: K, v: number | undefined) => {
    if (v !== undefined) o[k] = v;
  };
  set('retries', num('KEYPORT_KMS_RETRIES', 20));
  set('attemptTimeoutMs', num('KEYPORT_KMS_TIMEOUT_MS', 600_000));
  set('baseDelayMs', num('KEYPORT_KMS_BACKOFF_MS', 60_000));
  set('maxDelayMs', num('KEYPORT_KMS_BACKOFF_MAX_MS', 600_000));
  set('deadlineMs', num('KEYPORT_KMS_DEADLINE_MS', 3_600_000));
  return o;
}

const outcomeUnknown = new WeakSet<object>();

/** the failed create may have happened in the KMS: look for what it made before trying again */
export function isOutcomeUnknown(e: unknown): boolean {
  return typeof e === 'object' && e !== null && outcomeUnknown.has(e);
}

export function markOutcomeUnknown<E extends object>(e: E): E {
  outcomeUnknown.add(e);
  return e;
}

/** one signal for the caller's signal, the deadline and (optionally) the attempt timeout */
export function anySignal(signals: (AbortSignal | undefined)[]): AbortSignal | undefined {
  const s = signals.filter((x): x is AbortSignal => x !== undefined);
  if (s.length <= 1) return s[0];
  return AbortSignal.any(s);
}

const MAX_THROTTLED_ATTEMPTS = 100_000;

export async function runKmsCall<T>(c: KmsCall, fn: (signal: AbortSignal | undefined) => Promise<T>): Promise<CallResult<T>> {
  const p = c.policy;
  if (p.deadlineMs <= 0) return attempts_(c, fn, c.signal, Number.POSITIVE_INFINITY);
  const deadlineAt = performance.now() + p.deadlineMs;
  if (!c.signal) {
    // the common case (no caller signal): a deadline signal shared with calls that end about together
    const d = joinDeadline(deadlineAt, p.deadlineMs);
    try {
      return await attempts_(c, fn, d.ac.signal, deadlineAt);
    } finally {
      leaveDeadline(d);
    }
  }
  // timers of our own, not AbortSignal.timeout (whose timer is unref'd: a hanging KMS call would let
  // the process exit with the call pending) — cleared when the call ends
  const deadline = timer(p.deadlineMs);
  try {
    return await attempts_(c, fn, AbortSignal.any([c.signal, deadline.signal]), deadlineAt);
  } finally {
    deadline.clear();
  }
}

/**
 * Deadlines of calls without a caller signal share one AbortController and one timer: calls whose
 * deadlines fall into the same slot (a thousandth of the deadline, 1 ms to 1 s: 300 ms for the default
 * 300 s) share one that fires at the end of the slot, so a deadline fires at most 0.1% (≤ 1 s) late. A
 * controller and a timer of its own per call were most of this layer's CPU per KMS call (issue 12).
 * At most SHARE calls join one (an AbortSignal's listeners are a list: adding one walks it); the timer
 * is cleared as soon as no call uses it, so it never holds the process open after its calls ended.
 */
interface SharedDeadline {
  ac: AbortController;
  timer: ReturnType<typeof setTimeout>;
  key: number;
  users: number;
  joins: number;
}
const SHARE = 64;
const deadlines = new Map<number, SharedDeadline>();

function joinDeadline(deadlineAt: number, deadlineMs: number): SharedDeadline {
  const slot = Math.min(1000, Math.max(1, Math.round(deadlineMs / 1000)));
  const key = Math.ceil(deadlineAt / slot) * slot;
  let d = deadlines.get(key);
  if (!d) {
    const ac = new AbortController();
    setMaxListeners(0, ac.signal); // up to SHARE calls, each with a listener or three (ours, the SDK's)
    const shared: SharedDeadline = { ac, timer: setTimeout(fireDeadline, Math.max(0, key - performance.now())), key, users: 0, joins: 0 };
    function fireDeadline() {
      if (deadlines.get(key) === shared) deadlines.delete(key);
      ac.abort(new DOMException('The operation timed out.', 'TimeoutError'));
    }
    d = shared;
    deadlines.set(key, d);
  }
  d.users++;
  if (++d.joins >= SHARE) deadlines.delete(key); // full: the next call of this slot opens another
  return d;
}

function leaveDeadline(d: SharedDeadline): void {
  if (--d.users > 0) return;
  clearTimeout(d.timer);
  if (deadlines.get(d.key) === d) deadlines.delete(d.key);
}

/** shared deadlines in use (tests: none is left behind once its calls ended) */
export function sharedDeadlines(): number {
  return deadlines.size;
}

function timer(ms: number): { signal: AbortSignal; clear: () => void } {
  const ac = new AbortController();
  const t = setTimeout(() => ac.abort(new DOMException('The operation timed out.', 'TimeoutError')), ms);
  return { signal: ac.signal, clear: () => clearTimeout(t) };
}

async function attempts_<T>(
  c: KmsCall,
  fn: (signal: AbortSignal | undefined) => Promise<T>,
  outer: AbortSignal | undefined,
  deadlineAt: number,
): Promise<CallResult<T>> {
  const p = c.policy;
  let attempts = 0;
  let failures = 0;
  // when time runs out while the KMS throttles, the answer is that it throttled (THROTTLED), not a timeout
  let throttled: KeyportError | undefined;
  const cancelled = () =>
    throttled ??
    (c.signal?.aborted
      ? err('TIMEOUT', `KMS ${c.kms} ${c.op} was cancelled`, { cause: c.signal.reason, retryable: false })
      : err(
          'TIMEOUT',
          `KMS ${c.kms} did not complete ${c.op} within ${p.deadlineMs} ms: check the network and the KMS, or raise the deadline`,
        ));
  for (;;) {
    let sentAt = 0;
    try {
      sentAt = c.limiter ? await c.limiter.acquire(outer) : 0;
    } catch {
      throw cancelled();
    }
    attempts++;
    const attemptTimer = p.attemptTimeoutMs > 0 ? timer(p.attemptTimeoutMs) : undefined;
    const bounded = !c.signal && !attemptTimer && (c.attemptBoundMs ?? 0) > 0 && deadlineAt - performance.now() > c.attemptBoundMs!;
    const signal = bounded ? undefined : anySignal([outer, attemptTimer?.signal]);
    try {
      const value = await withSignal(fn(signal), c.race === false ? undefined : signal, () =>
        outer?.aborted
          ? cancelled()
          : err(
              'TIMEOUT',
              `KMS ${c.kms} did not answer ${c.op} within ${p.attemptTimeoutMs} ms: check the network and the KMS, or raise the timeout`,
            ),
      );
      attemptTimer?.clear();
      c.limiter?.succeeded();
      return { value, attempts };
    } catch (e) {
      attemptTimer?.clear();
      c.onError?.(e);
      const ke = c.map(e);
      throttled = ke.code === 'THROTTLED' ? ke : undefined;
      if (outer?.aborted) throw isKeyportError(ke, 'TIMEOUT') || throttled ? ke : cancelled();
      if (c.once) throw ke;
      if (ke.code === 'THROTTLED') {
        if (c.limiter) c.limiter.throttled(sentAt);
        // throttled requests were not processed: retry while the deadline allows, whatever the call
        if (attempts < MAX_THROTTLED_ATTEMPTS && performance.now() < deadlineAt) {
          if (!c.limiter) await backoff(p, Math.min(++failures, 16), outer).catch(() => undefined);
          continue;
        }
        throw ke;
      }
      const reached = mayHaveReachedKms(e);
      if (ke.retryable && failures < p.retries && (c.idempotent || !reached)) {
        failures++;
        try {
          await backoff(p, failures, outer);
        } catch {
          throw ke;
        }
        continue;
      }
      if (!c.idempotent && ke.retryable && reached) markOutcomeUnknown(ke);
      throw ke;
    }
  }
}

/** full jitter: uniform in [0, min(cap, base × 2^(n-1))] */
function backoff(p: RetryPolicy, n: number, signal: AbortSignal | undefined): Promise<void> {
  return abortableDelay(Math.random() * Math.min(p.maxDelayMs, p.baseDelayMs * 2 ** (n - 1)), signal);
}

/** settle with `p`, or reject with onAbort() when the signal fires first (a late rejection of `p` is swallowed) */
function withSignal<T>(p: Promise<T>, signal: AbortSignal | undefined, onAbort: () => KeyportError): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const abort = () => {
      p.catch(() => undefined);
      reject(onAbort());
    };
    if (signal.aborted) return abort();
    signal.addEventListener('abort', abort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', abort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', abort);
        reject(e);
      },
    );
  });
}
