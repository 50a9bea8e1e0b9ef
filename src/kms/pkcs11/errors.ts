/**
 * PKCS#11 return values -> KeyportError. pkcs11js throws a Pkcs11Error whose message is the CKR_ name
 * (e.g. "CKR_PIN_INCORRECT"); anything else from the binding is a NativeError or TypeError. Messages
 * name the operation and the CKR_ code only: never a PIN, never key bytes.
 */
import { err, isKeyportError, type ErrorCode, type KeyportError } from '../../errors.js';

/** the CKR_ name of a pkcs11js error, or undefined */
export function ckrName(e: unknown): string | undefined {
  if (!(e instanceof Error)) return undefined;
  const m = /\b(CKR_[A-Z0-9_]+)\b/.exec(e.message);
  return m ? m[1] : undefined;
}

const CODES: Record<string, { code: ErrorCode; hint: string; retryable?: boolean }> = {
  CKR_PIN_INCORRECT: { code: 'AUTH', hint: 'the PIN is wrong: check pin-value / pin-source / KEYPORT_PKCS11_PIN' },
  CKR_PIN_INVALID: { code: 'AUTH', hint: 'the PIN has characters the token does not accept' },
  CKR_PIN_LEN_RANGE: { code: 'AUTH', hint: 'the PIN has a length the token does not accept' },
  CKR_PIN_EXPIRED: { code: 'AUTH', hint: 'the PIN has expired: set a new one on the token' },
  CKR_PIN_LOCKED: { code: 'AUTH', hint: 'the user PIN is locked: unlock it with the SO PIN' },
  CKR_USER_NOT_LOGGED_IN: { code: 'AUTH', hint: 'not logged in to the token: give a PIN' },
  CKR_USER_PIN_NOT_INITIALIZED: { code: 'AUTH', hint: 'the token has no user PIN yet: initialise it' },
  CKR_USER_TYPE_INVALID: { code: 'AUTH', hint: 'the token refused the user type' },
  CKR_TOKEN_NOT_PRESENT: { code: 'UNAVAILABLE', hint: 'the token is not present' },
  CKR_TOKEN_NOT_RECOGNIZED: { code: 'UNAVAILABLE', hint: 'the token is not recognised' },
  CKR_DEVICE_ERROR: { code: 'UNAVAILABLE', hint: 'the device reported an error' },
  CKR_DEVICE_REMOVED: { code: 'UNAVAILABLE', hint: 'the device was removed' },
  CKR_DEVICE_MEMORY: { code: 'UNAVAILABLE', hint: 'the device is out of memory' },
  CKR_SESSION_HANDLE_INVALID: { code: 'UNAVAILABLE', hint: 'the session was lost' },
  CKR_SESSION_CLOSED: { code: 'UNAVAILABLE', hint: 'the session was closed' },
  CKR_SESSION_COUNT: { code: 'THROTTLED', hint: 'the token has no free sessions' },
  CKR_CRYPTOKI_NOT_INITIALIZED: { code: 'UNAVAILABLE', hint: 'the module is not initialised' },
  CKR_SLOT_ID_INVALID: { code: 'UNAVAILABLE', hint: 'the slot is gone' },
  CKR_KEY_TYPE_INCONSISTENT: { code: 'KEY_USAGE', hint: 'the key type does not fit this operation' },
  CKR_KEY_FUNCTION_NOT_PERMITTED: { code: 'KEY_USAGE', hint: 'the key is not allowed for this operation' },
  CKR_KEY_HANDLE_INVALID: { code: 'NOT_FOUND', hint: 'the key object is gone' },
  CKR_OBJECT_HANDLE_INVALID: { code: 'NOT_FOUND', hint: 'the key object is gone' },
  CKR_KEY_SIZE_RANGE: { code: 'UNSUPPORTED', hint: 'the token does not support this key size' },
  CKR_MECHANISM_INVALID: { code: 'UNSUPPORTED', hint: 'the token does not support this mechanism' },
  CKR_MECHANISM_PARAM_INVALID: { code: 'UNSUPPORTED', hint: 'the token does not support these mechanism parameters' },
  CKR_DOMAIN_PARAMS_INVALID: { code: 'UNSUPPORTED', hint: 'the token does not support this curve' },
  CKR_CURVE_NOT_SUPPORTED: { code: 'UNSUPPORTED', hint: 'the token does not support this curve' },
  CKR_TEMPLATE_INCONSISTENT: { code: 'UNSUPPORTED', hint: 'the token refused the key attributes' },
  CKR_TEMPLATE_INCOMPLETE: { code: 'UNSUPPORTED', hint: 'the token wants more key attributes' },
  CKR_ATTRIBUTE_VALUE_INVALID: { code: 'UNSUPPORTED', hint: 'the token refused a key attribute value' },
  CKR_ATTRIBUTE_TYPE_INVALID: { code: 'UNSUPPORTED', hint: 'the token does not know a key attribute' },
  CKR_ENCRYPTED_DATA_INVALID: { code: 'INVALID_CIPHERTEXT', hint: 'the ciphertext is not valid for this key' },
  CKR_ENCRYPTED_DATA_LEN_RANGE: { code: 'INVALID_CIPHERTEXT', hint: 'the ciphertext has the wrong length' },
  CKR_DATA_INVALID: { code: 'INVALID_INPUT', hint: 'the token refused the input data' },
  CKR_DATA_LEN_RANGE: { code: 'INVALID_INPUT', hint: 'the input has a length the token does not accept' },
  CKR_WRAPPED_KEY_INVALID: { code: 'INVALID_INPUT', hint: 'the token refused the imported key material' },
  CKR_WRAPPED_KEY_LEN_RANGE: { code: 'INVALID_INPUT', hint: 'the imported key material has the wrong length' },
  CKR_TOKEN_WRITE_PROTECTED: { code: 'PERMISSION', hint: 'the token is write-protected' },
  CKR_SESSION_READ_ONLY: { code: 'PERMISSION', hint: 'the session is read-only' },
  CKR_ACTION_PROHIBITED: { code: 'PERMISSION', hint: 'the token prohibits this action' },
  CKR_FUNCTION_NOT_SUPPORTED: { code: 'UNSUPPORTED', hint: 'the module does not implement this function' },
  CKR_OPERATION_ACTIVE: { code: 'CONFLICT', hint: 'another operation was active on the session' },
};

/**
 * Map anything pkcs11js (or our own code) threw. `op` names what we were doing ("sign with 'k1'").
 * KeyportErrors pass through unchanged.
 */
export function mapError(e: unknown, op: string, override?: Partial<Record<string, ErrorCode>>): KeyportError {
  if (isKeyportError(e)) return e;
  const name = ckrName(e);
  if (name) {
    const forced = override?.[name];
    if (forced) return err(forced, `pkcs11: ${op} failed (${name})`, { cause: undefined });
    const m = CODES[name];
    if (m)
      return err(m.code, `pkcs11: ${op} failed: ${m.hint} (${name})`, m.retryable === undefined ? undefined : { retryable: m.retryable });
    return err('INTERNAL', `pkcs11: ${op} failed (${name})`);
  }
  // a binding error (TypeError for a bad argument, NativeError from the loader): first line only
  const msg = e instanceof Error ? e.message.split('\n')[0]!.slice(0, 200) : String(e);
  return err('INTERNAL', `pkcs11: ${op} failed: ${msg}`);
}
