import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { RequestDurationHistogram } from './request-duration.ts';

/**
 * Prometheus metrics for one Gatehouse instance. Each app gets its own Registry (never the
 * global one), so several apps in one process (tests) do not clash over metric names.
 * Domains ask for their counters here: `metrics.counter('gatehouse_logins_total', '...', ['outcome'])`.
 */
export interface Metrics {
  registry: Registry;
  /** Request latency by method, route pattern (never the raw URL) and status. */
  httpDuration: RequestDurationHistogram;
  /** Audit events recorded, by type and outcome (incremented by the audit log). */
  auditEvents: Counter<'type' | 'outcome'>;
  /** Audit events lost: `overflow` (queue full while the database was down), `rejected`, `closed`. */
  auditDropped: Counter<'reason'>;
  /** Returns the counter of that name, creating it on first use; same name, same counter. */
  counter<L extends string = never>(name: string, help: string, labelNames?: readonly L[]): Counter<L>;
  /** Returns the gauge of that name, creating it on first use; `collect` runs at each scrape. */
  gauge<L extends string = never>(
    name: string,
    help: string,
    labelNames?: readonly L[],
    collect?: (gauge: Gauge<L>) => void,
  ): Gauge<L>;
}

export interface MetricsOptions {
  /** Process metrics (CPU, memory, event loop lag, GC); default true. */
  defaultMetrics?: boolean;
}

// Auth endpoints answer in milliseconds: finer low buckets than prom-client's defaults.
const HTTP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });

  const made = new Map<string, { kind: 'counter' | 'gauge'; labels: string; metric: unknown }>();
  function memoised<M>(
    kind: 'counter' | 'gauge',
    name: string,
    labelNames: readonly string[],
    make: () => M,
  ): M {
    const labels = [...labelNames].sort().join(',');
    const existing = made.get(name);
    if (existing) {
      // A name reused with another shape is a programming error; failing early beats a silent mix-up.
      if (existing.kind !== kind || existing.labels !== labels) {
        throw new Error(
          `Metric ${name} is already registered as a ${existing.kind} with labels [${existing.labels}]`,
        );
      }
      return existing.metric as M;
    }
    const metric = make();
    made.set(name, { kind, labels, metric });
    return metric;
  }

  const counter = <L extends string = never>(name: string, help: string, labelNames: readonly L[] = []) =>
    memoised(
      'counter',
      name,
      labelNames,
      () => new Counter<L>({ name, help, labelNames: [...labelNames], registers: [registry] }),
    );

  const gauge = <L extends string = never>(
    name: string,
    help: string,
    labelNames: readonly L[] = [],
    collect?: (gauge: Gauge<L>) => void,
  ) =>
    memoised(
      'gauge',
      name,
      labelNames,
      () =>
        new Gauge<L>({
          name,
          help,
          labelNames: [...labelNames],
          registers: [registry],
          ...(collect
            ? {
                collect(this: Gauge<L>) {
                  collect(this);
                },
              }
            : {}),
        }),
    );

  const httpDuration = new RequestDurationHistogram(
    'gatehouse_http_request_duration_seconds',
    'HTTP request duration in seconds, by method, route pattern and status code',
    HTTP_BUCKETS,
  );
  httpDuration.register(registry);

  return {
    registry,
    httpDuration,
    auditEvents: counter('gatehouse_audit_events_total', 'Audit events recorded, by type and outcome', [
      'type',
      'outcome',
    ]),
    auditDropped: counter(
      'gatehouse_audit_events_dropped_total',
      'Audit events that could not be stored, by reason (overflow, rejected, closed)',
      ['reason'],
    ),
    counter,
    gauge,
  };
}
