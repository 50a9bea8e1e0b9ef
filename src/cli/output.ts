/** Output helpers shared by every CLI command: JSON vs human, one-line errors, exit codes. */
import { isKeyportError, oneLine } from '../errors.js';

export interface GlobalOpts {
  json?: boolean;
}

export function printJson(v: unknown): void {
  process.stdout.write(JSON.stringify(v, null, 2) + '\n');
}

export function printTable(rows: Record<string, unknown>[], cols: string[]): void {
  const w = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c] ?? '').length)));
  const line = (vals: string[]) =>
    vals
      .map((v, i) => v.padEnd(w[i]!))
      .join('  ')
      .trimEnd();
  process.stdout.write(line(cols.map((c) => c.toUpperCase())) + '\n');
  for (const r of rows) process.stdout.write(line(cols.map((c) => String(r[c] ?? ''))) + '\n');
}

let errorsAsJson = false;
/** from now on errors are JSON lines `{"time","event":"error","code","message"}` (a command's --json that streams JSON lines) */
export function jsonErrors(): void {
  errorsAsJson = true;
}

/** Print a user-facing error on one line and return the exit code (2 usage, 1 otherwise). */
export function reportError(e: unknown): number {
  const line = (code: string, message: string) =>
    process.stderr.write(
      errorsAsJson ? JSON.stringify({ time: new Date().toISOString(), event: 'error', code, message }) + '\n' : `keyport: ${message}\n`,
    );
  if (isKeyportError(e)) {
    line(e.code, oneLine(e));
    return e.exitCode;
  }
  const code = (e as { code?: string })?.code;
  if (typeof code === 'string' && code.startsWith('commander.')) return 2; // commander already printed it
  line('INTERNAL', `internal error: ${oneLine(e)} (set KEYPORT_DEBUG=1 for details)`);
  if (process.env.KEYPORT_DEBUG) process.stderr.write(`${(e as Error)?.stack ?? ''}\n`);
  return 1;
}

/**
 * commander's usage error (`error: …`, a suggestion on the next line) as keyport's one line:
 * `keyport: MESSAGE (see keyport COMMAND --help)`.
 */
export function usageLine(commanderText: string, commandPath: string): string {
  const msg = commanderText
    .replace(/^error:\s*/, '')
    .replace(/\s*\n\s*/g, ' ')
    .trim();
  return `keyport: ${msg} (see keyport ${commandPath ? commandPath + ' ' : ''}--help)\n`;
}

/** an "Examples:" block for a command's --help */
export function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`;
}

/**
 * A fingerprint for people: an aes256 key check value `kcv1<hex>` reads `kcv1:<hex>` (its scheme apart
 * from its digits); Canton fingerprints (`1220…`) are shown as they are. JSON keeps the stored value.
 */
export function humanFingerprint(fp: string): string {
  return /^kcv1[0-9a-f]+$/.test(fp) ? `kcv1:${fp.slice(4)}` : fp;
}

/** set by `keyport server`: a log reader that went away must not stop the server */
let serving = false;

/**
 * A closed stdout or stderr (`keyport key ls --json | head -1`) ends the process quietly with the exit
 * code it already had (0 if none), never with an EPIPE stack trace: nobody is left to read the rest.
 * Not for `keyport server` (keepServingOnClosedPipe): there the logs drop and count their lines instead,
 * and the server goes on answering its clients.
 */
export function quietOnClosedPipe(stream: NodeJS.WriteStream): void {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (serving) return;
    if (e.code === 'EPIPE' || e.code === 'ERR_STREAM_DESTROYED') process.exit(process.exitCode ?? 0);
    if (stream !== process.stderr) process.stderr.write(`keyport: cannot write output: ${e.code ?? e.message}\n`);
    process.exit(1);
  });
}

/** from now on a closed stdout or stderr does not end the process (the server's logs drop what they cannot write) */
export function keepServingOnClosedPipe(): void {
  serving = true;
}
