import type { Config } from './config/config.ts';
import { type MasterSecret, resolveMasterSecret } from './config/master-secret.ts';
import { healthRoutes } from './health/routes.ts';
import { createHttpServer, type HttpServer } from './http/server.ts';
import { createLogger, type Logger } from './logging/logger.ts';
import { createStateStore } from './state/index.ts';
import type { StateStore } from './state/state-store.ts';
import { type Database, openDatabase } from './storage/index.ts';
import { migrate } from './storage/migrate.ts';

/** Everything a domain may depend on; built once per process. */
export interface AppContext {
  config: Config;
  logger: Logger;
  db: Database;
  state: StateStore;
  masterSecret: MasterSecret;
}

export interface Gatehouse extends AppContext {
  server: HttpServer;
  /** Stops accepting, waits (bounded) for in-flight requests, then closes pools. Idempotent. */
  close(): Promise<void>;
}

export interface CreateOptions {
  logger?: Logger;
  /** Tests: keep embedded PGlite in memory instead of the data directory. */
  inMemoryDatabase?: boolean;
}

export async function createGatehouse(config: Config, options: CreateOptions = {}): Promise<Gatehouse> {
  const logger = options.logger ?? createLogger(config.logLevel);
  const masterSecret = resolveMasterSecret(config.secret, config.dataDir);
  const db = await openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: options.inMemoryDatabase ? null : config.dataDir,
    ...(config.databaseSchema ? { schema: config.databaseSchema } : {}),
  });
  let state: StateStore | undefined;
  try {
    await migrate(db);
    state = createStateStore(config.redisUrl);
    const stateStore = state;
    const context: AppContext = { config, logger, db, state: stateStore, masterSecret };
    const server = await createHttpServer(config, logger);
    await server.register(healthRoutes, { db, state: stateStore });

    let closing: Promise<void> | undefined;
    const close = () => {
      closing ??= (async () => {
        const timer = setTimeout(() => server.server.closeAllConnections(), config.shutdownTimeoutMs);
        // Keep-alive connections whose last request finished after close() began would hold it open.
        const sweeper = setInterval(() => server.server.closeIdleConnections(), 100);
        try {
          await server.close();
        } finally {
          clearTimeout(timer);
          clearInterval(sweeper);
          await Promise.allSettled([context.state.close(), db.close()]);
        }
      })();
      return closing;
    };
    return { ...context, server, close };
  } catch (error) {
    await Promise.allSettled([state?.close(), db.close()]);
    throw error;
  }
}
