// The same-run baseline of the HTTP suite: Fastify with one /healthz route and none of
// Gatehouse's middleware. Profiling variants (BENCH_VARIANT) isolate what each layer costs:
//   headers  bare + Gatehouse's response-header hook (security headers, request id)
//   shell   Gatehouse's whole HTTP shell (src/http/server.ts, logging per GATEHOUSE_LOG_LEVEL)
//           and its health routes, but no database or state store in the process
// Started by bench/lib/http-suite.ts.
import Fastify, { type FastifyInstance } from 'fastify';
import type { StateStore } from '../../src/state/state-store.ts';
import type { Database } from '../../src/storage/database.ts';

const variant = process.env.BENCH_VARIANT ?? 'bare';

async function build(): Promise<FastifyInstance> {
  // Gatehouse modules load only in the variants that use them, so the baseline stays bare.
  if (variant !== 'bare') {
    // As bin/gatehouse.js does first: without it, the full GCs of loading Gatehouse's modules can
    // leave nextTick on V8's slow path and these rows would overstate the layers they measure.
    const { pinTickObjectShape } = await import('../../src/runtime/tick-object-shape.ts');
    pinTickObjectShape();
  }
  if (variant === 'shell') {
    const { loadConfig } = await import('../../src/config/config.ts');
    const { createHttpServer } = await import('../../src/http/server.ts');
    const { healthRoutes } = await import('../../src/health/routes.ts');
    const { createLogger } = await import('../../src/logging/logger.ts');
    const config = loadConfig(process.env);
    const server = await createHttpServer(config, createLogger(config.logLevel));
    // /healthz never touches storage; /readyz is not benchmarked.
    const absent = {} as Database & StateStore;
    await server.register(healthRoutes, { db: absent, state: absent });
    return server;
  }
  const server = Fastify({ logger: false });
  if (variant === 'headers') {
    const { registerResponseHeaders } = await import('../../src/http/security-headers.ts');
    registerResponseHeaders(server, false);
  } else if (variant !== 'bare') {
    throw new Error(`unknown BENCH_VARIANT ${variant}`);
  }
  // The same response schema as Gatehouse's route, so both serialise the same way.
  server.get(
    '/healthz',
    {
      schema: {
        response: {
          200: {
            type: 'object',
            properties: { status: { type: 'string', const: 'ok' } },
            required: ['status'],
          },
        },
      },
    },
    async () => ({ status: 'ok' }),
  );
  return server;
}

const server = await build();
const stop = () => {
  server.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);

await server.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' });
