/**
 * What the AWS KMS driver and the AWS Secrets Manager store share: client configuration from URI
 * params, the per-call deadline, and the mapping of every SDK / network error to a KeyportError.
 * Nothing here imports an AWS SDK: the callers load theirs lazily.
 */
import { err, isKeyportError, type KeyportError, type ErrorCode } from '../../errors.js';
import { classifyNetworkError } from '../neterrors.js';

export interface AwsParams {
  region: string;
  endpoint?: string;
  profile?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  timeoutMs: number;
}

/**
 * URI params: region, endpoint, profile, access-key-id + secret-access-key (+ session-token),
 * timeout-ms (per call, default 10000). Without explicit keys the SDK's default chain is used.
 */
export function awsParams(params: Record<string, string>, what: string): AwsParams {
  const endpoint = params['endpoint'] || undefined;
  if (endpoint !== undefined && !/^https?:\/\/[^\s]+$/.test(endpoint)) {
    throw err('USAGE', `${what}: endpoint '${endpoint}' is not an http(s) URL`);
  }
  const region = params['region'] || process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || (endpoint ? 'us-east-1' : '');
  if (!region) throw err('USAGE', `${what}: no region: add region=R to the URI or set AWS_REGION`);
  const akid = params['access-key-id'];
  const secret = params['secret-access-key'];
  if ((akid === undefined) !== (secret === undefined)) {
    throw err('USAGE', `${what}: give both access-key-id and secret-access-key, or neither (then the default credential chain is used)`);
  }
  let timeoutMs = 10_000;
  if (params['timeout-ms'] !== undefined) {
    timeoutMs = Number(params['timeout-ms']);
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 600_000) {
      throw err('USAGE', `${what}: timeout-ms must be an integer between 1 and 600000`);
    }
  }
  return {
    region,
    endpoint,
    profile: params['profile'] || undefined,
    credentials:
      akid !== undefined && secret !== undefined
        ? { accessKeyId: akid, secretAccessKey: secret, ...(params['session-token'] ? { sessionToken: params['session-token'] } : {}) }
        : undefined,
    timeoutMs,
  };
}

/**
 * SDK client config: one attempt (keyport retries in its own wrapper), connection and request
 * timeouts bounded by the per-call deadline. throwOnRequestTimeout: without it the SDK's request
 * timeout only logs a warning (to the console) and a request to a KMS that never answers waits for
 * the service's 300 s socket timeout.
 */
export function clientConfig(p: AwsParams): Record<string, unknown> {
  return {
    region: p.region,
    ...(p.endpoint ? { endpoint: p.endpoint } : {}),
    ...(p.profile ? { profile: p.profile } : {}),
    ...(p.credentials ? { credentials: p.credentials } : {}),
    maxAttempts: 1,
    // the resolved middleware stack kept per command class (the SDK resolves it per request
    // otherwise); it is used for requests sent without per-request options (no abort signal)
    cacheMiddleware: true,
    requestHandler: { connectionTimeout: Math.min(p.timeoutMs, 5_000), requestTimeout: p.timeoutMs, throwOnRequestTimeout: true },
  };
}

interface RawResponse {
  statusCode?: number;
  headers?: Record<string, string | undefined>;
  body?: unknown;
}
type Stack = {
  add(
    mw: (next: (a: unknown) => Promise<{ response?: unknown }>) => (a: unknown) => Promise<{ response?: unknown }>,
    o: Record<string, string>,
  ): void;
};

const XML_ENTITIES: Record<string, string> = { '&lt;': '<', '&gt;': '>', '&quot;': '"', '&apos;': "'", '&amp;': '&' };

/**
 * A JSON-protocol service (KMS, Secrets Manager) answers errors as JSON with `__type` (or an
 * X-Amzn-ErrorType header). Some endpoints answer an XML `<ErrorResponse>…<Code>X</Code>` body
 * instead and no error type header: moto with IAM authentication on answers InvalidClientTokenId,
 * SignatureDoesNotMatch and AccessDenied that way, all with HTTP 403, and the SDK's JSON parser then
 * throws a SyntaxError that names nothing but the status (so bad credentials looked like PERMISSION).
 * This deserialize-step middleware reads such a (non-JSON, error-status) body and throws an error
 * named by its Code, which mapAwsError maps like any other; a body without a Code is handed on to
 * the SDK unchanged. Real AWS KMS answers JSON, so there it never engages.
 */
export function decodeXmlErrors(stack: unknown): void {
  (stack as Stack).add(
    (next) => async (args) => {
      const out = await next(args);
      const res = out.response as RawResponse | undefined;
      const status = res?.statusCode ?? 0;
      if (!res || status < 300) return out;
      const h = Object.fromEntries(Object.entries(res.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v ?? '']));
      if (h['x-amzn-errortype'] || /json/i.test(h['content-type'] ?? '')) return out;
      const body = await readBody(res.body);
      if (body === undefined) return out;
      res.body = body; // read: the SDK's own deserializer takes a Uint8Array as it is
      if (body.length > 64 * 1024) return out; // nobody's error document
      const text = Buffer.from(body).toString('utf8');
      const code = /<Code>\s*([A-Za-z0-9.:#_-]{1,100})\s*<\/Code>/.exec(text)?.[1];
      if (!code) return out;
      const message = (/<Message>([^<]{0,1000})<\/Message>/.exec(text)?.[1] ?? code).replace(
        /&(lt|gt|quot|apos|amp);/g,
        (m) => XML_ENTITIES[m]!,
      );
      throw Object.assign(new Error(message), {
        name: code,
        $fault: status >= 500 ? 'server' : 'client',
        $metadata: { httpStatusCode: status, ...(h['x-amzn-requestid'] ? { requestId: h['x-amzn-requestid'] } : {}) },
      });
    },
    { step: 'deserialize', priority: 'low', name: 'keyportXmlErrorMiddleware' },
  );
}

/** the whole body as bytes (the SDK would collect it too); undefined when it is not a readable stream */
async function readBody(body: unknown): Promise<Uint8Array | undefined> {
  if (body instanceof Uint8Array) return body;
  if (typeof body === 'string') return Buffer.from(body);
  if (!body || typeof (body as AsyncIterable<unknown>)[Symbol.asyncIterator] !== 'function') return undefined;
  const chunks: Buffer[] = [];
  for await (const c of body as AsyncIterable<Uint8Array | string>)
    chunks.push(typeof c === 'string' ? Buffer.from(c) : Buffer.from(c.buffer, c.byteOffset, c.byteLength));
  return Buffer.concat(chunks);
}

/** send options with an abort deadline for one call */
export function callOptions(p: AwsParams): { abortSignal: AbortSignal } {
  return { abortSignal: AbortSignal.timeout(p.timeoutMs) };
}

const NET_TIMEOUT = new Set(['TimeoutError', 'RequestTimeout', 'RequestTimeoutException']);

const BY_NAME: Record<string, ErrorCode> = {
  NotFoundException: 'NOT_FOUND',
  ResourceNotFoundException: 'NOT_FOUND',
  DisabledException: 'KEY_DISABLED',
  KMSInvalidStateException: 'KEY_DISABLED',
  KeyUnavailableException: 'UNAVAILABLE',
  AccessDeniedException: 'PERMISSION',
  AccessDenied: 'PERMISSION',
  UnrecognizedClientException: 'AUTH',
  InvalidSignatureException: 'AUTH',
  SignatureDoesNotMatch: 'AUTH',
  ExpiredTokenException: 'AUTH',
  ExpiredToken: 'AUTH',
  InvalidClientTokenId: 'AUTH',
  IncompleteSignature: 'AUTH',
  IncompleteSignatureException: 'AUTH',
  MissingAuthenticationToken: 'AUTH',
  MissingAuthenticationTokenException: 'AUTH',
  CredentialsProviderError: 'AUTH',
  ThrottlingException: 'THROTTLED',
  Throttling: 'THROTTLED',
  TooManyRequestsException: 'THROTTLED',
  RequestLimitExceeded: 'THROTTLED',
  LimitExceededException: 'THROTTLED',
  InvalidCiphertextException: 'INVALID_CIPHERTEXT',
  IncorrectKeyException: 'INVALID_CIPHERTEXT',
  InvalidKeyUsageException: 'KEY_USAGE',
  InvalidGrantTokenException: 'PERMISSION',
  AlreadyExistsException: 'EXISTS',
  ResourceExistsException: 'EXISTS',
  UnsupportedOperationException: 'UNSUPPORTED',
  InvalidImportTokenException: 'INVALID_INPUT',
  IncorrectKeyMaterialException: 'INVALID_INPUT',
  ExpiredImportTokenException: 'INVALID_INPUT',
  ValidationException: 'INVALID_INPUT',
  InvalidParameterException: 'INVALID_INPUT',
  InvalidParameterValueException: 'INVALID_INPUT',
  InvalidRequestException: 'INVALID_INPUT',
  InvalidArnException: 'INVALID_INPUT',
  InvalidAliasNameException: 'INVALID_INPUT',
  MalformedPolicyDocumentException: 'INVALID_INPUT',
  DecryptionFailure: 'PERMISSION',
  EncryptionFailure: 'PERMISSION',
  DependencyTimeoutException: 'TIMEOUT',
  KMSInternalException: 'UNAVAILABLE',
  InternalServiceError: 'UNAVAILABLE',
  InternalFailure: 'UNAVAILABLE',
  ServiceUnavailable: 'UNAVAILABLE',
  ServiceUnavailableException: 'UNAVAILABLE',
};

const HINT: Partial<Record<ErrorCode, string>> = {
  AUTH: 'check the access key / profile / session token',
  PERMISSION: 'check the IAM / key policy of the caller',
  UNAVAILABLE: 'check the endpoint and network, then retry',
  TIMEOUT: 'retry, or raise timeout-ms',
  THROTTLED: 'retry later with back-off',
  KEY_DISABLED: 'enable the key (or cancel its deletion) first',
  KEY_USAGE: 'use a key created for this operation',
};

/** one line of at most ~200 characters, no stack */
function clip(s: string): string {
  const one = s.replace(/\s*\n\s*/g, ' ').trim();
  return one.length > 200 ? `${one.slice(0, 197)}...` : one;
}

/** Map any error from an AWS SDK call to a KeyportError. `what` names the operation (no secrets). */
export function mapAwsError(e: unknown, what: string, service: string): KeyportError {
  if (isKeyportError(e)) return e;
  const o = (e ?? {}) as { name?: string; message?: string; $metadata?: { httpStatusCode?: number }; $fault?: string };
  const name = o.name ?? '';
  const msg = clip(o.message ?? String(e));
  const net = classifyNetworkError(e);
  const netCode = net?.errno;
  let code: ErrorCode | undefined;
  if (name === 'AbortError' || name === 'TimeoutError' || NET_TIMEOUT.has(name)) code = 'TIMEOUT';
  else if (net) code = net.code;
  else if (BY_NAME[name]) code = BY_NAME[name];
  else if (/usage|KeyUsage/i.test(msg) && /key/i.test(msg) && name.includes('Validation')) code = 'KEY_USAGE';
  else if (/could not load credentials|credential/i.test(msg) && name.includes('Credential')) code = 'AUTH';
  else if (o.$metadata?.httpStatusCode === 401) code = 'AUTH';
  else if (o.$metadata?.httpStatusCode === 403) code = 'PERMISSION';
  else if (o.$metadata?.httpStatusCode === 404) code = 'UNSUPPORTED';
  else if (o.$metadata?.httpStatusCode === 429) code = 'THROTTLED';
  else if ((o.$metadata?.httpStatusCode ?? 0) >= 500 || o.$fault === 'server') code = 'UNAVAILABLE';
  else if (/socket hang up|ECONNREFUSED|connect/i.test(msg)) code = 'UNAVAILABLE';
  else code = o.$fault === 'client' ? 'INVALID_INPUT' : 'INTERNAL';
  // KMS ValidationException for the wrong key usage (AWS says InvalidKeyUsageException; moto says ValidationException)
  if (code === 'INVALID_INPUT' && /usage/i.test(msg) && /SIGN_VERIFY|ENCRYPT_DECRYPT|key usage/i.test(msg)) code = 'KEY_USAGE';
  const detail =
    code === 'TIMEOUT' && (name === 'AbortError' || name === 'TimeoutError')
      ? 'no answer in time'
      : `${name || netCode || 'error'}: ${msg}`;
  const hint = HINT[code];
  return err(code, `${service} ${what} failed (${detail})${hint ? `: ${hint}` : ''}`, { cause: e });
}
