/**
 * The one network-error classifier every driver uses (aws, azure, gcp, kmip): what a socket / DNS /
 * TLS failure means for a KMS call, independent of the SDK that reported it.
 *  - `code`: UNAVAILABLE (cannot reach or lost the connection) or TIMEOUT (no answer in time);
 *  - `sent`: whether the request may have reached the KMS. `false` only when the connection was
 *    never made (refused, no route, no DNS): then even a create can be retried blindly. `true` means
 *    the outcome is unknown (reset, broken pipe, hang-up, timeout after connecting): a create must be
 *    looked up before it is retried.
 *  - `tls`: the peer's certificate is not trusted (not retryable: configuration, not the network).
 */
import type { ErrorCode } from '../errors.js';

export interface NetClass {
  code: Extract<ErrorCode, 'UNAVAILABLE' | 'TIMEOUT'>;
  /** the system / library code seen (ECONNRESET, ETIMEDOUT, …) */
  errno: string;
  /** the request may have reached the KMS (its outcome is unknown) */
  sent: boolean;
  tls?: boolean;
}

/** connection never established: the request cannot have reached the KMS */
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'REQUEST_SEND_ERROR']);
/** the connection broke while the request may have been in flight */
const LOST = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);
const TIMEOUT = new Set(['ETIMEDOUT', 'ESOCKETTIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
export const TLS_UNTRUSTED = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** the first string `code` on the error, its `cause` chain or an AggregateError's `errors` */
export function errnoOf(e: unknown, depth = 0): string | undefined {
  if (!e || typeof e !== 'object' || depth > 5) return undefined;
  const o = e as { name?: unknown; code?: unknown; cause?: unknown; errors?: unknown };
  // a KeyportError's code is keyport's own (UNAVAILABLE, …): the network's is on its cause
  if (typeof o.code === 'string' && o.code && o.name !== 'KeyportError') return o.code;
  if (Array.isArray(o.errors))
    for (const x of o.errors) {
      const c = errnoOf(x, depth + 1);
      if (c) return c;
    }
  return errnoOf(o.cause, depth + 1);
}

function messagesOf(e: unknown): string {
  const out: string[] = [];
  let cur: unknown = e;
  for (let i = 0; cur && typeof cur === 'object' && i < 5; i++) {
    const m = (cur as { message?: unknown }).message;
    if (typeof m === 'string') out.push(m);
    cur = (cur as { cause?: unknown }).cause;
  }
  return out.join(' | ');
}

/** Classify a network failure; undefined when `e` is not one (an answer from the KMS, a bug, …). */
export function classifyNetworkError(e: unknown): NetClass | undefined {
  const code = errnoOf(e) ?? '';
  if (NOT_SENT.has(code)) return { code: 'UNAVAILABLE', errno: code, sent: false };
  if (LOST.has(code)) return { code: 'UNAVAILABLE', errno: code, sent: true };
  if (TIMEOUT.has(code)) return { code: 'TIMEOUT', errno: code, sent: true };
  if (TLS_UNTRUSTED.has(code)) return { code: 'UNAVAILABLE', errno: code, sent: false, tls: true };
  const msg = messagesOf(e);
  if (/ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|No connection established/.test(msg))
    return { code: 'UNAVAILABLE', errno: /E[A-Z_]+/.exec(msg)?.[0] ?? 'connect', sent: false };
  if (/socket hang up|ECONNRESET|EPIPE/i.test(msg)) return { code: 'UNAVAILABLE', errno: 'ECONNRESET', sent: true };
  if (/ETIMEDOUT/.test(msg)) return { code: 'TIMEOUT', errno: 'ETIMEDOUT', sent: true };
  return undefined;
}

/**
 * Whether a failed call may have changed the KMS's state (so a create must not be retried blindly):
 * false for throttling and for connections never made, true otherwise (5xx, reset, timeout, …).
 * Looks through KeyportError causes.
 */
export function mayHaveReachedKms(e: unknown): boolean {
  const c = (e as { code?: unknown })?.code;
  if (c === 'THROTTLED') return false;
  const n = classifyNetworkError(e);
  if (n) return n.sent;
  return true;
}
