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
    try { unlinkSync(tmp); } catch { /* gone */ }
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
    try { unlinkSync(tmp); } catch { /* gone */ }
  }
  fsyncDir(dirname(path));
}
