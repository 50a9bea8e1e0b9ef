/**
 * The migration journal: an append-only JSON-lines file beside the target (or where --journal says),
 * plus the plan, one line per key. A migration is identified by its source, target, pattern and mode;
 * running the same command again resumes it (after a crash) or reports it finished (changes nothing).
 */
import {
  appendFileSync,
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
  createReadStream,
} from 'node:fs';
import { createInterface } from 'node:readline';
import { dirname, join } from 'node:path';
import { homedir } from 'node:os';
import { createHash } from 'node:crypto';
import { err } from '../errors.js';
import { type Target, targetRef } from '../keys/target.js';
import { fsyncDir } from '../store/atomic-file.js';

export type Action = 'migrate' | 'skip' | 'conflict' | 'refuse';
export type Strategy = 'copy' | 'import' | 'rekey';

export interface PlanEntry {
  n: string; // name
  a: Action;
  s?: Strategy;
  /** replace an existing target key (--force) */
  f?: 1;
  r?: string; // reason
}

export type JournalEvent =
  | { t: 'start'; id: string; from: string; to: string; pattern: string; mode: string; at: string }
  | { t: 'planned'; entries: number; migrate: number; batchSize: number; batches: number }
  | { t: 'batch'; i: number; migrated: number; verified: number; failed: string[]; conflicts: string[] }
  /** the run was interrupted (Ctrl-C): batches from `batch` on are not done; the same migration resumes there */
  | { t: 'interrupted'; batch: number; at: string }
  | { t: 'finished'; at: string };

/** a migration's identity: which two stores or KMSs (by reference, never how they are reached), pattern and mode */
export function migrationId(from: Target, to: Target, pattern: string, mode: string): string {
  return createHash('sha256')
    .update(JSON.stringify([targetRef(from), targetRef(to), pattern, mode]))
    .digest('hex')
    .slice(0, 16);
}

/** the default journal path: beside a file-based target, else under $KEYPORT_HOME/journals */
export function defaultJournalPath(to: Target, id: string): string {
  const p = to.kind === 'store' ? to.store.path : undefined;
  if (p && p !== ':memory:') return join(dirname(p), `.keyport-migrate-${id}.journal`);
  const home = process.env.KEYPORT_HOME ?? join(homedir(), '.keyport');
  return join(home, 'journals', `${id}.journal`);
}

export class Journal {
  private fd: number | undefined;
  constructor(readonly path: string) {}

  get planPath(): string {
    return `${this.path}.plan`;
  }

  read(): JournalEvent[] {
    if (!existsSync(this.path)) return [];
    const out: JournalEvent[] = [];
    for (const line of readFileSync(this.path, 'utf8').split('\n')) {
      if (!line) continue;
      try {
        out.push(JSON.parse(line) as JournalEvent);
      } catch {
        break; // a torn last line from a crash: ignore it and what follows
      }
    }
    return out;
  }

  /** start afresh (nothing of an earlier unfinished plan phase was written to the target) */
  reset(start: JournalEvent): void {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    rmSync(this.planPath, { force: true });
    const tmp = `${this.path}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    writeSync(fd, JSON.stringify(start) + '\n');
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, this.path);
    fsyncDir(dirname(this.path));
  }

  append(ev: JournalEvent): void {
    this.fd ??= openSync(this.path, 'a', 0o600);
    writeSync(this.fd, JSON.stringify(ev) + '\n');
    fsyncSync(this.fd);
  }

  remove(): void {
    this.close();
    rmSync(this.path, { force: true });
    rmSync(this.planPath, { force: true });
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Writes the plan streaming, fsynced at the end. */
export class PlanWriter {
  private fd: number;
  private buf: string[] = [];
  constructor(private path: string) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.fd = openSync(`${path}.tmp`, 'w', 0o600);
  }
  add(e: PlanEntry): void {
    this.buf.push(JSON.stringify(e));
    if (this.buf.length >= 1000) this.flush();
  }
  private flush(): void {
    if (this.buf.length) writeSync(this.fd, this.buf.join('\n') + '\n');
    this.buf = [];
  }
  finish(): void {
    this.flush();
    fsyncSync(this.fd);
    closeSync(this.fd);
    renameSync(`${this.path}.tmp`, this.path);
  }
  abort(): void {
    closeSync(this.fd);
    rmSync(`${this.path}.tmp`, { force: true });
  }
}

export async function* readPlan(path: string): AsyncGenerator<PlanEntry> {
  if (!existsSync(path))
    throw err('INVALID_INPUT', `migration plan ${path} is missing: delete the journal ${path.replace(/\.plan$/, '')} and run again`);
  const rl = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
  for await (const line of rl) if (line) yield JSON.parse(line) as PlanEntry;
}

export function appendText(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  appendFileSync(path, text, { mode: 0o600 });
}
