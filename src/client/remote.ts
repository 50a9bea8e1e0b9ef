/**
 * A Keyring that talks to a keyport or KES server (the KES v1 API), so `keyport key … --server URL`
 * works like the local store. Authentication as the KES CLI does it: KES_API_KEY (turned into a
 * self-signed client certificate) or KES_CLIENT_CERT / KES_CLIENT_KEY; KEYPORT_* names work too.
 */
import { Agent, request, type AgentOptions } from 'node:https';
import type { ClientRequestArgs } from 'node:http';
import type { Duplex } from 'node:stream';
import { readFileSync } from 'node:fs';
import { err, isKeyportError, type ErrorCode } from '../errors.js';
import { type CallOptions, cancelled, checkCancelled } from '../cancel.js';
import { parseKeyMaterial, toPem } from '../crypto/keys.js';
import { isKeyType, type KeyType } from '../crypto/keytypes.js';
import { apiKeyCertificate, parseApiKey, type ApiKey } from '../server/identity.js';
import { certToPem } from '../crypto/x509.js';
import { compilePattern } from '../keys/names.js';
import type { CreateOptions, ExportedKey, KeyInfo, Keyring, RotateOptions, SignOptions, VersionInfo } from '../keys/types.js';
import { isHighS } from '../crypto/ecdsa-encoding.js';

export interface RemoteOptions {
  apiKey?: string;
  cert?: string;
  key?: string;
  ca?: string;
  insecure?: boolean;
}

const env = (...names: string[]) => names.map((n) => process.env[n]).find((v) => v !== undefined && v !== '');

const CODES: ReadonlySet<string> = new Set<ErrorCode>([
  'USAGE',
  'INVALID_NAME',
  'INVALID_INPUT',
  'INVALID_CIPHERTEXT',
  'NOT_FOUND',
  'EXISTS',
  'UNSUPPORTED',
  'KEY_USAGE',
  'KEY_DISABLED',
  'VERIFY_FAILED',
  'PERMISSION',
  'AUTH',
  'UNAVAILABLE',
  'TIMEOUT',
  'THROTTLED',
  'CONFLICT',
  'INTERNAL',
]);

/**
 * The error for a refusal: a keyport server says its stable `code` beside KES's `message`, and that
 * code is kept (a disabled key is KEY_DISABLED, not PERMISSION); a KES server's status and message are
 * mapped as well as they can be.
 */
function statusError(status: number, message: string, serverCode?: unknown): never {
  if (typeof serverCode === 'string' && CODES.has(serverCode)) {
    const code = serverCode as ErrorCode;
    throw err(code, `server: ${message || `HTTP ${status}`}`, code === 'CONFLICT' ? { retryable: false } : undefined);
  }
  let code: ErrorCode = 'INTERNAL';
  if (status === 404) code = 'NOT_FOUND';
  else if (status === 400)
    code = /already exists/.test(message)
      ? 'EXISTS'
      : /decryption failed|not authentic/.test(message)
        ? 'INVALID_CIPHERTEXT'
        : /key name|invalid key name/.test(message)
          ? 'INVALID_NAME'
          : 'INVALID_INPUT';
  else if (status === 401) code = 'AUTH';
  else if (status === 403) code = 'PERMISSION';
  else if (status === 405 || status === 406 || status === 413) code = 'INVALID_INPUT';
  else if (status === 409) code = 'CONFLICT';
  else if (status === 501) code = 'UNSUPPORTED';
  else if (status === 502) code = 'UNAVAILABLE';
  else if (status === 503) code = 'THROTTLED';
  else if (status === 504) code = 'TIMEOUT';
  throw err(code, `server: ${message || `HTTP ${status}`}`, code === 'CONFLICT' ? { retryable: false } : undefined);
}

/**
 * An https.Agent that presents the client certificate a KES API key stands for, as the KES client
 * does. The certificate is made asynchronously (WebCrypto), so the agent's first connection waits for
 * it (node's documented asynchronous createConnection) and the agent itself is built synchronously.
 */
export class ApiKeyAgent extends Agent {
  private creds: Promise<{ cert: string; key: string }>;
  constructor(apiKey: ApiKey, opts: AgentOptions = {}) {
    super(opts);
    this.creds = apiKeyCertificate(apiKey).then((c) => ({
      cert: certToPem(c.cert),
      key: toPem(c.key.export({ type: 'pkcs8', format: 'der' }) as Buffer, 'PRIVATE KEY'),
    }));
    this.creds.catch(() => undefined);
  }
  override createConnection(options: ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    this.creds.then(
      (c) => {
        let sock: Duplex | null | undefined;
        try {
          sock = super.createConnection({ ...options, ...c } as ClientRequestArgs);
        } catch (e) {
          return callback?.(e as Error, undefined as never);
        }
        if (sock) callback?.(null, sock);
      },
      (e: Error) => callback?.(e, undefined as never),
    );
    return undefined;
  }
}

export class RemoteKeyring implements Keyring {
  private agent: Agent;
  private base: URL;
  constructor(
    readonly uri: string,
    o: RemoteOptions = {},
  ) {
    try {
      this.base = new URL(uri.includes('://') ? uri : `https://${uri}`);
    } catch {
      throw err('USAGE', `'${uri}' is not a server URL: use https://HOST:PORT`);
    }
    if (this.base.protocol !== 'https:') throw err('USAGE', 'the server URL must use https://');
    const apiKey = o.apiKey ?? env('KEYPORT_API_KEY', 'KES_API_KEY');
    const certFile = o.cert ?? env('KEYPORT_CLIENT_CERT', 'KES_CLIENT_CERT');
    const keyFile = o.key ?? env('KEYPORT_CLIENT_KEY', 'KES_CLIENT_KEY');
    const caFile = o.ca ?? env('KEYPORT_CA', 'KES_CA');
    const insecure = o.insecure ?? ['1', 'true', 'on'].includes(env('KEYPORT_INSECURE', 'KES_INSECURE') ?? '');
    let cert: string | Buffer | undefined;
    let key: string | Buffer | undefined;
    const read = (p: string, what: string) => {
      try {
        return readFileSync(p);
      } catch (e) {
        throw err('USAGE', `cannot read ${what} ${p}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
      }
    };
    if (certFile || keyFile) {
      if (!certFile || !keyFile) throw err('USAGE', 'KES_CLIENT_CERT and KES_CLIENT_KEY go together');
      cert = read(certFile, 'client certificate');
      key = read(keyFile, 'client key');
    }
    const opts: AgentOptions = {
      keepAlive: true,
      maxSockets: 64,
      cert,
      key,
      ca: caFile ? read(caFile, 'CA certificate') : undefined,
      rejectUnauthorized: !insecure,
      minVersion: 'TLSv1.2',
    };
    this.agent = apiKey && !cert ? new ApiKeyAgent(parseApiKey(apiKey), opts) : new Agent(opts);
  }

  /** one request; the caller's signal aborts it (TIMEOUT), whatever stage it is in */
  private call(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<any> {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const what = `${method} ${path.split('/').slice(0, 4).join('/')} to ${this.base.host}`;
    return new Promise((resolve, reject) => {
      checkCancelled(what, signal);
      const req = request(
        new URL(path, this.base),
        {
          method,
          agent: this.agent,
          headers: data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {},
          timeout: 30_000,
          ...(signal ? { signal } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json: any;
            try {
              json = text ? JSON.parse(text) : undefined;
            } catch {
              json = undefined;
            }
            if ((res.statusCode ?? 500) >= 300) {
              try {
                statusError(
                  res.statusCode ?? 500,
                  typeof json?.message === 'string'
                    ? json.message
                    : typeof json?.error === 'string'
                      ? json.error
                      : text.slice(0, 200).trim(),
                  json?.code,
                );
              } catch (e) {
                reject(e);
              }
              return;
            }
            resolve(json);
          });
          res.on('error', (e) => reject(signal?.aborted ? cancelled(what, signal) : e));
        },
      );
      req.on('timeout', () => req.destroy(err('TIMEOUT', `server ${this.base.host} did not answer in time`)));
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (signal?.aborted) return reject(cancelled(what, signal));
        if (isKeyportError(e)) return reject(e);
        if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(e.code ?? ''))
          return reject(
            err('AUTH', `server certificate of ${this.base.host} is not trusted (${e.code}): pass --insecure (-k) or set KEYPORT_CA`),
          );
        reject(err('UNAVAILABLE', `cannot reach server ${this.base.host}: ${e.code ?? e.message}`));
      });
      req.end(data);
    });
  }

  private static enc(name: string) {
    return encodeURIComponent(name);
  }

  /** a request on one key's route, `/v1/key/OP/NAME[QUERY]` */
  private key(method: string, op: string, name: string, body?: unknown, signal?: AbortSignal, query = ''): Promise<any> {
    return this.call(method, `/v1/key/${op}/${RemoteKeyring.enc(name)}${query}`, body, signal);
  }

  private static info(j: any): KeyInfo {
    const type: KeyType = isKeyType(j?.type) ? j.type : 'aes256';
    return {
      name: j.name,
      type,
      purpose: j.purpose ?? (type === 'aes256' ? 'symmetric' : 'signing'),
      usage: j.usage ?? ['any'],
      state: j.state ?? 'active',
      createdAt: j.created_at ?? '',
      createdBy: j.created_by ?? '',
      fingerprint: j.fingerprint ?? '',
      version: j.version ?? 1,
      versions: j.versions ?? 1,
      protection: j.protection ?? 'clear',
      ...(j.public_key ? { publicKey: j.public_key } : {}),
    };
  }

  async create(name: string, o: CreateOptions = {}): Promise<KeyInfo> {
    const body =
      o.type && o.type !== 'aes256'
        ? { type: o.type, ...(o.purpose ? { purpose: o.purpose } : {}), ...(o.usage ? { usage: o.usage } : {}) }
        : o.usage
          ? { usage: o.usage }
          : undefined;
    await this.key('PUT', 'create', name, body, o.signal);
    return this.describe(name, o);
  }
  async import(name: string, material: Buffer, o: CreateOptions = {}): Promise<KeyInfo> {
    const m = parseKeyMaterial(material, o.type);
    const body =
      m.type === 'aes256'
        ? { key: m.secret.subarray(0, 32).toString('base64'), cipher: 'AES256' }
        : { key: m.secret.toString('base64'), type: m.type };
    await this.key('PUT', 'import', name, body, o.signal);
    return this.describe(name, o);
  }
  async describe(name: string, o: CallOptions = {}): Promise<KeyInfo> {
    return RemoteKeyring.info(await this.key('GET', 'describe', name, undefined, o.signal));
  }
  /**
   * `pattern` is a keyport glob; the KES API lists by prefix (KES v0.24: a name prefix, '-' never last), so the
   * server is asked for the glob's literal prefix and the glob is applied here. A page may come back short.
   */
  async list(pattern = '*', o: { after?: string; limit?: number } & CallOptions = {}): Promise<{ names: string[]; next?: string }> {
    const glob = compilePattern(pattern);
    let prefix = glob.prefix.replace(/-+$/, '');
    if (prefix === '_') prefix = '';
    const q = new URLSearchParams();
    if (o.after) q.set('after', o.after);
    if (o.limit) q.set('limit', String(o.limit));
    const j = await this.call(
      'GET',
      `/v1/key/list/${prefix ? encodeURIComponent(prefix) : '*'}${q.size ? `?${q}` : ''}`,
      undefined,
      o.signal,
    );
    const names = ((j?.names ?? []) as string[]).filter((n) => glob.test(n));
    return { names, ...(j?.continue_at ? { next: j.continue_at } : {}) };
  }
  async delete(name: string, o: CallOptions = {}): Promise<void> {
    await this.key('DELETE', 'delete', name, undefined, o.signal);
  }
  async versions(name: string, o: CallOptions = {}): Promise<VersionInfo[]> {
    const j = (await this.key('GET', 'versions', name, undefined, o.signal)) as { versions?: any[] } | undefined;
    if (!Array.isArray(j?.versions))
      throw err('UNSUPPORTED', `the server does not list key versions (a KES server has none: one version per key)`);
    return j.versions.map((v) => ({
      version: Number(v.version),
      createdAt: String(v.created_at ?? ''),
      fingerprint: String(v.fingerprint ?? ''),
      protection: v.protection === 'sealed' || v.protection === 'external' ? v.protection : 'clear',
      ...(typeof v.public_key === 'string' ? { publicKey: v.public_key } : {}),
      current: v.current === true,
    }));
  }

  async rotate(name: string, opts: RotateOptions = {}): Promise<KeyInfo> {
    if (opts.toKeyId !== undefined)
      throw err('UNSUPPORTED', '--to-key-id works on a KMS store, not through a server: run it with --store on the KMS the key lives in');
    return RemoteKeyring.info(await this.key('PUT', 'rotate', name, undefined, opts.signal));
  }
  async register(): Promise<KeyInfo> {
    throw err('UNSUPPORTED', 'register works on a KMS store, not through a server: run it with --store on the KMS the key lives in');
  }
  async export(): Promise<ExportedKey[]> {
    throw err('UNSUPPORTED', 'a server never exports key material: use keyport migrate on the store itself');
  }
  async publicKey(name: string, version?: number, o: CallOptions = {}): Promise<Buffer> {
    const j = await this.key('GET', 'public', name, undefined, o.signal, version ? `?version=${version}` : '');
    return Buffer.from(j.public_key, 'base64');
  }
  async sign(name: string, data: Buffer, o: SignOptions = {}): Promise<Buffer> {
    const j = await this.key(
      'PUT',
      'sign',
      name,
      {
        message: data.toString('base64'),
        ...(o.format ? { format: o.format } : {}),
        ...(o.usage ? { usage: o.usage } : {}),
      },
      o.signal,
    );
    return Buffer.from(j.signature, 'base64');
  }
  async verify(name: string, data: Buffer, signature: Buffer, o: SignOptions = {}): Promise<boolean> {
    const j = await this.key(
      'PUT',
      'verify',
      name,
      {
        message: data.toString('base64'),
        signature: signature.toString('base64'),
        ...(o.format ? { format: o.format } : {}),
      },
      o.signal,
    );
    // strict (no high-S ECDSA signature) is checked here: the server answers for the curve's equation
    if (j.valid === true && o.strict && isHighS((await this.describe(name, o)).type, signature, o.format ?? 'der')) return false;
    return j.valid === true;
  }
  async encrypt(name: string, plaintext: Buffer, context?: Buffer, o: CallOptions = {}): Promise<Buffer> {
    const j = await this.key(
      'PUT',
      'encrypt',
      name,
      {
        plaintext: plaintext.toString('base64'),
        ...(context ? { context: context.toString('base64') } : {}),
      },
      o.signal,
    );
    return Buffer.from(j.ciphertext, 'base64');
  }
  async decrypt(name: string, ciphertext: Buffer, context?: Buffer, o: CallOptions = {}): Promise<Buffer> {
    const j = await this.key(
      'PUT',
      'decrypt',
      name,
      {
        ciphertext: ciphertext.toString('base64'),
        ...(context ? { context: context.toString('base64') } : {}),
      },
      o.signal,
    );
    return Buffer.from(j.plaintext, 'base64');
  }
  async generate(name: string, context?: Buffer, o: CallOptions = {}): Promise<{ plaintext: Buffer; ciphertext: Buffer }> {
    const j = await this.key('PUT', 'generate', name, context ? { context: context.toString('base64') } : {}, o.signal);
    return { plaintext: Buffer.from(j.plaintext, 'base64'), ciphertext: Buffer.from(j.ciphertext, 'base64') };
  }
  async hmac(name: string, message: Buffer, o: CallOptions = {}): Promise<Buffer> {
    const j = await this.key('PUT', 'hmac', name, { message: message.toString('base64') }, o.signal);
    return Buffer.from(j.hmac, 'base64');
  }
  async close(): Promise<void> {
    this.agent.destroy();
  }
}

export async function openRemoteKeyring(url: string, o: RemoteOptions = {}): Promise<Keyring> {
  return new RemoteKeyring(url, o);
}
