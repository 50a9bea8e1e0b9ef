/** gcpkms: every Cloud KMS failure (gRPC status, auth library, network) as a KeyportError. */
import { isKeyportError, KeyportError, type ErrorCode } from '../../errors.js';
import { classifyNetworkError } from '../neterrors.js';

const GRPC: Record<number, string> = {
  1: 'CANCELLED',
  2: 'UNKNOWN',
  3: 'INVALID_ARGUMENT',
  4: 'DEADLINE_EXCEEDED',
  5: 'NOT_FOUND',
  6: 'ALREADY_EXISTS',
  7: 'PERMISSION_DENIED',
  8: 'RESOURCE_EXHAUSTED',
  9: 'FAILED_PRECONDITION',
  10: 'ABORTED',
  11: 'OUT_OF_RANGE',
  12: 'UNIMPLEMENTED',
  13: 'INTERNAL',
  14: 'UNAVAILABLE',
  15: 'DATA_LOSS',
  16: 'UNAUTHENTICATED',
};

export const HINT: Partial<Record<ErrorCode, string>> = {
  AUTH: 'check the credentials file / application default credentials',
  PERMISSION: 'grant the caller the Cloud KMS role it needs on the key or key ring',
  UNAVAILABLE: 'check the endpoint and network, then retry',
  TIMEOUT: 'retry, or raise timeout-ms',
  THROTTLED: 'retry later with back-off, or raise the Cloud KMS quota',
  KEY_DISABLED: 'enable (or restore) a key version, or use another key',
  KEY_USAGE: 'use a key created for this operation',
  UNSUPPORTED: 'this Cloud KMS endpoint does not implement it',
};

/** network failures named in an auth library's message (the gRPC status is not set there) */
const NET = /ECONNREFUSED|ECONNRESET|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ETIMEDOUT|socket hang up|No connection established/i;

export function clip(s: string): string {
  const one = s.replace(/\s*\n\s*/g, ' ').trim();
  return one.length > 200 ? `${one.slice(0, 197)}...` : one;
}

/**
 * Map an error from a Cloud KMS call (gRPC status, auth library, network) to a KeyportError.
 * `what` names the operation and resource (never key bytes); `decrypting` turns INVALID_ARGUMENT into
 * INVALID_CIPHERTEXT.
 */
export function mapGcpError(e: unknown, what: string, decrypting = false): KeyportError {
  if (isKeyportError(e)) return e;
  const o = (e ?? {}) as { code?: unknown; details?: unknown; message?: unknown };
  const detail = clip(String((typeof o.details === 'string' && o.details) || (typeof o.message === 'string' && o.message) || String(e)))
    .replace(/^\d+ [A-Z_]+: /, '')
    .replace(/\.?\s*Resolution note:.*$/, '')
    .replace(/Last error: Error: /, 'last error: ')
    .replace(/(Deadline exceeded after [\d.]+s),.*$/, '$1');
  const num = typeof o.code === 'number' ? o.code : undefined;
  let code: ErrorCode;
  if (
    /Getting metadata from plugin failed|Could not load the default credentials|Could not refresh access token/i.test(detail) ||
    /invalid_grant|unauthorized_client|invalid_client/i.test(detail)
  ) {
    code = NET.test(detail) ? 'UNAVAILABLE' : 'AUTH';
  } else if (num !== undefined && GRPC[num]) {
    switch (GRPC[num]) {
      case 'NOT_FOUND':
        code = 'NOT_FOUND';
        break;
      case 'ALREADY_EXISTS':
        code = 'EXISTS';
        break;
      case 'PERMISSION_DENIED':
        code = 'PERMISSION';
        break;
      case 'UNAUTHENTICATED':
        code = 'AUTH';
        break;
      case 'RESOURCE_EXHAUSTED':
        code = 'THROTTLED';
        break;
      case 'DEADLINE_EXCEEDED':
      case 'CANCELLED':
        code = 'TIMEOUT';
        break;
      case 'UNAVAILABLE':
      case 'INTERNAL':
      case 'UNKNOWN':
      case 'DATA_LOSS':
        code = 'UNAVAILABLE';
        break;
      case 'ABORTED':
        code = 'CONFLICT';
        break;
      case 'UNIMPLEMENTED':
        code = 'UNSUPPORTED';
        break;
      case 'FAILED_PRECONDITION':
        code = /purpose|algorithm|not (a|an) (asymmetric|symmetric|signing|decryption)|does not support/i.test(detail)
          ? 'KEY_USAGE'
          : 'KEY_DISABLED';
        break;
      case 'INVALID_ARGUMENT':
      case 'OUT_OF_RANGE':
        if (/purpose|ASYMMETRIC_SIGN|ASYMMETRIC_DECRYPT|ENCRYPT_DECRYPT|algorithm .* (not|does)/i.test(detail)) code = 'KEY_USAGE';
        else code = decrypting ? 'INVALID_CIPHERTEXT' : 'INVALID_INPUT';
        break;
      default:
        code = 'INTERNAL';
    }
  } else if (classifyNetworkError(e)) {
    code = classifyNetworkError(e)!.code;
  } else {
    code = 'INTERNAL';
  }
  const hint = HINT[code];
  return new KeyportError(code, `GCP KMS ${what} failed: ${detail}${hint ? ` (${hint})` : ''}`, { cause: e });
}
