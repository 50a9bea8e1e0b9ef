/**
 * Cancellation, one shape for every layer (KES's cancelling context): a call takes
 * `opts?: CallOptions` and stops its work when `signal` fires — a request's deadline, a client gone,
 * a migration interrupted — instead of racing it. KMS drivers (src/kms/driver.ts) and record stores
 * (src/store/types.ts) both take it.
 */
import { err, isKeyportError, type KeyportError } from './errors.js';

/** Per-call options: the caller's AbortSignal cancels the call. */
export interface CallOptions {
  signal?: AbortSignal | undefined;
}

/** the error of a call its caller cancelled: the signal's reason when that is a KeyportError, else TIMEOUT */
export function cancelled(what: string, signal: AbortSignal): KeyportError {
  const r: unknown = signal.reason;
  if (isKeyportError(r)) return r;
  return err('TIMEOUT', `${what} was cancelled`, { cause: r, retryable: false });
}

/** throws `cancelled(what)` when the signal has fired */
export function checkCancelled(what: string, signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw cancelled(what, signal);
}

/** wait `ms`, or reject with `cancelled(what)` as soon as the signal fires */
export function sleepUnlessCancelled(ms: number, what: string, signal: AbortSignal | undefined): Promise<void> {
  return abortableSleep(ms, signal, () => cancelled(what, signal!));
}

/** wait `ms`, or reject with `reason()` as soon as the signal fires (at once if it already has) */
export function abortableSleep(ms: number, signal: AbortSignal | undefined, reason: () => unknown): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(reason());
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(reason());
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
