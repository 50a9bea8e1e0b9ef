/**
 * A per-key lock for directory stores, so read-modify-writes (rotate, protect) from several processes
 * on one `fs:` store are serialized: a lock file created with O_EXCL holding the owner's pid, host and a
 * nonce. A lock whose owner died (same host, pid gone) or that is older than `staleMs` is broken; the
 * breaker renames it aside first and checks it took the lock it judged, so two waiters cannot both break
 * one lock and each other's. Not for network filesystems shared between hosts with clock skew.
 */
import { closeSync, linkSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { err } from '../errors.js';
import { checkCancelled, sleepUnlessCancelled } from '../cancel.js';

export interface LockOptions {
  /** give up (CONFLICT, retryable) after waiting this long */
  timeoutMs?: number;
  /** a lock older than this is broken even if its owner seems alive */
  staleMs?: number;
  /** the caller's signal: stop waiting for the lock (TIMEOUT), and never run `fn` once it fired */
  signal?: AbortSignal | undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readLock(path: string): { text: string; pid: number; host: string; ageMs: number } | undefined {
  try {
    const text = readFileSync(path, 'utf8');
    const [pid, host] = text.split(' ');
    return { text, pid: Number(pid), host: host ?? '', ageMs: Date.now() - statSync(path).mtimeMs };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

function tryAcquire(path: string, token: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  try {
    writeSync(fd, token);
  } finally {
    closeSync(fd);
  }
  return true;
}

/** break `path` if it still holds exactly the stale lock `text` */
function breakStale(path: string, text: string): void {
  const aside = `${path}.stale-${randomBytes(6).toString('hex')}`;
  try {
    renameSync(path, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  let moved = '';
  try {
    moved = readFileSync(aside, 'utf8');
  } catch {
    /* gone */
  }
  if (moved !== text) {
    // we moved a lock taken since we looked: put it back unless a newer one is already there
    try {
      linkSync(aside, path);
    } catch {
      /* EEXIST: someone holds the lock anyway */
    }
  }
  try {
    unlinkSync(aside);
  } catch {
    /* gone */
  }
}

export async function withFileLock<T>(path: string, what: string, fn: () => T | Promise<T>, o: LockOptions = {}): Promise<T> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  const staleMs = o.staleMs ?? 60_000;
  const me = hostname();
  const token = `${process.pid} ${me} ${randomBytes(8).toString('hex')}`;
  const t0 = Date.now();
  for (let attempt = 0; ; attempt++) {
    if (tryAcquire(path, token)) break;
    const cur = readLock(path);
    if (cur && ((cur.host === me && !alive(cur.pid)) || cur.ageMs > staleMs)) {
      breakStale(path, cur.text);
      continue;
    }
    if (Date.now() - t0 > timeoutMs) throw err('CONFLICT', `${what} is locked by process ${cur?.pid ?? '?'} on ${cur?.host || '?'}: retry`);
    await sleepUnlessCancelled(Math.min(50, 2 + attempt * 2) * (0.5 + Math.random()), what, o.signal);
  }
  try {
    checkCancelled(what, o.signal);
    return await fn();
  } finally {
    try {
      if (readFileSync(path, 'utf8') === token) unlinkSync(path);
    } catch {
      /* already broken as stale: nothing to release */
    }
  }
}
