/** What every command shares: opening the keyring named by --store / --server, file I/O, progress. */
import { closeSync, fstatSync, fsyncSync, lstatSync, openSync, readSync, renameSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import type { Command } from 'commander';
import { err, isKeyportError } from '../errors.js';
import type { Keyring } from '../keys/types.js';

export interface StoreOpts {
  store?: string;
  server?: string;
  apiKey?: string;
  yes?: boolean;
  insecure?: boolean;
  json?: boolean;
  wrapper?: string;
  kms?: string[];
}

/** a repeatable --kms option */
export const collectKms = (v: string, acc: string[] = []) => [...acc, v];

/**
 * Where KMS connections come from on the command line: what a store keeps are key references, never
 * addresses, so the wrapper key or KMS they name is reached only through what the operator gives here
 * (or in the store YAML).
 */
export function connectionOptions(c: Command, wrapper = true): Command {
  if (wrapper) c.option('--wrapper <kms-key-uri>', "connection to the store's wrapper key, e.g. local:./w.key [env: KEYPORT_WRAPPER]");
  return c.option(
    '--kms <kms-uri>',
    'connection to a KMS or KMS key the store references (repeatable) [env: KEYPORT_KMS, space-separated]',
    collectKms,
  );
}

/** the connections given by flags and environment (flags win: they come last) */
export function kmsConnections(o: { wrapper?: string; kms?: string[] }): string[] {
  const env = (process.env.KEYPORT_KMS ?? '').split(/\s+/).filter(Boolean);
  const w = process.env.KEYPORT_WRAPPER ? [process.env.KEYPORT_WRAPPER] : [];
  return [...env, ...w, ...(o.kms ?? []), ...(o.wrapper ? [o.wrapper] : [])];
}

export function storeOptions(c: Command, what = 'key store: URI (sqlite:keys.db, fs:DIR, awskms:…) or YAML file'): Command {
  return connectionOptions(
    c
      .option('-s, --store <store>', `${what} [env: KEYPORT_STORE]`)
      .option('--server <url>', 'use a keyport/KES server instead of a store [env: KEYPORT_SERVER, KES_SERVER]')
      .option(
        '--api-key <key>',
        'with --server: a kes:v1: API key (prefer the environment: it shows in ps) [env: KEYPORT_API_KEY, KES_API_KEY]',
      )
      .option('-k, --insecure', 'with --server: do not verify the server certificate [env: KEYPORT_INSECURE]')
      .option('--json', 'machine-readable output'),
  );
}

export function storeTarget(o: StoreOpts): string {
  const s = o.store ?? process.env.KEYPORT_STORE;
  if (!s) throw err('USAGE', 'no key store given: pass --store URI (e.g. --store sqlite:keys.db) or set KEYPORT_STORE');
  return s;
}

/** what a command does to its store: may create a missing one (key create, import, register); only reads it */
export interface OpenAccess {
  create?: boolean;
  /**
   * the command only reads (ls, describe, sign, export, …): opening writes nothing and creates no wrapper
   * key, so a clear store its YAML wants envelope-protected is read as it is, with one notice on stderr
   * (openKeyring's readOnly); write commands leave it out and seal on open as Canton does
   */
  readOnly?: boolean;
}

/**
 * The Keyring for a command: a remote server when asked for, else the local store. `create`: this command
 * may create a missing store (key create, import, register); for every other command a missing store is
 * one NOT_FOUND line and nothing is created. `readOnly`: see OpenAccess.
 */
export async function openTarget(o: StoreOpts, access: OpenAccess = {}): Promise<Keyring> {
  // both named on the command line: one would be ignored without a word (the environment only fills in what is missing)
  if (o.server && o.store) throw err('USAGE', '--store and --server exclude each other: give one');
  const server = o.server ?? (o.store ? undefined : (process.env.KEYPORT_SERVER ?? process.env.KES_SERVER));
  if (server) {
    const mod = await import('../client/remote.js');
    return mod.openRemoteKeyring(server, { insecure: o.insecure, apiKey: o.apiKey });
  }
  const { openKeyring } = await import('../keys/open.js');
  return openKeyring(storeTarget(o), {
    create: access.create === true,
    readOnly: access.readOnly === true,
    kms: kmsConnections(o),
    onNotice: (m) => process.stderr.write(`keyport: ${m}\n`),
  });
}

export async function withKeyring<T>(o: StoreOpts, fn: (k: Keyring) => Promise<T>, access: OpenAccess = {}): Promise<T> {
  const kr = await openTarget(o, access);
  try {
    return await fn(kr);
  } finally {
    await kr.close().catch(() => undefined);
  }
}

/** the most a key file or a signature may hold: far beyond an RSA-3072 PKCS#8 PEM, far below a mistake like /dev/zero */
export const SMALL_INPUT = 1 << 20;
/** the most any input may hold (readFileSync's own limit): the CLI works on whole buffers */
const MAX_INPUT = 2 ** 31 - 1;
const PAUSE = new Int32Array(new SharedArrayBuffer(4));

/**
 * A whole input file (or stdin for '-'), at most `max` bytes: a larger regular file is refused before it
 * is read, and a pipe or device (/dev/zero, `yes |`) is read only until it passes the bound.
 */
export function readInput(path: string, what: string, max = MAX_INPUT): Buffer {
  if (path === '-' && process.stdin.isTTY) throw err('USAGE', `no ${what} given: name a file (e.g. --in FILE), or pipe it into stdin`);
  const where = path === '-' ? 'from stdin' : path;
  const limit = max >= 2 ** 30 ? `${Math.round(max / 2 ** 30)} GiB` : `${Math.round(max / 2 ** 20)} MiB`;
  const tooLarge = () => err('USAGE', `cannot read ${what} ${where}: larger than ${limit}`);
  let fd: number | undefined;
  try {
    fd = path === '-' ? 0 : openSync(path, 'r');
    const st = fstatSync(fd);
    if (st.isDirectory()) throw Object.assign(new Error('EISDIR'), { code: 'EISDIR' });
    if (st.isFile() && st.size > max) throw tooLarge();
    const chunks: Buffer[] = [];
    let n = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.min(1 << 20, max + 1 - n));
      let got: number;
      try {
        got = readSync(fd, chunk, 0, chunk.length, null);
      } catch (e) {
        // stdin as a non-blocking pipe whose writer is not done yet: wait a moment, read on
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
        Atomics.wait(PAUSE, 0, 0, 5);
        continue;
      }
      if (got === 0) break;
      n += got;
      if (n > max) throw tooLarge();
      chunks.push(got === chunk.length ? chunk : chunk.subarray(0, got));
    }
    return Buffer.concat(chunks, n);
  } catch (e) {
    if (isKeyportError(e)) throw e;
    throw err('USAGE', `cannot read ${what} ${where}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  } finally {
    if (fd !== undefined && fd !== 0) closeSync(fd);
  }
}

/**
 * write binary output to a file (0600 for secrets) or stdout; refuse raw binary on a terminal (`pem`: the
 * command offers --pem, which the refusal then names)
 */
export function writeOutput(
  path: string | undefined,
  data: Buffer | string,
  opts: { secret?: boolean; binary?: boolean; pem?: boolean } = {},
): void {
  if (!path || path === '-') {
    if (opts.binary && process.stdout.isTTY)
      throw err('USAGE', `refusing to write binary data to a terminal: use --out FILE${opts.pem ? ' or --pem' : ''}`);
    process.stdout.write(data);
    return;
  }
  if (opts.secret) {
    writeSecretFile(path, typeof data === 'string' ? Buffer.from(data) : data);
    return;
  }
  try {
    writeFileSync(path, data, { mode: 0o644 });
  } catch (e) {
    throw err('USAGE', `cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/**
 * `--json` output of a command that makes bytes (a signature, a ciphertext, a key): one JSON object on
 * stdout, the bytes base64 in `field`; with `--out FILE` the bytes go to the file as they would without
 * --json and the object names the file and its size instead. Never raw bytes on stdout under --json.
 */
export function emitJson(
  o: { out?: string },
  data: Buffer,
  field: string,
  fields: Record<string, unknown>,
  opts: { secret?: boolean } = {},
): void {
  if (o.out && o.out !== '-') {
    writeOutput(o.out, data, { ...opts, binary: true });
    process.stdout.write(JSON.stringify({ ...fields, out: o.out, bytes: data.length }, null, 2) + '\n');
  } else process.stdout.write(JSON.stringify({ ...fields, [field]: data.toString('base64') }, null, 2) + '\n');
}

/**
 * Secrets go into a NEW file, mode 0600 from its creation (exclusive create of a temp file beside the
 * target, then an atomic rename over it): an existing file's mode (0644) or owner is never inherited, a
 * reader never sees half a key, and a symlink (or anything but a regular file) at the path is refused
 * rather than followed.
 */
function writeSecretFile(path: string, data: Buffer): void {
  const cannot = (e: unknown) => err('USAGE', `cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  let st;
  try {
    st = lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw cannot(e);
  }
  if (st?.isSymbolicLink()) throw err('USAGE', `refusing to write a secret through the symlink ${path}: give the real path`);
  if (st && !st.isFile()) throw err('USAGE', `refusing to write a secret to ${path}: not a regular file`);
  const tmp = join(dirname(path), `.${basename(path)}.keyport-${randomBytes(6).toString('hex')}`);
  let fd: number;
  try {
    fd = openSync(tmp, 'wx', 0o600);
  } catch (e) {
    throw cannot(e);
  }
  try {
    try {
      let off = 0;
      while (off < data.length) off += writeSync(fd, data, off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      /* gone */
    }
    throw cannot(e);
  }
}

/** a progress bar with rate and ETA on a TTY; silent otherwise or with --json */
export async function progressBar(
  label: string,
  total: number | undefined,
  json?: boolean,
): Promise<{ update(n: number, total?: number): void; stop(): void }> {
  if (json || !process.stderr.isTTY) return { update() {}, stop() {} };
  const { SingleBar, Presets } = await import('cli-progress');
  const bar = new SingleBar(
    {
      format: `${label} [{bar}] {value}/{total} keys | {rate} keys/s | ETA {eta_formatted}`,
      stream: process.stderr,
      hideCursor: true,
      etaBuffer: 200,
    },
    Presets.shades_classic,
  );
  const start = Date.now();
  bar.start(total ?? 0, 0, { rate: '0' });
  return {
    update(n, t) {
      if (t !== undefined) bar.setTotal(t);
      else if (total === undefined && n > bar.getTotal()) bar.setTotal(n);
      bar.update(n, { rate: (n / Math.max(0.001, (Date.now() - start) / 1000)).toFixed(0) });
    },
    stop: () => bar.stop(),
  };
}

/**
 * Ask before a destructive step when a person is at a terminal (stdin and stderr TTYs) and --yes was
 * not given; scripts (no TTY) go ahead as before. Anything but y/yes cancels with one line (exit 2).
 */
export async function confirm(question: string, yes: boolean | undefined, cancelled: string): Promise<void> {
  if (yes || !process.stdin.isTTY || !process.stderr.isTTY) return;
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  let answer = '';
  try {
    answer = await rl.question(`${question} [y/N] `);
  } finally {
    rl.close();
  }
  if (!/^y(es)?$/i.test(answer.trim())) throw err('USAGE', `not confirmed: ${cancelled} (answer y, or pass --yes)`);
}

/** exit code of a run stopped by SIGINT or SIGTERM (a shell's 128 + SIGINT): the same command resumes it */
export const EXIT_INTERRUPTED = 130;

/**
 * Ctrl-C and SIGTERM during a command that writes many keys (migrate, protect): the first stops it
 * cleanly (no new key starts, the keys in flight finish or are cancelled, every key stays whole), with
 * one line saying so; a second exits at once (the stores' own atomicity still leaves no half-written
 * key). Read-only commands keep the default action.
 */
export function interruptible(command: string, what: string): { signal: AbortSignal; release(): void } {
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (ac.signal.aborted) {
      if (process.stderr.isTTY) process.stderr.write('\x1b[?25h\n'); // the progress bar hid the cursor
      process.exit(EXIT_INTERRUPTED);
    }
    process.stderr.write(`${process.stderr.isTTY ? '\n' : ''}${command}: interrupted: ${what}\n`);
    ac.abort(err('TIMEOUT', `${command} was interrupted (${sig})`, { retryable: false }));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: ac.signal,
    release() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
