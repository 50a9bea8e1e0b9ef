/** azurekv: every Key Vault SDK / network failure as a one-line KeyportError. */
import { err, isKeyportError, type ErrorCode, type KeyportError } from '../../errors.js';
import { classifyNetworkError } from '../neterrors.js';

interface SdkError {
  name?: string;
  code?: string;
  statusCode?: number;
  message?: string;
  cause?: unknown;
}

function firstLine(s: string | undefined): string {
  const line = (s ?? '').split('\n')[0]!.trim();
  return line.length > 200 ? line.slice(0, 200) + '…' : line;
}

/** the Azure error message out of a RestError (its message may be the whole JSON body) */
function azureMessage(e: SdkError): string {
  const m = e.message ?? '';
  try {
    const j = JSON.parse(m) as { error?: { message?: string; code?: string } };
    if (j.error?.message) return firstLine(j.error.message);
  } catch {
    /* not JSON */
  }
  return firstLine(m);
}

/** Every SDK / network failure as a one-line KeyportError. `what` names the operation and key. */
export function mapAzureError(e: unknown, what: string, vault: string): KeyportError {
  if (isKeyportError(e)) return e;
  const x = (e ?? {}) as SdkError;
  const status = x.statusCode;
  const msg = azureMessage(x);
  const mk = (c: ErrorCode, m: string, opts: { retryable?: boolean } = {}) => err(c, `azurekv: ${what}: ${m}`, { cause: e, ...opts });
  if (x.name === 'AbortError') return mk('TIMEOUT', `request to ${vault} timed out or was cancelled`);
  if (x.name === 'AuthenticationError' || x.name === 'CredentialUnavailableError' || x.name === 'AggregateAuthenticationError')
    return mk('AUTH', `could not get an Azure token (${msg}): check the credentials`);
  if (status === undefined) {
    const net = classifyNetworkError(e);
    if (net?.tls)
      return mk('UNAVAILABLE', `the TLS certificate of ${vault} is not trusted (${net.errno}): pass ca=PEM-FILE`, { retryable: false });
    if (net?.code === 'TIMEOUT') return mk('TIMEOUT', `${vault} did not answer in time (${net.errno})`);
    if (net) return mk('UNAVAILABLE', `cannot reach ${vault} (${net.errno}): check vault= and the network`);
    return mk('INTERNAL', msg || 'unexpected failure');
  }
  const azCode = x.code ?? '';
  if (status === 401) return mk('AUTH', `the vault refused the credentials (${msg}): check the token / identity`);
  if (status === 403) {
    if (/disabled/i.test(msg) || azCode === 'KeyDisabled') return mk('KEY_DISABLED', `the key is disabled: enable it in the vault`);
    if (/not allowed|operation .* is not permitted|key_ops|keyops/i.test(msg)) return mk('KEY_USAGE', msg);
    return mk('PERMISSION', `access denied by the vault (${msg}): grant the identity the Key Vault Crypto permissions it needs`);
  }
  if (status === 404 || azCode === 'KeyNotFound') return mk('NOT_FOUND', `not found in ${vault}`);
  if (status === 409) {
    if (/deleted but recoverable|ObjectIsDeletedButRecoverable/i.test(msg + azCode))
      return mk('EXISTS', `a deleted key of that name still exists in ${vault}: recover or purge it first`);
    return mk('CONFLICT', msg || 'conflict');
  }
  if (status === 429) return mk('THROTTLED', `the vault is throttling requests (${msg})`);
  if (status === 408) return mk('TIMEOUT', msg || 'request timeout');
  if (status >= 500) return mk('UNAVAILABLE', `the vault answered ${status} (${msg})`);
  if (status === 400) return mk('INVALID_INPUT', msg || 'bad request');
  return mk('INTERNAL', `the vault answered ${status} (${msg})`);
}
