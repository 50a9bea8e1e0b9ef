/**
 * The KMS audit trail: one JSON line per driver call (written by src/kms/instrument.ts). A line names
 * the KMS (redacted URI), the operation, the key id, the latency, the outcome and error code, the
 * number of attempts and any request ids the KMS returned. It never holds plaintexts, ciphertexts,
 * signatures or key material: only their sizes.
 *
 * `KEYPORT_KMS_AUDIT=PATH` turns the file sink on (append, 0600); unset = off.
 */
import { appendFileSync, chmodSync, closeSync, openSync, statSync } from 'node:fs';
import { err } from '../errors.js';
import type { ErrorCode } from '../errors.js';

export interface AuditRecord {
  /** ISO 8601 */
  time: string;
  /** redacted KMS URI */
  kms: string;
  operation: string;
  keyId?: string;
  latencyMs: number;
  outcome: 'ok' | 'error';
  code?: ErrorCode;
  attempts: number;
  requestIds?: string[];
  /** sizes only, never the bytes */
  inputBytes?: number;
  outputBytes?: number;
  /** health(): the state reported */
  health?: string;
  /** name given to a generated / imported key */
  name?: string;
  /** algorithm / key spec asked for */
  spec?: string;
}

export interface AuditSink {
  write(record: AuditRecord): void;
  close?(): Promise<void>;
}

/** Appends one JSON line per record to PATH (created 0600; an existing file is tightened to 0600). */
export function fileAuditSink(path: string): AuditSink {
  try {
    closeSync(openSync(path, 'a', 0o600));
    if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
  } catch (e) {
    throw err(
      'USAGE',
      `cannot open the KMS audit log ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'}): fix KEYPORT_KMS_AUDIT or the directory permissions`,
    );
  }
  let warned = false;
  return {
    write(record) {
      try {
        // one appendFileSync per line: a single write(2) with O_APPEND, so concurrent writers never interleave a line
        appendFileSync(path, JSON.stringify(record) + '\n', { mode: 0o600 });
      } catch (e) {
        if (!warned) {
          warned = true;
          process.stderr.write(
            `keyport: cannot write the KMS audit log ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'}); audit lines are being lost\n`,
          );
        }
      }
    },
  };
}

export interface MemoryAuditSink extends AuditSink {
  readonly records: AuditRecord[];
  /** the JSON lines exactly as the file sink would write them */
  text(): string;
}

export function memoryAuditSink(): MemoryAuditSink {
  const records: AuditRecord[] = [];
  return {
    records,
    write(r) {
      records.push(JSON.parse(JSON.stringify(r)) as AuditRecord);
    },
    text() {
      return records.map((r) => JSON.stringify(r) + '\n').join('');
    },
  };
}

/** `KEYPORT_KMS_AUDIT=PATH` -> a file sink; unset or empty -> undefined (no audit). */
export function auditSinkFromEnv(env: NodeJS.ProcessEnv = process.env): AuditSink | undefined {
  const p = env['KEYPORT_KMS_AUDIT'];
  return p ? fileAuditSink(p) : undefined;
}
