/**
 * Outage tests need an emulator they may stop, freeze and restart without disturbing other test files
 * running at the same time (the runner uses --test-concurrency=2). `privatePykmip(tag)` starts a
 * PyKMIP of its own through the project script (scripts/testbed/pykmip.sh with KEYPORT_TESTBED_STATE
 * pointing at a private state dir, so its own PKI, database, port and pid file), and can:
 *  - stop()         the script's own `stop` (the server process group is killed);
 *  - restart()      start the server again on the SAME port: pykmip.sh `start` always picks a new free
 *                   port, but a wrapper key URI names host and port and is recorded in every sealed blob,
 *                   so an envelope store only recovers if the KMS comes back where it was. The server is
 *                   started from the config file the script wrote (same port, PKI and database), in its
 *                   own session, and its pid goes into the script's pid file so `stop` still works;
 *  - freeze()/thaw() SIGSTOP/SIGCONT of the server (a KMS that accepts connections but never answers);
 *  - destroy()      stop it and remove its state.
 * `countingRelay(port)` is a plain TCP relay in front of the real server that counts the connections a
 * client opens (attempt counts without timing).
 */
import { spawn, spawnSync } from 'node:child_process';
import { createConnection, createServer, type Socket } from 'node:net';
import { openSync, readFileSync, rmSync, writeFileSync, closeSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { ROOT, TESTBED_STATE } from './testbed.js';

function parseEnv(out: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!;
  }
  return env;
}

export async function waitPort(port: number, open: boolean, ms = 60_000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    const isOpen = await new Promise<boolean>((resolve) => {
      const s = createConnection({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (isOpen === open) return;
    if (Date.now() > until) throw new Error(`127.0.0.1:${port} did not become ${open ? 'open' : 'closed'} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface PrivateKmip {
  env: Record<string, string>;
  state: string;
  port: number;
  /** the kmip: KMS URI of this instance (optionally through another port, other credentials) */
  kmsUri(over?: { port?: number; cert?: string; key?: string; timeout?: string }): string;
  stop(): Promise<void>;
  /** stop from synchronous code (a progress callback); returns when the server is gone */
  stopSync(): void;
  restart(): Promise<void>;
  freeze(): void;
  thaw(): void;
  destroy(): Promise<void>;
}

export async function privatePykmip(tag: string): Promise<PrivateKmip> {
  const state = join(TESTBED_STATE, `outage-${tag}`);
  const env = { ...process.env, KEYPORT_TESTBED_STATE: state };
  const script = join(ROOT, 'scripts', 'testbed', 'pykmip.sh');
  const run = (cmd: string) => spawnSync('bash', [script, cmd], { encoding: 'utf8', env, timeout: 20 * 60_000 });
  // a fresh instance every time: whatever an earlier, interrupted run left (a server, a database) goes
  run('stop');
  rmSync(state, { recursive: true, force: true });
  const r = run('start');
  if (r.status !== 0) throw new Error(`private pykmip did not start: ${(r.stderr || '').trim().split('\n').pop()}`);
  const e = parseEnv(r.stdout);
  const port = Number(e.KMIP_PORT);
  const dir = join(state, 'pykmip');
  const pidFile = join(dir, 'pykmip.pid');
  const pid = () => Number(readFileSync(pidFile, 'utf8').trim());
  const self: PrivateKmip = {
    env: e,
    state,
    port,
    kmsUri: (o = {}) =>
      `kmip:host=127.0.0.1;port=${o.port ?? port};cert=${o.cert ?? e.KMIP_CERT};key=${o.key ?? e.KMIP_KEY};ca=${e.KMIP_CA}${o.timeout ? `;timeout=${o.timeout}` : ''}`,
    async stop() {
      const s = run('stop');
      if (s.status !== 0) throw new Error(`pykmip.sh stop failed: ${s.stderr}`);
      await waitPort(port, false, 10_000);
    },
    stopSync() {
      const s = run('stop');
      if (s.status !== 0) throw new Error(`pykmip.sh stop failed: ${s.stderr}`);
    },
    async restart() {
      const bin = join(dirname(e.KMIP_PYTHON!), 'pykmip-server');
      const out = openSync(join(dir, 'stdout.log'), 'a');
      const child = spawn(bin, ['-f', join(dir, 'server.conf'), '-l', join(dir, 'server.log')], {
        detached: true,
        stdio: ['ignore', out, out],
      });
      closeSync(out);
      child.unref();
      writeFileSync(pidFile, `${child.pid}\n`);
      await waitPort(port, true, 60_000);
    },
    freeze() {
      process.kill(-pid(), 'SIGSTOP');
    },
    thaw() {
      process.kill(-pid(), 'SIGCONT');
    },
    async destroy() {
      try {
        self.thaw();
      } catch {
        /* not running */
      }
      run('stop');
      rmSync(state, { recursive: true, force: true });
    },
  };
  return self;
}

export interface CountingRelay {
  port: number;
  /** TCP connections accepted so far */
  readonly connections: number;
  close(): Promise<void>;
}

export async function countingRelay(targetPort: number): Promise<CountingRelay> {
  let connections = 0;
  const socks = new Set<Socket>();
  const server = createServer((c) => {
    connections++;
    const up = createConnection({ host: '127.0.0.1', port: targetPort });
    socks.add(c).add(up);
    c.pipe(up).pipe(c);
    const end = () => {
      c.destroy();
      up.destroy();
    };
    c.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    get connections() {
      return connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of socks) s.destroy();
        server.close(() => resolve());
      }),
  };
}
