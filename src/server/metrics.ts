/** Prometheus metrics in KES's names (prom-client, one registry per server). */
import type { Counter, Histogram, Registry, Gauge } from 'prom-client';

export interface Metrics {
  registry: Registry;
  observe(status: number, seconds: number): void;
  auditEvents: Counter;
  errorEvents: Counter;
}

export async function createMetrics(): Promise<Metrics> {
  const prom = await import('prom-client');
  const registry = new prom.Registry();
  const success = new prom.Counter({
    name: 'kes_http_request_success',
    help: 'Number of requests answered with 2xx',
    registers: [registry],
  });
  const error = new prom.Counter({ name: 'kes_http_request_error', help: 'Number of requests answered with 4xx', registers: [registry] });
  const failure = new prom.Counter({
    name: 'kes_http_request_failure',
    help: 'Number of requests answered with 5xx',
    registers: [registry],
  });
  const latency: Histogram = new prom.Histogram({
    name: 'kes_http_response_time',
    help: 'Response time of successful requests in seconds',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 3, 5, 10],
    registers: [registry],
  });
  const auditEvents = new prom.Counter({ name: 'kes_log_audit_events', help: 'Number of audit log events', registers: [registry] });
  const errorEvents = new prom.Counter({ name: 'kes_log_error_events', help: 'Number of error log events', registers: [registry] });
  const start = Date.now();
  const up: Gauge = new prom.Gauge({
    name: 'kes_system_up_time',
    help: 'Seconds since the server started',
    registers: [registry],
    collect() {
      up.set((Date.now() - start) / 1000);
    },
  });
  prom.collectDefaultMetrics({ register: registry, prefix: 'keyport_' });
  return {
    registry,
    auditEvents,
    errorEvents,
    observe(status, seconds) {
      if (status < 400) {
        success.inc();
        latency.observe(seconds);
      } else if (status < 500) error.inc();
      else failure.inc();
    },
  };
}
