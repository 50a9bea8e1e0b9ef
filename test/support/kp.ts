/** Run the built `keyport` CLI (bin/keyport.js → dist/) as users and scripts call it. */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './testbed.js';

export const BIN = join(ROOT, 'bin', 'keyport.js');

export interface KpResult {
  code: number | null;
  out: Buffer;
  stdout: string;
  stderr: string;
}

export function kpIn(cwd: string, args: string[], input?: Buffer | string, env: Record<string, string> = {}): KpResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    input,
    env: { ...process.env, KEYPORT_STORE: '', KES_SERVER: '', KEYPORT_SERVER: '', ...env },
    cwd,
  });
  return { code: r.status, out: r.stdout, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** one line on stderr, no stack trace */
export function isOneLine(stderr: string): boolean {
  return stderr.trim().split('\n').length === 1 && !/\n\s+at .+:\d+:\d+/.test(stderr);
}
