/**
 * AWS KMS request quotas: which quota each request draws on, and its documented default rate.
 *
 * AWS counts cryptographic operations in shared quotas by the key's type — symmetric (Encrypt, Decrypt,
 * GenerateDataKey*, ReEncrypt, GenerateMac, …), RSA (Encrypt, Decrypt, Sign, Verify on RSA keys) and
 * ECC (Sign, Verify) — and every other operation on its own (CreateKey 5/s, GetParametersForImport 0.25/s,
 * …), per account and Region. The process's limiters (src/kms/limiter.ts) are keyed the same way, so a
 * migration's Encrypt and Decrypt slow down together as AWS throttles them together.
 *
 * Rates: AWS KMS Developer Guide, "Request quotas", default values — the lowest AWS has published for
 * each (quotas that vary by Region: the lowest Region's; the guide has raised several over time, e.g.
 * GetParametersForImport 0.25/s → 1/s, ECC 300/s → 1,000/s, and accounts keep the quotas they have).
 * Every one is adjustable per account, so a limiter starts there and probes upward while no request is
 * throttled: an account with higher quotas is found, one with the published minimum is never throttled.
 *
 * The connection setting `quotas=` chooses whether these defaults apply: `aws` (the default for AWS's
 * own endpoints: no `endpoint=`, or an amazonaws.com / api.aws host) starts every limiter at the
 * documented default; `learn` (the default for any other endpoint: emulators, proxies, VPC endpoints
 * under another name) starts unlimited and learns each quota from the first throttle.
 */
import { err } from '../../errors.js';

/** the shared cryptographic quotas, by the key type of the request */
export type CryptoFamily = 'symmetric' | 'rsa' | 'ecc';

const CRYPTO: Record<CryptoFamily, { name: string; rate: number }> = {
  symmetric: { name: 'crypto:symmetric', rate: 5_500 },
  rsa: { name: 'crypto:rsa', rate: 500 },
  ecc: { name: 'crypto:ecc', rate: 300 },
};

/** operations keyport sends that have a quota of their own */
const OPERATION_RATES: Record<string, number> = {
  CancelKeyDeletion: 5,
  CreateAlias: 5,
  CreateKey: 5,
  DeleteAlias: 15,
  DescribeKey: 2000,
  DisableKey: 5,
  EnableKey: 5,
  GetParametersForImport: 0.25,
  GetPublicKey: 2000,
  ImportKeyMaterial: 5,
  ListAliases: 500,
  ListKeys: 500,
  ListResourceTags: 2000,
  ScheduleKeyDeletion: 15,
  TagResource: 10,
  UntagResource: 5,
  UpdateAlias: 5,
  UpdateKeyDescription: 5,
};

export type QuotaMode = 'aws' | 'learn';

/** the `quotas=` connection setting; its default follows the endpoint */
export function quotaMode(value: string | undefined, endpoint: string | undefined): QuotaMode {
  if (value === 'aws' || value === 'learn') return value;
  if (value !== undefined) throw err('USAGE', `awskms: quotas=${value}: use aws (AWS KMS's documented default quotas) or learn`);
  if (endpoint === undefined) return 'aws';
  let host: string;
  try {
    host = new URL(endpoint).hostname;
  } catch {
    return 'learn';
  }
  return /(^|\.)(amazonaws\.com|amazonaws\.com\.cn|api\.aws)$/i.test(host) ? 'aws' : 'learn';
}

export interface Quota {
  /** the limiter's name: the shared quota or the operation */
  name: string;
  /** the documented default (requests per second) when `mode` is aws */
  seed: number | undefined;
}

/** the quota an AWS request draws on: `family` for cryptographic operations */
export function quotaOf(op: string, family: CryptoFamily | undefined, mode: QuotaMode): Quota {
  if (family) {
    const c = CRYPTO[family];
    return { name: c.name, seed: mode === 'aws' ? c.rate : undefined };
  }
  return { name: op, seed: mode === 'aws' ? OPERATION_RATES[op] : undefined };
}
