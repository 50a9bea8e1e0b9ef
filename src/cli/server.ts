/**
 * `keyport server --config FILE | --dev`: a KES-compatible HTTPS server. With `--json` everything the
 * server itself prints is one JSON object per line (`time`, `event`, then the event's fields): the
 * start-up line, notices, the request log, the shutdown lines and errors (docs/server.md). KES's audit
 * and error logs are JSON lines in KES's format either way.
 */
import type { Command } from 'commander';
import { err } from '../errors.js';
import { jsonErrors, keepServingOnClosedPipe, reportError, usageLine } from './output.js';

interface ServerOpts {
  config?: string;
  dev?: boolean;
  addr?: string;
  workers?: string;
  json?: boolean;
}

/** one JSON line: the time, the event, its fields (stable names, documented in docs/server.md) */
export function eventLine(event: string, fields: Record<string, unknown> = {}): string {
  return JSON.stringify({ time: new Date().toISOString(), event, ...fields }) + '\n';
}

export function register(program: Command): void {
  const cmd = program
    .command('server')
    .description('serve keys over HTTPS with the MinIO KES v1 API (mTLS identities, API keys, policies)')
    .option('-c, --config <file>', 'server config (KES YAML format, plus keyport keystores)')
    .option('--dev', 'start on the embedded default: SQLite + local wrapper key, self-signed certificate, admin API key')
    .option('--addr <host:port>', "listen address (default 127.0.0.1:7373 with --dev, else the config's)")
    .option('--workers <n>', 'processes sharing the port (0 = one per CPU)')
    .option('--json', "the server's own output as JSON lines: start-up, notices, request log, shutdown, errors");
  // a usage error with --json is a JSON line too
  // (commander parses known options before it reports an unknown one; rawArgs covers an error met first)
  const jsonRequested = () =>
    cmd.getOptionValue('json') === true || ((program as unknown as { rawArgs?: string[] }).rawArgs ?? []).includes('--json');
  cmd.configureOutput({
    outputError: (str, write) => {
      if (!jsonRequested()) return write(usageLine(str, 'server'));
      write(eventLine('error', { code: 'USAGE', message: str.replace(/^error:\s*/, '').trim() }));
    },
  });
  cmd.action(async (o: ServerOpts) => {
    // a log reader that goes away (stdout or stderr closed) does not stop the server: see src/server/logs.ts
    keepServingOnClosedPipe();
    if (o.json) jsonErrors();
    const json = !!o.json;
    if (!o.config && !o.dev) throw err('USAGE', 'give --config FILE, or --dev for the embedded default');
    if (o.config && o.dev) throw err('USAGE', '--config and --dev exclude each other');
    const { loadServerConfig } = await import('../server/config.js');
    const { devSetup } = await import('../server/dev.js');
    let addr: { host: string; port: number } | undefined;
    if (o.addr) {
      const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(o.addr);
      if (!m || Number(m[3]) > 65535) throw err('USAGE', `--addr '${o.addr}' is not HOST:PORT`);
      addr = { host: m[1] ?? (m[2] || '0.0.0.0'), port: Number(m[3]) };
    }
    const dev = o.dev ? await devSetup(addr) : undefined;
    const cfg = dev ? dev.config : loadServerConfig(o.config!);
    if (addr) Object.assign(cfg, addr);
    if (o.workers !== undefined) {
      if (!/^\d+$/.test(o.workers)) throw err('USAGE', `--workers must be a number, got '${o.workers}'`);
      cfg.workers = Number(o.workers);
    }
    const cluster = (await import('node:cluster')).default;
    const { availableParallelism } = await import('node:os');
    const workers = cfg.workers === 0 ? availableParallelism() : cfg.workers;
    if (workers > 1 && cluster.isPrimary) {
      let stopping = false;
      const stop = () => {
        stopping = true;
        for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
      };
      // announced when every worker listens (with the port they got); a worker that cannot start has
      // said why on stderr: the others are stopped and the server exits with its code, never a
      // "listening" with nothing listening, nor a loop of workers failing the same way
      let listening = 0;
      let up = false;
      cluster.on('listening', (_w, address) => {
        if (up || ++listening < workers) return;
        up = true;
        announce(json, { host: cfg.host, port: address.port }, dev, workers);
      });
      cluster.on('exit', (_w, code) => {
        if (stopping) return;
        if (!up) {
          process.exitCode = code || 1;
          return stop();
        }
        if (code !== 0) cluster.fork(); // a crashed worker is replaced
      });
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
      for (let i = 0; i < workers; i++) cluster.fork();
      return;
    }
    const { startServer } = await import('../server/index.js');
    const onNotice = (m: string) => process.stderr.write(json ? eventLine('notice', { message: m }) : `keyport: ${m}\n`);
    const s = await startServer(cfg, { onNotice, logFormat: json ? 'json' : 'text' }).catch((e: NodeJS.ErrnoException) => {
      const notHere =
        e.code === 'EADDRNOTAVAIL' ? 'no network interface of this machine has that address' : 'the host name does not resolve';
      const why =
        e.code === 'EADDRINUSE'
          ? err('UNAVAILABLE', `address ${cfg.host}:${cfg.port} is already in use: pick another with --addr`, { retryable: false })
          : e.code === 'EACCES'
            ? err('PERMISSION', `cannot listen on ${cfg.host}:${cfg.port}: permission denied`)
            : e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN'
              ? err('UNAVAILABLE', `cannot listen on ${cfg.host}:${cfg.port}: ${notHere}: pick another with --addr`, { retryable: false })
              : e;
      // a worker says why and exits (its channel to the primary would keep it alive), so the primary sees it
      if (cluster.isWorker) process.exit(reportError(why));
      throw why;
    });
    const stop = (signal: string) => {
      process.stdout.write(
        json ? eventLine('shutdown', { signal }) : `keyport server: ${signal}: shutting down (in-flight requests finish first)\n`,
      );
      void s.close().then(() => {
        process.stdout.write(json ? eventLine('stopped') : 'keyport server stopped\n');
        process.exit(0);
      });
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    // announced once the signals are handled: a supervisor that stops the server as soon as it says it
    // listens gets the graceful shutdown, not the default action of the signal
    if (cluster.isPrimary) announce(json, cfg, dev, 1, s.url);
    await new Promise(() => undefined);
  });
}

/**
 * The start-up message. JSON: `{"time","event":"listening","url","workers"}`, with --dev also
 * `state`, `certificate`, `adminKeyFile` and — only on the start that made it, as the text says it —
 * `adminKey`.
 */
function announce(
  json: boolean,
  cfg: { host: string; port: number },
  dev: { apiKey: string; apiKeyPath: string; apiKeyCreated: boolean; certPath: string; dir: string } | undefined,
  workers: number,
  url?: string,
) {
  const u = url ?? `https://${cfg.host === '0.0.0.0' ? '127.0.0.1' : cfg.host}:${cfg.port}`;
  if (json) {
    const devFields = dev
      ? { state: dev.dir, certificate: dev.certPath, adminKeyFile: dev.apiKeyPath, ...(dev.apiKeyCreated ? { adminKey: dev.apiKey } : {}) }
      : {};
    process.stdout.write(eventLine('listening', { url: u, workers, ...devFields }));
    return;
  }
  const w = (s: string) => process.stdout.write(s + '\n');
  w(`keyport server listening on ${u}${workers > 1 ? ` (${workers} workers)` : ''}`);
  if (dev) {
    w(`  state:     ${dev.dir} (SQLite store sealed under a local wrapper key)`);
    // the admin key is a secret: shown once, when it is made; after that, where it is
    if (dev.apiKeyCreated) {
      w(`  admin key: ${dev.apiKey}  (new: shown this once, kept in ${dev.apiKeyPath})`);
      w(`  try:       export KES_SERVER=${u} KES_API_KEY=${dev.apiKey}`);
    } else {
      w(`  admin key: in ${dev.apiKeyPath}`);
      w(`  try:       export KES_SERVER=${u} KES_API_KEY=$(cat ${dev.apiKeyPath})`);
    }
    w(`             keyport key create my-key -k && keyport key ls -k`);
    w(`             (or the kes CLI: kes key create my-key -k)`);
  }
}
