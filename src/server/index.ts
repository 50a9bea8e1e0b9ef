/** Start a keyport server (one process) from a resolved configuration. */
import { isKeyportError } from '../errors.js';
import { openKeyring } from '../keys/open.js';
import type { StoreKeyring } from '../keys/keyring.js';
import type { ServerConfig } from './config.js';
import { createKesServer } from './http.js';
import { Logs, type LogOutputs } from './logs.js';
import { createMetrics } from './metrics.js';
import { UnansweredWrites } from './unanswered.js';
import type { ServerState } from './routes.js';

export interface Started {
  url: string;
  port: number;
  close(): Promise<void>;
}

export interface StartOptions {
  /** start-up and store notices, one sentence each */
  onNotice?: (m: string) => void;
  /** the request log's format (`keyport server --json`: JSON lines); KES's audit and error logs are JSON either way */
  logFormat?: 'text' | 'json';
  /** where the audit log (stdout) and the error and request logs (stderr) go; default the process's own */
  outputs?: Pick<LogOutputs, 'stdout' | 'stderr'>;
}

export async function startServer(cfg: ServerConfig, opts: StartOptions = {}): Promise<Started> {
  for (const n of cfg.notices ?? []) opts.onNotice?.(n);
  const kr: StoreKeyring = await openKeyring(cfg.store, {
    // a keystore.keyport section's relative store, wrapper and KMS paths mean beside the config file
    ...(typeof cfg.store !== 'string' && cfg.base ? { base: cfg.base } : {}),
    cacheTtlMs: cfg.cache.anyMs || 300_000,
    cacheUnusedMs: cfg.cache.unusedMs,
    recordTtlMs: cfg.cache.anyMs,
    offlineMs: cfg.cache.offlineMs,
    onNotice: opts.onNotice,
  });
  for (const name of cfg.keys) {
    await kr.create(name).catch((e) => {
      if (!isKeyportError(e, 'EXISTS')) throw e;
    });
  }
  const metrics = await createMetrics();
  const logs = new Logs(cfg.log, opts.logFormat, { ...opts.outputs, onDrop: (which) => metrics.dropped[which].inc() });
  const state: ServerState = {
    kr,
    config: cfg,
    logs,
    metrics,
    unanswered: new UnansweredWrites(),
    startedAt: Date.now(),
    async probe() {
      const t = process.hrtime.bigint();
      try {
        await kr.store.list({ limit: 1 });
        return { ok: true, unreachable: false, latencyMs: Number(process.hrtime.bigint() - t) / 1e6 };
      } catch (e) {
        const unreachable = isKeyportError(e) && (e.code === 'UNAVAILABLE' || e.code === 'TIMEOUT') && e.retryable;
        return { ok: false, unreachable, latencyMs: 0 };
      }
    },
  };
  const server = createKesServer(state);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(cfg.port, cfg.host, () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : cfg.port;
  const host = cfg.host === '0.0.0.0' || cfg.host === '::' ? '127.0.0.1' : cfg.host;
  let closing: Promise<void> | undefined;
  return {
    url: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    close() {
      closing ??= (async () => {
        // stop accepting, let in-flight requests finish (bounded), then release the store
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            server.closeAllConnections();
            resolve();
          }, 10_000);
          server.close(() => {
            clearTimeout(t);
            resolve();
          });
          server.closeIdleConnections();
        });
        await kr.close();
      })();
      return closing;
    },
  };
}
