/**
 * Bounded concurrency for migrate's items. KMS throttling is not handled here: every KMS call goes
 * through the process's adaptive limiter per KMS operation and is retried there while its deadline
 * allows (src/kms/retry.ts), so a THROTTLED that reaches this pool is final. This layer retries only
 * what it knows better: a concurrent-modification CONFLICT of the target store.
 */
import { isKeyportError, type KeyportError } from '../errors.js';

export class AdaptivePool {
  private limit: number;
  private active = 0;
  private waiters: (() => void)[] = [];
  private okStreak = 0;
  throttled = 0;

  constructor(private max: number) {
    this.limit = max;
  }

  get current(): number {
    return this.limit;
  }

  private async acquire(): Promise<void> {
    while (this.active >= this.limit) await new Promise<void>((r) => this.waiters.push(r));
    this.active++;
  }

  private release(): void {
    this.active--;
    this.waiters.shift()?.();
  }

  /** run fn under the limit, retrying retryable errors with back-off (bounded) */
  async run<T>(fn: () => Promise<T>, retries = 6): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      await this.acquire();
      try {
        const v = await fn();
        if (++this.okStreak >= 50 && this.limit < this.max) {
          this.limit++;
          this.okStreak = 0;
        }
        return v;
      } catch (e) {
        this.okStreak = 0;
        // KMS calls come with the one retry layer (src/kms/retry.ts): retrying UNAVAILABLE, TIMEOUT or
        // THROTTLED again here would multiply its attempts
        if (isKeyportError(e, 'THROTTLED')) this.throttled++;
        const again = isKeyportError(e) && (e as KeyportError).retryable && e.code === 'CONFLICT';
        if (!again || attempt >= retries) throw e;
      } finally {
        this.release();
      }
      const base = Math.min(10_000, 100 * 2 ** attempt);
      await new Promise((r) => setTimeout(r, Math.random() * base));
    }
  }

  /** map items with the pool, keeping order */
  async map<I, O>(items: I[], fn: (i: I) => Promise<O>): Promise<O[]> {
    return Promise.all(items.map((i) => this.run(() => fn(i))));
  }
}
