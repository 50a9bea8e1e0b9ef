/**
 * A KMIP client over TLS (node:tls): mutual TLS with a client certificate, the server checked against
 * the given CA only (no system roots), TLS 1.2 or newer. One connection is opened lazily and reused;
 * requests go through a queue one at a time (a KMIP server answers in order on a connection), each
 * framed by the 8-byte TTLV header length. A call that times out or fails on the wire drops the
 * connection, so a late answer can never be read as the next call's response; the next call connects
 * again. Requests speak KMIP 1.4 (PyKMIP needs 1.4 for the AES-GCM tag fields) and carry one batch item.
 *
 * Every failure is a KeyportError: connection refused/reset -> UNAVAILABLE (retryable), timeouts ->
 * TIMEOUT, TLS trust/certificate failures -> AUTH, KMIP Result Status failures -> the code for their
 * Result Reason (Item Not Found -> NOT_FOUND, Permission Denied -> PERMISSION, ...).
 */
import * as tls from 'node:tls';
import { isIP } from 'node:net';
import { err, KeyportError, type ErrorCode } from '../../errors.js';
import { classifyNetworkError } from '../neterrors.js';
import { Operation, OPERATION_NAME, ResultReason, RESULT_REASON_NAME, ResultStatus, Tag } from './tags.js';
import { decodeTtlv, encodeTtlv, enumeration, find, findAll, integer, need, structure, ttlvFrameLength, type TtlvItem } from './ttlv.js';

export interface KmipClientOptions {
  host: string;
  port: number;
  /** PEM client certificate (chain) and key */
  cert: string | Buffer;
  key: string | Buffer;
  /** PEM CA bundle the server certificate must chain to */
  ca: string | Buffer;
  /** name to check the server certificate against (and send as SNI); default: host */
  serverName?: string;
  /** per call, including connecting; default 30 s */
  timeoutMs?: number;
  /** largest response accepted; default 16 MiB */
  maxResponseBytes?: number;
  protocol?: { major: number; minor: number };
}

/** the operations that are safe to send again when a reused connection turned out to be dead */
const IDEMPOTENT = new Set<number>([
  Operation.Get,
  Operation.GetAttributes,
  Operation.Locate,
  Operation.Query,
  Operation.DiscoverVersions,
  Operation.Encrypt,
  Operation.Decrypt,
  Operation.Sign,
]);

interface Pending {
  resolve: (b: Buffer) => void;
  reject: (e: unknown) => void;
}

class Connection {
  private chunks: Buffer[] = [];
  private have = 0;
  private pending: Pending | undefined;
  dead = false;
  /** true once a full request/response went through: the connection was live at some point */
  used = false;

  constructor(
    readonly sock: tls.TLSSocket,
    private maxBytes: number,
    private label: string,
  ) {
    sock.on('data', (d: Buffer) => this.onData(d));
    sock.on('error', (e) => this.fail(mapSocketError(e, label)));
    sock.on('close', () => this.fail(err('UNAVAILABLE', `KMIP server ${label} closed the connection; retry`)));
    sock.on('end', () => this.fail(err('UNAVAILABLE', `KMIP server ${label} closed the connection; retry`)));
  }

  private onData(d: Buffer) {
    if (!this.pending) {
      // unsolicited bytes: the stream is out of step, never trust it again
      this.fail(err('INVALID_INPUT', `KMIP server ${this.label} sent data nobody asked for`));
      return;
    }
    this.chunks.push(d);
    this.have += d.length;
    if (this.have < 8) return;
    const head = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.chunks = [head];
    if (head.readUIntBE(0, 3) !== Tag.ResponseMessage || head[3] !== 0x01) {
      this.fail(err('INVALID_INPUT', `KMIP server ${this.label} did not answer with a KMIP Response Message`));
      return;
    }
    const total = ttlvFrameLength(head)!;
    if (total > this.maxBytes) {
      this.fail(err('INVALID_INPUT', `KMIP response of ${total} bytes is larger than the ${this.maxBytes}-byte limit`));
      return;
    }
    if (this.have < total) return;
    if (this.have > total) {
      this.fail(err('INVALID_INPUT', `KMIP server ${this.label} sent more than one response`));
      return;
    }
    const p = this.pending;
    this.pending = undefined;
    this.chunks = [];
    this.have = 0;
    this.used = true;
    p.resolve(head);
  }

  fail(e: unknown) {
    if (!this.dead) {
      this.dead = true;
      this.sock.destroy();
    }
    const p = this.pending;
    this.pending = undefined;
    p?.reject(e);
  }

  request(msg: Buffer): Promise<Buffer> {
    if (this.dead) return Promise.reject(err('UNAVAILABLE', `KMIP connection to ${this.label} is closed; retry`));
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.sock.write(msg);
    });
  }
}

const TLS_AUTH_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function mapSocketError(e: unknown, label: string): KeyportError {
  if (e instanceof KeyportError) return e;
  const ex = e as NodeJS.ErrnoException & { reason?: string };
  const code = ex.code ?? '';
  const msg = (ex.message ?? String(e)).split('\n')[0]!;
  if (TLS_AUTH_CODES.has(code)) {
    return err('AUTH', `KMIP server ${label}: its certificate is not trusted (${code}); check ca= and server-name=`);
  }
  if (
    /ALERT_(UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_UNKNOWN|CERTIFICATE_REQUIRED|ACCESS_DENIED)/.test(code) ||
    /ALERT_(CERTIFICATE_REVOKED|CERTIFICATE_EXPIRED|UNSUPPORTED_CERTIFICATE)/.test(code) ||
    /alert (unknown ca|bad certificate|certificate unknown|certificate required|access denied)/i.test(msg)
  ) {
    return err(
      'AUTH',
      `KMIP server ${label} rejected the client certificate (${code || msg}); check cert= and key= and that the server trusts their CA`,
    );
  }
  if (/^ERR_SSL_|^ERR_TLS_/.test(code)) {
    return err('UNAVAILABLE', `KMIP server ${label}: TLS handshake failed (${code}); check that it speaks TLS 1.2+ on this port`, {
      retryable: false,
    });
  }
  const net = classifyNetworkError(e);
  if (net?.code === 'TIMEOUT') return err('TIMEOUT', `KMIP server ${label} did not answer in time; retry`, { cause: e });
  const hint = code === 'ECONNREFUSED' ? 'is it running?' : 'retry';
  return err('UNAVAILABLE', `KMIP server ${label} is unreachable (${code || msg}); ${hint}`, { cause: e });
}

/** A KMIP failure reason -> KeyportError code (op-aware where the reason alone is ambiguous). */
export function reasonToCode(reason: number | undefined, op: number, message: string): ErrorCode {
  switch (reason) {
    case ResultReason.ItemNotFound:
    case ResultReason.ObjectNotFound:
    case ResultReason.ObjectDestroyed:
      return 'NOT_FOUND';
    case ResultReason.AuthenticationNotSuccessful:
      return 'AUTH';
    case ResultReason.PermissionDenied:
    case ResultReason.NotAuthorised:
      // PyKMIP answers Permission Denied for "the key is not Active" and "usage mask lacks the bit" too
      if (/cannot be destroyed/i.test(message)) return 'CONFLICT'; // still Active: revoke it first
      if (/not active|active state|pre-active|state is not/i.test(message)) return 'KEY_DISABLED';
      if (/usage mask|not a symmetric key|not a private key|must be specified/i.test(message)) return 'KEY_USAGE';
      if (/could not locate object/i.test(message)) return 'NOT_FOUND';
      return 'PERMISSION';
    case ResultReason.OperationNotSupported:
    case ResultReason.FeatureNotSupported:
    case ResultReason.KeyFormatTypeNotSupported:
    case ResultReason.KeyCompressionTypeNotSupported:
    case ResultReason.ApplicationNamespaceNotSupported:
    case ResultReason.UnsupportedCryptographicParameters:
    case ResultReason.UnsupportedProtocolVersion:
    case ResultReason.ResponseTooLarge:
      return 'UNSUPPORTED';
    case ResultReason.ObjectAlreadyExists:
      return 'EXISTS';
    case ResultReason.WrongKeyLifecycleState:
    case ResultReason.ObjectArchived:
      return 'KEY_DISABLED';
    case ResultReason.IllegalOperation:
    case ResultReason.Sensitive:
    case ResultReason.NotExtractable:
      return 'KEY_USAGE';
    case ResultReason.UsageLimitExceeded:
    case ResultReason.ServerLimitExceeded:
      return 'THROTTLED';
    case ResultReason.CryptographicFailure:
    case ResultReason.GeneralFailure:
      // an AEAD tag mismatch surfaces as a cryptographic (or, in PyKMIP, a general) failure
      return op === Operation.Decrypt ? 'INVALID_CIPHERTEXT' : 'INTERNAL';
    case ResultReason.InvalidMessage:
    case ResultReason.MissingData:
    case ResultReason.InvalidField:
    case ResultReason.BadCryptographicParameters:
    case ResultReason.IndexOutOfBounds:
    case ResultReason.EncodingOptionError:
    case ResultReason.KeyValueNotPresent:
      return 'INVALID_INPUT';
    default:
      return 'INTERNAL';
  }
}

/** a server's result message made safe for a one-line error */
function oneLineServerText(s: string): string {
  const t = s.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return t.length > 200 ? t.slice(0, 200) + '…' : t;
}

export class KmipClient {
  private conn: Connection | undefined;
  private connecting: Promise<Connection> | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly secure: tls.SecureContext;
  readonly label: string;
  private readonly timeoutMs: number;
  private readonly maxBytes: number;
  private readonly version: { major: number; minor: number };

  constructor(private opts: KmipClientOptions) {
    this.label = `${opts.host}:${opts.port}`;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.maxBytes = opts.maxResponseBytes ?? 16 * 1024 * 1024;
    this.version = opts.protocol ?? { major: 1, minor: 4 };
    try {
      this.secure = tls.createSecureContext({ cert: opts.cert, key: opts.key, ca: opts.ca, minVersion: 'TLSv1.2' });
    } catch (e) {
      const m = (e as Error).message.split('\n')[0];
      throw err('USAGE', `kmip: the client certificate, key or CA cannot be used (${m}); give PEM files with cert=, key= and ca=`);
    }
  }

  private connect(deadline: number): Promise<Connection> {
    const { host, port, serverName } = this.opts;
    return new Promise((resolve, reject) => {
      const checkName = serverName ?? host;
      const sock = tls.connect({
        host,
        port,
        secureContext: this.secure,
        minVersion: 'TLSv1.2',
        rejectUnauthorized: true,
        // SNI must not be an IP address (RFC 6066)
        ...(isIP(checkName) ? {} : { servername: checkName }),
        checkServerIdentity: (_h, cert) => tls.checkServerIdentity(checkName, cert),
      });
      const timer = setTimeout(
        () => {
          sock.destroy();
          reject(err('TIMEOUT', `KMIP server ${this.label} did not complete the TLS handshake in time; retry`));
        },
        Math.max(1, deadline - Date.now()),
      );
      const onError = (e: Error) => {
        clearTimeout(timer);
        sock.destroy();
        reject(mapSocketError(e, this.label));
      };
      sock.once('error', onError);
      sock.once('close', () => {
        clearTimeout(timer);
        reject(
          err(
            'UNAVAILABLE',
            `KMIP server ${this.label} closed the connection during the TLS handshake; check the client certificate and retry`,
          ),
        );
      });
      sock.once('secureConnect', () => {
        clearTimeout(timer);
        sock.removeListener('error', onError);
        sock.removeAllListeners('close');
        sock.setNoDelay(true);
        resolve(new Connection(sock, this.maxBytes, this.label));
      });
    });
  }

  private buildRequest(op: number, payload: TtlvItem[]): Buffer {
    return encodeTtlv(
      structure(Tag.RequestMessage, [
        structure(Tag.RequestHeader, [
          structure(Tag.ProtocolVersion, [
            integer(Tag.ProtocolVersionMajor, this.version.major),
            integer(Tag.ProtocolVersionMinor, this.version.minor),
          ]),
          integer(Tag.MaximumResponseSize, Math.min(this.maxBytes, 0x7fffffff)),
          integer(Tag.BatchCount, 1),
        ]),
        structure(Tag.BatchItem, [enumeration(Tag.Operation, op), structure(Tag.RequestPayload, payload)]),
      ]),
    );
  }

  private parseResponse(op: number, raw: Buffer): TtlvItem {
    const msg = decodeTtlv(raw);
    if (msg.tag !== Tag.ResponseMessage || msg.type !== 'Structure')
      throw err('INVALID_INPUT', 'malformed KMIP message: not a Response Message');
    need(msg, Tag.ResponseHeader, 'Structure', 'Response Header');
    const items = findAll(msg, Tag.BatchItem);
    if (items.length !== 1) throw err('INVALID_INPUT', `malformed KMIP message: ${items.length} batch items for one request`);
    const item = items[0]!;
    const name = OPERATION_NAME[op] ?? `operation ${op}`;
    const rop = find(item, Tag.Operation, 'Enumeration');
    const status = need(item, Tag.ResultStatus, 'Enumeration', 'Result Status').value;
    if (status === ResultStatus.Success) {
      if (rop && rop.value !== op)
        throw err('INVALID_INPUT', `malformed KMIP message: answer to ${OPERATION_NAME[rop.value] ?? rop.value} for a ${name} request`);
      return find(item, Tag.ResponsePayload, 'Structure') ?? structure(Tag.ResponsePayload, []);
    }
    if (status === ResultStatus.OperationPending) {
      throw err('UNSUPPORTED', `KMIP server ${this.label} answered ${name} asynchronously, which keyport does not support`);
    }
    const reason = find(item, Tag.ResultReason, 'Enumeration')?.value;
    const text = oneLineServerText(find(item, Tag.ResultMessage, 'TextString')?.value ?? '');
    const code = reasonToCode(reason, op, text);
    const rname = reason === undefined ? 'failed' : (RESULT_REASON_NAME[reason] ?? `reason 0x${reason.toString(16)}`);
    const hint =
      code === 'AUTH'
        ? ' (check the client certificate)'
        : code === 'INVALID_CIPHERTEXT'
          ? ' (wrong key, or the ciphertext was altered)'
          : '';
    throw err(code, `KMIP ${name} failed: ${rname}${text ? ': ' + text : ''}${hint}`);
  }

  private async getConnection(deadline: number): Promise<Connection> {
    if (this.conn && !this.conn.dead) return this.conn;
    this.conn = undefined;
    if (!this.connecting) {
      this.connecting = this.connect(deadline).finally(() => (this.connecting = undefined));
    }
    this.conn = await this.connecting;
    return this.conn;
  }

  private async once(op: number, msg: Buffer, deadline: number): Promise<Buffer> {
    const conn = await this.getConnection(deadline);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => {
          conn.fail(err('TIMEOUT', `KMIP ${OPERATION_NAME[op] ?? op} got no answer from ${this.label} within ${this.timeoutMs} ms; retry`));
          reject(err('TIMEOUT', `KMIP ${OPERATION_NAME[op] ?? op} got no answer from ${this.label} within ${this.timeoutMs} ms; retry`));
        },
        Math.max(1, deadline - Date.now()),
      );
    });
    try {
      return await Promise.race([conn.request(msg), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Send one operation and return its Response Payload structure. Calls are queued: one request is on
   * the wire at a time.
   */
  call(op: number, payload: TtlvItem[]): Promise<TtlvItem> {
    const run = async () => {
      if (this.closed) throw err('UNAVAILABLE', `KMIP client for ${this.label} is closed`, { retryable: false });
      const msg = this.buildRequest(op, payload);
      const deadline = Date.now() + this.timeoutMs;
      let raw: Buffer;
      const reused = !!this.conn && !this.conn.dead && this.conn.used;
      try {
        raw = await this.once(op, msg, deadline);
      } catch (e) {
        // a kept-alive connection the server dropped meanwhile: one fresh try for idempotent operations
        if (reused && IDEMPOTENT.has(op) && e instanceof KeyportError && e.code === 'UNAVAILABLE' && Date.now() < deadline) {
          raw = await this.once(op, msg, deadline);
        } else throw e;
      }
      return this.parseResponse(op, raw);
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  async close(): Promise<void> {
    this.closed = true;
    const c = this.conn;
    this.conn = undefined;
    if (c && !c.dead) {
      c.dead = true;
      await new Promise<void>((resolve) => {
        c.sock.end(() => resolve());
        setTimeout(resolve, 1000).unref();
      });
      c.sock.destroy();
    }
  }
}
