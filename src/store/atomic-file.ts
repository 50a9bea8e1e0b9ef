/** Crash-safe file writes: write a temp file, fsync, rename (or link for create-only), fsync the directory. */
import { openSync, writeSync, fsyncSync, closeSync, renameSync, linkSync, unlinkSync, mkdirSync } from 'node:fs';
import { dirname, join, basename } from 'node:path';
import { randomBytes } from 'node:crypto';

export const TEMP_PREFIX = '.tmp-';

function writeTemp(path: string, data: Buffer | string, mode: number): string {
  const tmp = join(dirname(path), `${TEMP_PREFIX}${basename(path)}-${randomBytes(6).toString('hex')}`);
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
      const tmp = join(dirname(f.path), `${TEMP_PREFIX}${basename(f.path)}-${randomBytes(6).toString('hex')}`);
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
