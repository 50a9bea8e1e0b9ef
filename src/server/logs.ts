/**
 * The audit and error logs: KES's JSON events, written to stdout/stderr when enabled and streamed to
 * subscribers of /v1/log/audit and /v1/log/error. An audit record names the path, identity, status and
 * latency — never a body, so no key bytes, plaintexts or ciphertexts can reach it.
 */
import type { Writable } from 'node:stream';

export interface AuditEvent {
  time: string;
  request: { ip?: string; path: string; identity?: string };
  response: { code: number; time: number };
}

type Sink = (line: string) => void;

export class EventLog<T> {
  private subs = new Set<Sink>();
  constructor(private out?: Writable) {}

  subscribe(fn: Sink): () => void {
    this.subs.add(fn);
    return () => this.subs.delete(fn);
  }

  get subscribers(): number {
    return this.subs.size;
  }

  emit(ev: T): void {
    if (!this.out && this.subs.size === 0) return;
    const line = JSON.stringify(ev) + '\n';
    this.out?.write(line);
    for (const s of this.subs) s(line);
  }
}

/** what one /v1/log/* subscriber may have waiting to be sent before lines are dropped */
export const SUBSCRIBER_BUFFER = 1 << 20;

/**
 * Stream a log to a subscriber's response with a bounded buffer: while more than `limit` bytes wait
 * to be sent (a slow or stalled reader), new lines are dropped and counted, never queued.
 */
export function streamTo<T>(log: EventLog<T>, out: Writable, onDrop: () => void, limit = SUBSCRIBER_BUFFER): () => void {
  return log.subscribe((line) => {
    if (out.writableLength + line.length > limit) onDrop();
    else out.write(line);
  });
}

/** one request, for the request log (`log.requests`): no body, no query, no key material, no API key */
export interface RequestRecord {
  time: string;
  ip?: string | undefined;
  /** the client's identity (hex SHA-256 of its public key), absent for an anonymous request */
  identity?: string;
  method: string;
  /** the path, cut at 200 characters */
  path: string;
  status: number;
  ms: number;
}

/**
 * The request log's line: text (time, address, the identity's first 16 hex digits, method, quoted
 * path, status, duration) or, with `keyport server --json`, one JSON object with `event: "request"`.
 */
export function requestLine(r: RequestRecord, format: 'text' | 'json'): string {
  if (format === 'json')
    return JSON.stringify({ time: r.time, event: 'request', ip: r.ip ?? null, identity: r.identity ?? null, ...pick(r) }) + '\n';
  return `${r.time} ${r.ip ?? '-'} ${r.identity ? r.identity.slice(0, 16) : '-'} ${r.method} ${JSON.stringify(r.path)} ${r.status} ${r.ms.toFixed(1)}ms\n`;
}
const pick = (r: RequestRecord) => ({ method: r.method, path: r.path, status: r.status, ms: Math.round(r.ms * 10) / 10 });

export class Logs {
  readonly audit: EventLog<AuditEvent>;
  readonly error: EventLog<{ message: string; time: string }>;
  private readonly requests: boolean;
  private readonly format: 'text' | 'json';
  constructor(opts: { audit: boolean; error: boolean; requests?: boolean }, format: 'text' | 'json' = 'text') {
    this.audit = new EventLog(opts.audit ? process.stdout : undefined);
    this.error = new EventLog(opts.error ? process.stderr : undefined);
    this.requests = !!opts.requests;
    this.format = format;
  }
  /** one line per request on stderr when `log.requests` is on */
  logRequest(r: RequestRecord): void {
    if (!this.requests) return;
    process.stderr.write(requestLine({ ...r, path: r.path.length > 200 ? r.path.slice(0, 200) + '…' : r.path }, this.format));
  }
  logError(message: string): void {
    this.error.emit({ message, time: new Date().toISOString() });
  }
}
