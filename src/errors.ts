/**
 * Typed errors with stable codes (the panva/jose model). Every error a user can cause is a
 * KeyportError: the CLI prints its message on one line and exits with `exitCode`; the server answers
 * with `httpStatus` and `{"message": …}`. Messages never carry key bytes.
 */
export type ErrorCode =
  | 'USAGE' // bad command line / arguments
  | 'INVALID_NAME'
  | 'INVALID_INPUT' // malformed file, body, URI, YAML, pattern
  | 'INVALID_CIPHERTEXT'
  | 'NOT_FOUND'
  | 'EXISTS'
  | 'UNSUPPORTED' // operation not possible for this key type / store / KMS
  | 'KEY_USAGE' // key exists but is not allowed for this use
  | 'KEY_DISABLED'
  | 'VERIFY_FAILED'
  | 'PERMISSION' // denied by KMS/policy
  | 'AUTH' // bad credentials
  | 'UNAVAILABLE' // store/KMS unreachable (retryable)
  | 'TIMEOUT' // retryable
  | 'THROTTLED' // retryable
  | 'CONFLICT' // concurrent modification
  | 'INTERNAL';

const DEFAULTS: Record<ErrorCode, { exit: number; http: number; retryable: boolean }> = {
  USAGE: { exit: 2, http: 400, retryable: false },
  INVALID_NAME: { exit: 2, http: 400, retryable: false },
  INVALID_INPUT: { exit: 1, http: 400, retryable: false },
  INVALID_CIPHERTEXT: { exit: 1, http: 400, retryable: false },
  NOT_FOUND: { exit: 1, http: 404, retryable: false },
  EXISTS: { exit: 1, http: 400, retryable: false },
  UNSUPPORTED: { exit: 1, http: 501, retryable: false },
  KEY_USAGE: { exit: 1, http: 403, retryable: false },
  KEY_DISABLED: { exit: 1, http: 403, retryable: false },
  VERIFY_FAILED: { exit: 1, http: 400, retryable: false },
  PERMISSION: { exit: 1, http: 403, retryable: false },
  AUTH: { exit: 1, http: 401, retryable: false },
  UNAVAILABLE: { exit: 1, http: 502, retryable: true },
  TIMEOUT: { exit: 1, http: 504, retryable: true },
  THROTTLED: { exit: 1, http: 503, retryable: true },
  CONFLICT: { exit: 1, http: 409, retryable: true },
  INTERNAL: { exit: 1, http: 500, retryable: false },
};

export class KeyportError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly exitCode: number;
  readonly httpStatus: number;
  constructor(code: ErrorCode, message: string, opts: { retryable?: boolean; httpStatus?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'KeyportError';
    this.code = code;
    const d = DEFAULTS[code];
    this.retryable = opts.retryable ?? d.retryable;
    this.exitCode = d.exit;
    this.httpStatus = opts.httpStatus ?? d.http;
  }
}

export const err = (code: ErrorCode, message: string, opts?: { retryable?: boolean; httpStatus?: number; cause?: unknown }) =>
  new KeyportError(code, message, opts);

export function isKeyportError(e: unknown, code?: ErrorCode): e is KeyportError {
  return e instanceof KeyportError && (code === undefined || e.code === code);
}

/** One line for a user: never a stack trace. Unknown errors are named as internal. */
export function oneLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.replace(/\s*\n\s*/g, ' ').trim() || 'unknown error';
}
