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

export class Logs {
  readonly audit: EventLog<AuditEvent>;
  readonly error: EventLog<{ message: string; time: string }>;
  constructor(opts: { audit: boolean; error: boolean }) {
    this.audit = new EventLog(opts.audit ? process.stdout : undefined);
    this.error = new EventLog(opts.error ? process.stderr : undefined);
  }
  logError(message: string): void {
    this.error.emit({ message, time: new Date().toISOString() });
  }
}
