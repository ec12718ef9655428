import { createHash, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import { DomainError } from '../errors.ts';
import type { Metrics } from './metrics.ts';

export interface MetricsRoutesOptions {
  metrics: Metrics;
  /** GATEHOUSE_METRICS_TOKEN: a scraper sending `Authorization: Bearer <token>` may read /metrics. */
  token?: string | undefined;
  /** Grants /metrics to callers holding 'metrics:read'; throws DomainError('unauthorized' | 'forbidden') otherwise. */
  authorize?: ((request: FastifyRequest, permission: string) => Promise<void>) | undefined;
}

/** Requests that matched no route share one label value, so scanners cannot grow the series count. */
export const UNMATCHED_ROUTE = '(unmatched)';

function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (typeof header !== 'string') return undefined;
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

function unauthorized(detail: string, invalidToken: boolean): DomainError {
  return new DomainError('unauthorized', detail, {
    headers: {
      'www-authenticate': invalidToken
        ? 'Bearer realm="gatehouse-metrics", error="invalid_token"'
        : 'Bearer realm="gatehouse-metrics"',
    },
  });
}

/**
 * The request-duration histogram (for every route of the server, hence not encapsulated) and
 * GET /metrics. /metrics is not public: it needs the metrics token or the 'metrics:read'
 * permission. Operators who prefer network isolation use startMetricsServer on a private port.
 */
const plugin: FastifyPluginAsync<MetricsRoutesOptions> = async (server, { metrics, token, authorize }) => {
  const expected = token ? sha256(token) : undefined;

  // Cheap: the route pattern and the elapsed time Fastify already tracks, one observe call.
  server.onRequestCompleted((request, reply) => {
    metrics.httpDuration.observe(
      request.method,
      request.routeOptions.url ?? UNMATCHED_ROUTE,
      reply.statusCode,
      reply.elapsedTime / 1000,
    );
  });

  server.get(
    '/metrics',
    {
      schema: {
        tags: ['metrics'],
        summary: 'Prometheus metrics (text exposition format)',
        description:
          'Needs `Authorization: Bearer <GATEHOUSE_METRICS_TOKEN>` or the metrics:read permission. ' +
          'GATEHOUSE_METRICS_PORT serves the same without authentication on a separate port.',
        security: [{ bearer: [] }],
      },
      preHandler: async (request) => {
        const given = bearerToken(request);
        if (expected && given !== undefined && timingSafeEqual(sha256(given), expected)) return;
        if (authorize) {
          await authorize(request, 'metrics:read');
          return;
        }
        throw unauthorized(
          expected
            ? 'Send the metrics token as a Bearer credential'
            : 'No metrics token is configured (GATEHOUSE_METRICS_TOKEN); use GATEHOUSE_METRICS_PORT or configure one',
          given !== undefined,
        );
      },
    },
    async (_request, reply) => {
      const body = await metrics.registry.metrics();
      return reply.header('cache-control', 'no-store').type(metrics.registry.contentType).send(body);
    },
  );
};

// Like fastify-plugin: registered on the root server, as the completion listener sees every route anyway.
Object.assign(plugin, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'gatehouse-metrics',
});

export const metricsRoutes = plugin;

export interface MetricsServer {
  /** The bound port (useful with port 0). */
  port: number;
  close(): Promise<void>;
}

/**
 * Serves GET /metrics without authentication on its own port: operators bind it to a private
 * interface (GATEHOUSE_METRICS_PORT) that only the scraper reaches.
 */
export async function startMetricsServer(
  registry: Registry,
  port: number,
  host: string,
): Promise<MetricsServer> {
  // Not an `import` of node:http: an ES module import enumerates its exports, whose WebSocket,
  // CloseEvent and MessageEvent getters load Node's fetch implementation (undici), ~1.5 MB of
  // heap that nothing here uses.
  const { createServer } = process.getBuiltinModule('node:http');
  const server = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    if (path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('Not found\n');
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response
        .writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' })
        .end('Method not allowed\n');
      return;
    }
    registry.metrics().then(
      (body) => {
        response.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' });
        response.end(request.method === 'HEAD' ? undefined : body);
      },
      () => {
        response.writeHead(500, { 'content-type': 'text/plain' }).end('Metrics collection failed\n');
      },
    );
  });
  // Scrapes are short; idle keep-alive sockets must not hold close() open.
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  let closing: Promise<void> | undefined;
  return {
    port: (server.address() as AddressInfo).port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
