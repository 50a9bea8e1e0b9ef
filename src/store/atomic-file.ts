/**
 * Crash-safe file writes: write a temp file, fsync, rename (or link for create-only), fsync the directory.
 * A temp file is named `.tmp-p<pid>.<nonce>.<final name>`, so one left by a writer that died (kill -9
 * mid-migration) is recognised and removed (`removeStaleTemps`) instead of lingering with its content.
 */
import { openSync, writeSync, fsyncSync, closeSync, renameSync, linkSync, unlinkSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, basename } from 'node:path';
import { randomBytes } from 'node:crypto';
import { err } from '../errors.js';

export const TEMP_PREFIX = '.tmp-';

function tempPath(path: string): string {
  return join(dirname(path), `${TEMP_PREFIX}p${process.pid}.${randomBytes(6).toString('hex')}.${basename(path)}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The temp files in `dir` no writer will finish: the writing process is gone, or (pid reused, another
 * host) the file is older than an hour; a temp from before names carried the pid counts after a minute.
 * A temp of a live writer, this process's above all, is never listed.
 */
export function staleTemps(dir: string, now = Date.now()): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const f of entries) {
    if (!f.startsWith(TEMP_PREFIX)) continue;
    let age: number;
    try {
      age = now - statSync(join(dir, f)).mtimeMs;
    } catch {
      continue; // finished meanwhile
    }
    const m = /^\.tmp-p(\d+)\.[0-9a-f]{12}\./.exec(f);
    const pid = m ? Number(m[1]) : undefined;
    if (pid === process.pid) continue;
    if (pid === undefined ? age > 60_000 : !alive(pid) || age > 3_600_000) out.push(f);
  }
  return out;
}

/** remove `staleTemps(dir)`; returns how many were removed. Callers hold the store's lock. */
export function removeStaleTemps(dir: string): number {
  let n = 0;
  for (const f of staleTemps(dir)) {
    try {
      unlinkSync(join(dir, f));
      n++;
    } catch {
      /* removed by someone else */
    }
  }
  if (n) fsyncDir(dir);
  return n;
}

function writeTemp(path: string, data: Buffer | string, mode: number): string {
  const tmp = tempPath(path);
  const fd = openSync(tmp, 'wx', mode);
  try {
    const b = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < b.length) off += writeSync(fd, b, off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return tmp;
}

export function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* some filesystems cannot fsync a directory */
  }
}

/** atomically replace (or create) path */
export function writeFileAtomic(path: string, data: Buffer | string, mode = 0o600): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = writeTemp(path, data, mode);
  try {
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      /* gone */
    }
    throw e;
  }
  fsyncDir(dirname(path));
}

/** atomically create path; throws EEXIST if it exists (link never replaces) */
export function createFileAtomic(path: string, data: Buffer | string, mode = 0o600): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = writeTemp(path, data, mode);
  try {
    linkSync(tmp, path);
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      /* gone */
    }
  }
  fsyncDir(dirname(path));
}

/** syncfs(2) through coreutils `sync -f`: one flush of the whole filesystem holding `path` */
async function syncFilesystem(path: string): Promise<boolean> {
  const { execFile } = await import('node:child_process');
  return new Promise((resolve) => execFile('sync', ['-f', path], { timeout: 120_000 }, (e) => resolve(!e)));
}

/**
 * Create many files at once, each atomically and create-only, and return the paths that already
 * existed (left untouched). Used by bulk writes (migration), where one fsync per file in sequence is
 * what limits speed. Steps: write every temp file; make them durable with ONE filesystem sync (falling
 * back to an fsync per file); link each to its final name (link never replaces); sync again so the
 * names are durable; remove the temps. A crash at any point leaves each final name absent or pointing
 * at complete, durable content.
 */
export async function createFilesAtomic(dir: string, files: { path: string; data: Buffer | string }[], mode = 0o600): Promise<string[]> {
  // plain synchronous syscalls: each costs microseconds, while a hand-off to libuv's pool costs more
  // than the call itself here; only the filesystem sync waits asynchronously
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const existed: string[] = [];
  const temps: string[] = [];
  try {
    for (const f of files) {
      const tmp = tempPath(f.path);
      const fd = openSync(tmp, 'wx', mode);
      temps.push(tmp);
      try {
        const b = typeof f.data === 'string' ? Buffer.from(f.data) : f.data;
        let off = 0;
        while (off < b.length) off += writeSync(fd, b, off);
      } finally {
        closeSync(fd);
      }
    }
    if (!(await syncFilesystem(dir))) for (const t of temps) fsyncFile(t);
    files.forEach((f, i) => {
      try {
        linkSync(temps[i]!, f.path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') existed.push(f.path);
        else throw e;
      }
    });
    if (!(await syncFilesystem(dir))) fsyncDir(dir);
  } finally {
    for (const t of temps) {
      try {
        unlinkSync(t);
      } catch {
        /* gone */
      }
    }
  }
  return existed;
}

function fsyncFile(path: string): void {
  const fd = openSync(path, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** An I/O failure of a directory store as a keyport error: PERMISSION, else UNAVAILABLE (not retried). */
export function ioError(e: unknown, what: string): never {
  if (e instanceof Error && e.name === 'KeyportError') throw e;
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM') throw err('PERMISSION', `${what}: permission denied`);
  throw err('UNAVAILABLE', `${what}: ${code ?? (e as Error).message.split('\n')[0]}`, { retryable: false });
}

/** Remove one key's file from a directory store, durably: NOT_FOUND when there is none. */
export function removeKeyFile(file: string, dir: string, name: string): void {
  try {
    unlinkSync(file);
    fsyncDir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw err('NOT_FOUND', `key '${name}' does not exist`);
    ioError(e, `cannot delete key '${name}'`);
  }
}
