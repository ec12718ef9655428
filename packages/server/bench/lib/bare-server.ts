// The same-run baseline of the HTTP suite: Fastify with one /healthz route and none of
// Gatehouse's middleware. Profiling variants (BENCH_VARIANT) isolate what each layer costs:
//   helmet  bare + Gatehouse's security-header plugin, with Gatehouse's settings
//   shell   Gatehouse's whole HTTP shell (src/http/server.ts, logging per GATEHOUSE_LOG_LEVEL)
//           and its health routes, but no database or state store in the process
// Started by bench/lib/http-suite.ts.
import Fastify, { type FastifyInstance } from 'fastify';
import { loadConfig } from '../../src/config/config.ts';
import { healthRoutes } from '../../src/health/routes.ts';
import { registerSecurityHeaders } from '../../src/http/security-headers.ts';
import { createHttpServer } from '../../src/http/server.ts';
import { createLogger } from '../../src/logging/logger.ts';
import type { StateStore } from '../../src/state/state-store.ts';
import type { Database } from '../../src/storage/database.ts';

const variant = process.env.BENCH_VARIANT ?? 'bare';

async function build(): Promise<FastifyInstance> {
  if (variant === 'shell') {
    const config = loadConfig(process.env);
    const server = await createHttpServer(config, createLogger(config.logLevel));
    // /healthz never touches storage; /readyz is not benchmarked.
    const absent = {} as Database & StateStore;
    await server.register(healthRoutes, { db: absent, state: absent });
    return server;
  }
  const server = Fastify({ logger: false });
  if (variant === 'helmet') await registerSecurityHeaders(server, false);
  else if (variant !== 'bare') throw new Error(`unknown BENCH_VARIANT ${variant}`);
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
