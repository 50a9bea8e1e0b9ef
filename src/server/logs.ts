/**
 * The audit and error logs: KES's JSON events, written to stdout/stderr when enabled and streamed to
 * subscribers of /v1/log/audit and /v1/log/error. An audit record names the path, identity, status and
 * latency — never a body, so no key bytes, plaintexts or ciphertexts can reach it.
 *
 * Every destination is bounded: a subscriber, and stdout/stderr themselves. Node writes to a pipe or socket
 * asynchronously and queues whatever the reader has not taken, so a server whose stdout is a pipe nobody
 * reads (`keyport server | some-tool` that stopped, a full log shipper) would queue audit lines in memory
 * for ever. While more than the limit waits, new lines are dropped and counted (kes_log_*_dropped_events),
 * never queued and never waited for. (A terminal or a file is written synchronously by node: nothing queues.)
 */
import type { Writable } from 'node:stream';

export interface AuditEvent {
  time: string;
  request: { ip?: string; path: string; identity?: string };
  response: { code: number; time: number };
}

type Sink = (line: string) => void;

/** what one destination (a /v1/log/* subscriber, stdout, stderr) may have waiting to be sent before lines are dropped */
export const SUBSCRIBER_BUFFER = 1 << 20;
export const OUTPUT_BUFFER = 1 << 20;

/**
 * Write `line` to `out` unless more than `limit` bytes already wait there; false (and `onDrop`) when dropped.
 * `out.write` is looked up at each call, so a stream whose write is replaced later is still the one written.
 */
export function boundedWrite(out: Writable, line: string, limit: number, onDrop: () => void): boolean {
  if (out.writableLength + line.length > limit || out.destroyed) {
    onDrop();
    return false;
  }
  out.write(line);
  return true;
}

const quieted = new WeakSet<Writable>();

/** a process output (stdout, stderr) shared by the logs: bounded, and a failing stream (EPIPE) never throws */
export class BoundedOutput {
  /** lines dropped because the reader was too slow (or gone) */
  dropped = 0;
  constructor(
    readonly out: Writable,
    private onDrop: () => void = () => undefined,
    private limit = OUTPUT_BUFFER,
  ) {
    // a reader that went away (EPIPE) must not crash the server: later lines are dropped (out.destroyed)
    if (!quieted.has(out)) {
      quieted.add(out);
      out.on('error', () => undefined);
    }
  }
  write(line: string): boolean {
    return boundedWrite(this.out, line, this.limit, () => {
      this.dropped++;
      this.onDrop();
    });
  }
}

export class EventLog<T> {
  private subs = new Set<Sink>();
  constructor(private out?: BoundedOutput) {}

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

/**
 * Stream a log to a subscriber's response with a bounded buffer: while more than `limit` bytes wait
 * to be sent (a slow or stalled reader), new lines are dropped and counted, never queued.
 */
export function streamTo<T>(log: EventLog<T>, out: Writable, onDrop: () => void, limit = SUBSCRIBER_BUFFER): () => void {
  return log.subscribe((line) => void boundedWrite(out, line, limit, onDrop));
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

export interface LogOutputs {
  /** where the audit log goes when enabled (default: process.stdout) */
  stdout?: Writable;
  /** where the error log and the request lines go (default: process.stderr) */
  stderr?: Writable;
  /** a line not written to stdout (audit) or stderr (error log, request lines) because its reader was too slow */
  onDrop?: (which: 'audit' | 'error') => void;
}

export class Logs {
  readonly audit: EventLog<AuditEvent>;
  readonly error: EventLog<{ message: string; time: string }>;
  readonly stdout: BoundedOutput;
  readonly stderr: BoundedOutput;
  private readonly requests: boolean;
  private readonly format: 'text' | 'json';
  constructor(opts: { audit: boolean; error: boolean; requests?: boolean }, format: 'text' | 'json' = 'text', outputs: LogOutputs = {}) {
    this.stdout = new BoundedOutput(outputs.stdout ?? process.stdout, () => outputs.onDrop?.('audit'));
    this.stderr = new BoundedOutput(outputs.stderr ?? process.stderr, () => outputs.onDrop?.('error'));
    this.audit = new EventLog(opts.audit ? this.stdout : undefined);
    this.error = new EventLog(opts.error ? this.stderr : undefined);
    this.requests = !!opts.requests;
    this.format = format;
  }
  /** one line per request on stderr when `log.requests` is on (bounded like the error log) */
  logRequest(r: RequestRecord): void {
    if (!this.requests) return;
    this.stderr.write(requestLine({ ...r, path: r.path.length > 200 ? r.path.slice(0, 200) + '…' : r.path }, this.format));
  }
  logError(message: string): void {
    this.error.emit({ message, time: new Date().toISOString() });
  }
}
