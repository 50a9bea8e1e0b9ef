/**
 * One adaptive rate limiter per KMS and quota per process (`limiterFor(kms, quota, seed?)`), shared by
 * every caller: migrate, protect, unsealing, server requests and external signing all go through it,
 * so what one learns about the KMS's quota the others use. A driver names the quota a request draws on:
 * for AWS KMS the shared cryptographic quota of the key's type (symmetric, RSA, ECC) or the operation
 * (CreateKey, GetParametersForImport, …), as AWS counts them.
 *
 * AIMD on the request rate, the shape of AWS's own quotas (requests per second):
 *  - the start: the KMS's documented default quota when the driver knows it (`seed`: AWS KMS's table,
 *    src/kms/aws/quotas.ts), else unlimited until the KMS first throttles — no pacing and no cost on a
 *    KMS that does not throttle;
 *  - on a throttle of a request sent after the last decrease: the rate becomes 0.85 × the current rate
 *    (or × the rate of requests sent in the last second when none was set yet), and no more than the
 *    rate of successful requests over the last two seconds (at a low rate: the last eight requests'
 *    worth of time; the larger of their count over that window and their spacing from first to last,
 *    see successRate), but never less than half the current rate — multiplicative decrease, once per
 *    "generation", so a burst of throttles from requests already in flight counts once;
 *  - while callers are waiting for it (the rate binds) and at least 20 requests were granted since the
 *    last decrease (or since the documented start), the rate grows by 4% of the rate at the last
 *    decrease per second, that step doubling with every 50 requests granted since that decrease (up to
 *    32×), and by at most 1% per granted request — additive increase near a quota just found, a quota
 *    that was raised is found again within seconds, and a low quota (0.25/s, a one-request bucket) is
 *    not probed after every request;
 *  - requests are spaced 1/rate apart, each gap stretched by up to 10% at random (jitter), so callers
 *    that share a quota do not move in lock-step (never shortened: a one-token bucket would throttle).
 */

import { abortableSleep } from '../cancel.js';

export interface LimiterStats {
  /** requests per second now; Infinity while the KMS never throttled */
  rate: number;
  sent: number;
  throttled: number;
  decreases: number;
  /** time callers spent waiting for their turn, summed over callers (ms) */
  waitedMs: number;
}

const DECREASE = 0.85;
const INCREASE_PER_S = 0.04;
const MIN_RATE = 0.02;
const JITTER = 0.1;
const WINDOW_MS = 1000;
const SUCCESS_WINDOW_MS = 2000;
/** at a low rate the success window spans this many requests' worth of time (up to MAX_SUCCESS_WINDOW_MS) */
const SUCCESS_WINDOW_REQUESTS = 8;
const MAX_SUCCESS_WINDOW_MS = 60_000;
/** granted requests after a decrease (or the documented start) before the rate is probed upward */
const PROBE_AFTER = 20;
/** the most the rate grows per granted request */
const MAX_GROWTH_PER_GRANT = 0.01;
/** requests granted without a throttle per doubling of the increase step, and the largest step multiple */
const SPEEDUP_EVERY = 50;
const MAX_SPEEDUP = 32;

export class AdaptiveLimiter {
  private rate = Number.POSITIVE_INFINITY;
  private rateAtCut = 0;
  /** when this limiter saw its first request (the success window never reaches before it) */
  private started = -1;
  private next = 0;
  private lastCut = 0;
  private lastGrow = 0;
  private readonly recent: number[] = [];
  private readonly successes: number[] = [];
  private stats = { sent: 0, throttled: 0, decreases: 0, waitedMs: 0 };
  /** requests granted since the last decrease */
  private sinceCut = 0;
  /** bumped at every decrease: slots reserved before it are given up */
  private gen = 0;

  /** `seed`: the KMS's documented quota (requests per second) to start at; none: unlimited until throttled */
  constructor(seed?: number) {
    if (seed !== undefined && Number.isFinite(seed) && seed > 0) {
      this.rate = seed;
      this.rateAtCut = seed;
    }
  }

  /**
   * Wait for this caller's turn; resolves with the grant time (pass it to `throttled`). Rejects with
   * the signal's reason when it aborts while waiting.
   */
  async acquire(signal?: AbortSignal): Promise<number> {
    signal?.throwIfAborted();
    let now = performance.now();
    const t0 = now;
    if (this.started < 0) this.started = now;
    // the time this request's slot was granted at the rate then in force: a throttle of it says
    // something about that rate, not about one set since
    let granted = now;
    for (;;) {
      if (!Number.isFinite(this.rate)) break;
      const gen = this.gen;
      const gap = (1000 / this.rate) * (1 + Math.random() * JITTER);
      const slot = Math.max(now, this.next);
      this.next = slot + gap;
      const wait = slot - now;
      if (wait <= 0.5) {
        this.lastGrow = now; // the rate does not bind: no probing for more
        break;
      }
      this.grow(now);
      await delay(wait, signal);
      now = performance.now();
      // a slot reserved before a decrease was spaced at the old rate: take a new one
      if (gen === this.gen) break;
      granted = now;
    }
    this.stats.sent++;
    this.stats.waitedMs += now - t0;
    this.sinceCut++;
    this.recent.push(now);
    while (this.recent.length && this.recent[0]! < now - WINDOW_MS) this.recent.shift();
    return granted;
  }

  /** the request granted at `sentAt` (acquire's result) was throttled */
  throttled(sentAt: number): void {
    this.stats.throttled++;
    if (sentAt < this.lastCut) return; // sent at the old rate: already accounted for
    const now = performance.now();
    const base = Number.isFinite(this.rate) ? this.rate : Math.max(this.recent.filter((t) => t >= now - WINDOW_MS).length, 1);
    const window = this.successWindow(now);
    this.prune(now, window);
    const succeeded = this.successRate(window);
    this.rate = Math.max(MIN_RATE, base * 0.5, Math.min(base * DECREASE, succeeded));
    this.rateAtCut = this.rate;
    this.lastCut = now;
    this.lastGrow = now;
    this.stats.decreases++;
    this.sinceCut = 0;
    this.gen++;
    // slots reserved at the old rate are given up (their holders queue again); the next is one gap away
    this.next = now + 1000 / this.rate;
  }

  /** a request succeeded (its rate bounds the next decrease) */
  succeeded(): void {
    const now = performance.now();
    this.successes.push(now);
    if (this.successes.length > 4096) this.prune(now, this.successWindow(now));
  }

  /** the time over which successes measure the rate the KMS allows: two seconds, or eight requests' worth at a low rate */
  private successWindow(now: number): number {
    const low = Number.isFinite(this.rate) ? (SUCCESS_WINDOW_REQUESTS * 1000) / this.rate : 0;
    const w = Math.min(MAX_SUCCESS_WINDOW_MS, Math.max(SUCCESS_WINDOW_MS, low));
    return Math.max(1, Math.min(w, now - (this.started < 0 ? now : this.started)));
  }

  /**
   * the rate at which requests recently succeeded: the count over the window or, over three or more
   * successes, their spacing from first to last (a 0.25/s quota's successes 4 s apart give 0.25, however
   * the window cuts them), whichever is larger
   */
  private successRate(window: number): number {
    const n = this.successes.length;
    const counted = n / (window / 1000);
    if (n < 3) return counted;
    const span = this.successes[n - 1]! - this.successes[0]!;
    // both estimates fall short of the quota in their own way (a window cuts successes off; a sender slower
    // than the refill spaces them wider): the larger bounds the cut
    return span > 0 ? Math.max(counted, ((n - 1) * 1000) / span) : counted;
  }

  private prune(now: number, window = MAX_SUCCESS_WINDOW_MS): void {
    let i = 0;
    while (i < this.successes.length && this.successes[i]! < now - window) i++;
    if (i) this.successes.splice(0, i);
  }

  /** additive increase while the rate binds (called when a caller has to wait) */
  private grow(now: number): void {
    if (!Number.isFinite(this.rate)) return;
    const dt = (now - this.lastGrow) / 1000;
    if (dt <= 0) return;
    this.lastGrow = now;
    if (this.sinceCut < PROBE_AFTER) return;
    const speedup = Math.min(MAX_SPEEDUP, 2 ** Math.floor(this.sinceCut / SPEEDUP_EVERY));
    const step = Math.max(this.rateAtCut * INCREASE_PER_S * speedup, MIN_RATE / 4) * dt;
    this.rate += Math.min(step, this.rate * MAX_GROWTH_PER_GRANT);
  }

  snapshot(): LimiterStats {
    return { rate: this.rate, ...this.stats };
  }
}

/** the caller's signal ends a wait with its own reason (the deadline's error) */
function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return abortableSleep(ms, signal, () => signal!.reason);
}

const limiters = new Map<string, AdaptiveLimiter>();

/**
 * The process's limiter for one quota of one KMS (`kms`: a redacted, credential-free identity; `quota`:
 * an operation or a shared quota's name). `seed` (the documented default quota) applies when the
 * limiter is made; later callers share what it learned.
 */
export function limiterFor(kms: string, quota: string, seed?: number): AdaptiveLimiter {
  const k = `${kms}\u0000${quota}`;
  let l = limiters.get(k);
  if (!l) {
    l = new AdaptiveLimiter(seed);
    limiters.set(k, l);
  }
  return l;
}

/** forget everything learned (a benchmark's cases each stand for a separate run of keyport) */
export function resetLimiters(): void {
  limiters.clear();
}

/** every limiter of this process (bench and doctor output) */
export function limiterStats(): Record<string, LimiterStats> {
  const out: Record<string, LimiterStats> = {};
  for (const [k, l] of limiters) out[k.replace('\u0000', ' ')] = l.snapshot();
  return out;
}

export { delay as abortableDelay };
