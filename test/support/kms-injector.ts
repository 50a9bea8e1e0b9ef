/**
 * A latency and quota injector for AWS-KMS-protocol emulators (local-kms, moto, LocalStack): an HTTP
 * proxy on 127.0.0.1 that forwards every request to the real emulator and, per call,
 *  - waits `latencyMs` (+ uniform jitter up to `jitterMs`) before forwarding, as a distant KMS would;
 *  - takes a token from the bucket of the call's operation (from the `X-Amz-Target` header,
 *    `TrentService.Sign` -> `Sign`) and, when the bucket is empty, answers the way AWS KMS throttles:
 *    HTTP 400, `Content-Type: application/x-amz-json-1.1`, `x-amzn-ErrorType: ThrottlingException`,
 *    body `{"__type":"ThrottlingException","message":"Rate exceeded"}` — without forwarding;
 *  - counts calls per operation (forwarded, throttled, dropped);
 *  - optionally loses the answer of a forwarded call (`drop`: the request reaches the emulator, the
 *    client's connection is then destroyed), so the client cannot know the outcome.
 * Buckets refill continuously at `rate` tokens/s and hold at most `burst` tokens (default: one
 * second's worth, at least 1). Operations may share one bucket (AWS's shared quotas, e.g. Sign+Verify).
 *
 * Control, on the same port (never forwarded): GET /__injector/stats, POST /__injector/config with a
 * JSON InjectorConfig (replaces it; buckets start full), POST /__injector/reset (counters to zero).
 *
 * In process: `const inj = await startInjector(target, cfg)` (tests). Standalone (bench, by hand, or
 * scripts/testbed/kms-injector.sh): `node --import tsx test/support/kms-injector.ts TARGET_URL [CONFIG_JSON]`
 * prints `KMSINJECT_ENDPOINT=http://127.0.0.1:PORT` and serves until killed.
 */
import { createServer, request, Agent, type IncomingMessage, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';

export interface BucketConfig {
  /** operations sharing this bucket (AWS names: Sign, Verify, CreateKey, …) */
  ops: string[];
  /** tokens per second */
  rate: number;
  /** bucket size; default max(1, rate) */
  burst?: number;
}

export interface InjectorConfig {
  latencyMs?: number;
  jitterMs?: number;
  /** one bucket per operation at this rate for every operation no bucket names; none when absent */
  defaultRate?: number;
  buckets?: BucketConfig[];
  /** AWS KMS's own request quotas (AWS_QUOTAS) for the operations `buckets` does not name */
  awsQuotas?: boolean;
  /** lose the answers of the next `count` forwarded calls of `op` */
  drop?: { op: string; count: number };
}

export interface OpStats {
  calls: number;
  forwarded: number;
  throttled: number;
  dropped: number;
}

export interface InjectorStats {
  ops: Record<string, OpStats>;
  total: OpStats;
}

/**
 * AWS KMS request quotas (per account and Region) as issue 12 gives them, which the benchmark and tests
 * use: the lowest AWS has published (GetParametersForImport 0.25/s, ECC 300/s, symmetric 5,500/s) — what
 * keyport's quotas=aws starts at (src/kms/aws/quotas.ts); today's guide lists higher defaults for newer
 * accounts (1/s, 1,000/s, 10,000/s).
 */
export const AWS_QUOTAS: BucketConfig[] = [
  { ops: ['CreateKey'], rate: 5 },
  { ops: ['GetParametersForImport'], rate: 0.25 },
  { ops: ['ImportKeyMaterial'], rate: 5 },
  { ops: ['ScheduleKeyDeletion', 'CancelKeyDeletion'], rate: 5 },
  { ops: ['CreateAlias', 'DeleteAlias', 'UpdateAlias'], rate: 5 },
  { ops: ['TagResource', 'UntagResource'], rate: 5 },
  { ops: ['DescribeKey'], rate: 2000 },
  { ops: ['ListKeys', 'ListAliases'], rate: 100 },
  { ops: ['ListResourceTags'], rate: 50 },
  { ops: ['GetPublicKey'], rate: 2000 },
  // cryptographic operations: asymmetric ECC shares 300/s, asymmetric RSA 500/s, symmetric 5500/s (lowest Region figure)
  { ops: ['Sign', 'Verify'], rate: 300 },
  { ops: ['Encrypt', 'Decrypt', 'GenerateDataKey', 'GenerateDataKeyWithoutPlaintext', 'ReEncrypt'], rate: 5500 },
];

class Bucket {
  private tokens: number;
  private last = performance.now();
  readonly burst: number;
  constructor(
    readonly rate: number,
    burst?: number,
  ) {
    this.burst = burst ?? Math.max(1, rate);
    this.tokens = this.burst;
  }
  take(): boolean {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

export interface Injector {
  endpoint: string;
  port: number;
  stats(): InjectorStats;
  configure(cfg: InjectorConfig): void;
  reset(): void;
  close(): Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function startInjector(target: string, initial: InjectorConfig = {}, port = 0): Promise<Injector> {
  const t = new URL(target);
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  let cfg: InjectorConfig = {};
  let buckets = new Map<string, Bucket>();
  let shared = new Map<string, Bucket>();
  let drops = 0;
  let ops = new Map<string, OpStats>();

  function configure(c: InjectorConfig): void {
    cfg = { ...c };
    shared = new Map();
    for (const b of [...(c.buckets ?? []), ...(c.awsQuotas ? AWS_QUOTAS : [])]) {
      if (b.ops.some((op) => shared.has(op))) continue;
      const bucket = new Bucket(b.rate, b.burst);
      for (const op of b.ops) shared.set(op, bucket);
    }
    buckets = new Map();
    drops = c.drop?.count ?? 0;
  }
  function bucketFor(op: string): Bucket | undefined {
    const s = shared.get(op);
    if (s) return s;
    if (cfg.defaultRate === undefined) return undefined;
    let b = buckets.get(op);
    if (!b) {
      b = new Bucket(cfg.defaultRate);
      buckets.set(op, b);
    }
    return b;
  }
  function statsOf(op: string): OpStats {
    let s = ops.get(op);
    if (!s) {
      s = { calls: 0, forwarded: 0, throttled: 0, dropped: 0 };
      ops.set(op, s);
    }
    return s;
  }
  function stats(): InjectorStats {
    const total: OpStats = { calls: 0, forwarded: 0, throttled: 0, dropped: 0 };
    const out: Record<string, OpStats> = {};
    for (const [op, s] of [...ops].sort()) {
      out[op] = { ...s };
      for (const k of Object.keys(total) as (keyof OpStats)[]) total[k] += s[k];
    }
    return { ops: out, total };
  }
  configure(initial);

  const readAll = async (req: IncomingMessage): Promise<Buffer> => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  };
  const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    const b = Buffer.from(JSON.stringify(body));
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(b.length), ...headers });
    res.end(b);
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readAll(req);
    if (req.url?.startsWith('/__injector/')) {
      if (req.url === '/__injector/stats') return json(res, 200, stats());
      if (req.url === '/__injector/reset' && req.method === 'POST') {
        ops = new Map();
        return json(res, 200, {});
      }
      if (req.url === '/__injector/config' && req.method === 'POST') {
        let c: InjectorConfig;
        try {
          c = JSON.parse(body.toString('utf8') || '{}') as InjectorConfig;
        } catch {
          return json(res, 400, { message: 'the configuration is not JSON' });
        }
        configure(c);
        return json(res, 200, {});
      }
      return json(res, 404, { message: 'no such control path' });
    }
    const target = String(req.headers['x-amz-target'] ?? '');
    const op = target.includes('.') ? target.slice(target.lastIndexOf('.') + 1) : target || 'unknown';
    const s = statsOf(op);
    s.calls++;
    const lat = (cfg.latencyMs ?? 0) + (cfg.jitterMs ? Math.random() * cfg.jitterMs : 0);
    if (lat > 0) await sleep(lat);
    const bucket = bucketFor(op);
    if (bucket && !bucket.take()) {
      s.throttled++;
      // exactly what AWS KMS answers above a request quota
      return json(
        res,
        400,
        { __type: 'ThrottlingException', message: 'Rate exceeded' },
        {
          'content-type': 'application/x-amz-json-1.1',
          'x-amzn-requestid': randomUUID(),
          'x-amzn-errortype': 'ThrottlingException',
        },
      );
    }
    const drop = cfg.drop && cfg.drop.op === op && drops > 0;
    if (drop) drops--;
    const headers = { ...req.headers, host: t.host, 'content-length': String(body.length) };
    await new Promise<void>((resolve) => {
      const up = request(
        { protocol: t.protocol, hostname: t.hostname, port: t.port, method: req.method, path: req.url, headers, agent },
        (r) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('end', () => {
            s.forwarded++;
            if (drop) {
              // the emulator did the work; the client never learns it
              s.dropped++;
              req.socket.destroy();
              resolve();
              return;
            }
            const b = Buffer.concat(chunks);
            const h: Record<string, string | string[]> = {};
            for (const [k, v] of Object.entries(r.headers))
              if (v !== undefined && k !== 'transfer-encoding' && k !== 'connection') h[k] = v;
            h['content-length'] = String(b.length);
            res.writeHead(r.statusCode ?? 502, h);
            res.end(b);
            resolve();
          });
          r.on('error', () => {
            req.socket.destroy();
            resolve();
          });
        },
      );
      up.on('error', () => {
        req.socket.destroy();
        resolve();
      });
      up.end(body);
    });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => req.socket.destroy());
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const bound = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${bound}`,
    port: bound,
    stats,
    configure,
    reset: () => {
      ops = new Map();
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}

/** the control API of an injector running in another process */
export const remoteInjector = (endpoint: string) => ({
  async stats(): Promise<InjectorStats> {
    return (await (await fetch(`${endpoint}/__injector/stats`)).json()) as InjectorStats;
  },
  async configure(cfg: InjectorConfig): Promise<void> {
    await fetch(`${endpoint}/__injector/config`, { method: 'POST', body: JSON.stringify(cfg) });
  },
  async reset(): Promise<void> {
    await fetch(`${endpoint}/__injector/reset`, { method: 'POST' });
  },
});

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [target, cfg] = process.argv.slice(2);
  if (!target) {
    console.error(
      'usage: node --import tsx test/support/kms-injector.ts TARGET_URL [CONFIG_JSON|aws] (KMSINJECT_PORT: the port, default any free one)',
    );
    process.exit(2);
  }
  // `aws`: AWS KMS's own request quotas (AWS_QUOTAS), no latency
  const initial: InjectorConfig = !cfg ? {} : cfg === 'aws' ? { awsQuotas: true } : (JSON.parse(cfg) as InjectorConfig);
  const inj = await startInjector(target, initial, Number(process.env.KMSINJECT_PORT ?? 0));
  console.log(`KMSINJECT_ENDPOINT=${inj.endpoint}`);
  const stop = () => void inj.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
