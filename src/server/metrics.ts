/**
 * Prometheus metrics with KES v0.24's names, types and labels (prom-client, one registry per server). The kes
 * CLI's `kes metric` reads this endpoint and refuses any family other than the request counters that has
 * more than one series, so every family here is either a `code`-labelled request counter or one series.
 */
import { availableParallelism, cpus } from 'node:os';
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface Metrics {
  registry: Registry;
  observe(status: number, seconds: number): void;
  /** requests being served now (kes_http_request_active) */
  active: Gauge;
  auditEvents: Counter;
  errorEvents: Counter;
  /** lines not sent to a /v1/log/audit or /v1/log/error subscriber, or to stdout/stderr, whose buffer was full */
  dropped: { audit: Counter; error: Counter };
}

/**
 * KES reports Go's stack memory; node has no such counter, so this is the JavaScript stack V8 may use (its
 * --stack-size, 984 KiB unless set): never 0, which the kes CLI would leave out of `kes status --json`.
 */
export const STACK_BYTES =
  1024 * Number(/--stack-size[= ](\d+)/.exec([...process.execArgv, process.env.NODE_OPTIONS ?? ''].join(' '))?.[1] ?? 984);

export async function createMetrics(): Promise<Metrics> {
  const prom = await import('prom-client');
  const registry = new prom.Registry();
  const counter = (name: string, help: string, labelNames: string[] = []) =>
    new prom.Counter({ name, help, labelNames, registers: [registry] });
  const gauge = (name: string, help: string, value: () => number) => {
    const g: Gauge = new prom.Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        g.set(value());
      },
    });
    return g;
  };
  const success = counter('kes_http_request_success', 'Number of requests that have been served successfully.', ['code']);
  const error = counter('kes_http_request_error', 'Number of request that failed due to some error. (HTTP 4xx status code)', ['code']);
  const failure = counter(
    'kes_http_request_failure',
    'Number of request that failed due to some internal failure. (HTTP 5xx status code)',
    ['code'],
  );
  const active = new prom.Gauge({
    name: 'kes_http_request_active',
    help: 'Number of active requests that are not finished, yet.',
    registers: [registry],
  });
  const latency: Histogram = new prom.Histogram({
    name: 'kes_http_response_time',
    help: 'Histogram of request response times spawning from 10ms to 10s.',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 3, 5, 10],
    registers: [registry],
  });
  const errorEvents = counter('kes_log_error_events', 'Number of error log events written to the error log targets.');
  const auditEvents = counter('kes_log_audit_events', 'Number of audit log events written to the audit log targets.');
  // keyport additions in KES's namespace, one series each, so `kes metric` still reads the endpoint
  const dropped = {
    audit: counter(
      'kes_log_audit_dropped_events',
      'Audit log events not written to a subscriber or to stdout because its reader was too slow to take them.',
    ),
    error: counter(
      'kes_log_error_dropped_events',
      'Error log events (and log.requests lines) not written to a subscriber or to stderr because its reader was too slow to take them.',
    ),
  };
  const start = Date.now();
  gauge('kes_system_up_time', 'The time the server has been up and running in seconds.', () => Math.round((Date.now() - start) / 1000));
  gauge('kes_system_num_cpu', 'The number of logical CPUs available on the system. It may be larger than the number of usable CPUs.', () =>
    Math.max(cpus().length, availableParallelism()),
  );
  gauge(
    'kes_system_num_cpu_used',
    'The number of logical CPUs usable by the server. It may be smaller than the number of available CPUs.',
    () => availableParallelism(),
  );
  // the event loop and libuv's worker pool (crypto and file work run there)
  gauge(
    'kes_system_num_threads',
    'The number of concurrent co-routines/threads that currently exists.',
    () => 1 + (Number(process.env.UV_THREADPOOL_SIZE) || 4),
  );
  gauge(
    'kes_system_mem_heap_used',
    'The number of bytes that are currently allocated on the heap memory.',
    () => process.memoryUsage().heapUsed,
  );
  gauge('kes_system_mem_stack_used', 'The bytes of stack memory obtained from the OS.', () => STACK_BYTES);
  return {
    registry,
    active,
    auditEvents,
    errorEvents,
    dropped,
    observe(status, seconds) {
      const code = String(status);
      if (status < 400) {
        success.inc({ code });
        latency.observe(seconds);
      } else if (status < 500) error.inc({ code });
      else failure.inc({ code });
    },
  };
}
