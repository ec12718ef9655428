import { auditRoutes } from './audit/routes.ts';
import { authzRoutes } from './authz/routes.ts';
import type { Config } from './config/config.ts';
import { type MasterSecret, resolveMasterSecret } from './config/master-secret.ts';
import { healthRoutes } from './health/routes.ts';
import { registerCsrfProtection } from './http/csrf.ts';
import { createHttpServer, type HttpServer } from './http/server.ts';
import { accountPages } from './identity/account-pages.ts';
import { adminUserRoutes } from './identity/admin-routes.ts';
import { accountRoutes } from './identity/routes.ts';
import { createLogger, type Logger } from './logging/logger.ts';
import { metricsRoutes, startMetricsServer } from './metrics/routes.ts';
import { createServices, type Services } from './services.ts';
import { sessionRoutes } from './sessions/routes.ts';
import { createStateStore } from './state/index.ts';
import type { StateStore } from './state/state-store.ts';
import { type Database, openConfiguredDatabase } from './storage/index.ts';
import { migrate } from './storage/migrate.ts';
import { jwksRoutes } from './tokens/jwks-routes.ts';
import { revocationRoutes } from './tokens/revocation-routes.ts';

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
  services: Services;
  /** Stops accepting, waits (bounded) for in-flight requests, then flushes the audit trail and closes pools. Idempotent. */
  close(): Promise<void>;
}

export interface CreateOptions {
  logger?: Logger;
  /** Tests: keep embedded PGlite in memory instead of the data directory. */
  inMemoryDatabase?: boolean;
}

/** Opens storage, migrates, and builds the services: what both the server and the CLI need. */
export async function openContext(config: Config, options: CreateOptions = {}): Promise<AppContext> {
  const logger = options.logger ?? createLogger(config.logLevel);
  const masterSecret = resolveMasterSecret(config.secret, config.dataDir);
  const db = await openConfiguredDatabase(config, { inMemory: options.inMemoryDatabase ?? false });
  try {
    await migrate(db);
    return {
      config,
      logger,
      db,
      state: createStateStore(config.redisUrl, config.redisKeyPrefix),
      masterSecret,
    };
  } catch (error) {
    await db.close();
    throw error;
  }
}

async function registerRoutes(server: HttpServer, context: AppContext, services: Services): Promise<void> {
  const { config, db, state } = context;
  const { authorization } = services;
  registerCsrfProtection(server, {
    allowedOrigins: [new URL(config.publicUrl).origin, ...config.corsOrigins],
    sessionCookieName: services.cookies.sessionName,
  });
  const authorize = async (request: Parameters<typeof authorization.authorize>[0], permission: string) => {
    await authorization.authorize(request, permission);
  };
  await server.register(metricsRoutes, { metrics: services.metrics, token: config.metricsToken, authorize });
  await server.register(healthRoutes, { db, state });
  await server.register(jwksRoutes, { keys: services.keys });
  await server.register(accountRoutes, {
    identity: services.identity,
    sessions: services.sessions,
    tokens: services.tokens,
    audit: services.audit,
    cookies: services.cookies,
    audience: services.audience,
    refreshAbsoluteSeconds: config.refreshAbsoluteSeconds,
    requireAuthentication: authorization.requireAuthentication,
    // The same coherent cache as cookie requests: /v1/me with a token read the database every call.
    describeAccess: (userId) => services.userAuthz.get(userId),
  });
  await server.register(accountPages, { identity: services.identity });
  await server.register(sessionRoutes, {
    sessions: services.sessions,
    audit: services.audit,
    requireAuthentication: authorization.requireAuthentication,
  });
  await server.register(adminUserRoutes, {
    db,
    identity: services.identity,
    sessions: services.sessions,
    authz: services.authz,
    audit: services.audit,
    requirePermission: authorization.requirePermission,
  });
  await server.register(authzRoutes, {
    service: services.authz,
    requirePermission: authorization.requirePermission,
  });
  await server.register(auditRoutes, { db, authorize });
  await server.register(revocationRoutes, {
    service: services.revocation,
    requirePermission: authorization.requirePermission,
  });
}

export async function createGatehouse(config: Config, options: CreateOptions = {}): Promise<Gatehouse> {
  const context = await openContext(config, options);
  const services = createServices(context);
  try {
    await services.start();
    const server = await createHttpServer(config, context.logger);
    await registerRoutes(server, context, services);
    const metricsServer =
      config.metricsPort !== undefined
        ? await startMetricsServer(services.metrics.registry, config.metricsPort, config.host)
        : undefined;

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
          await services
            .stop()
            .catch((error) => context.logger.error({ err: error }, 'error while stopping services'));
          await Promise.allSettled([metricsServer?.close(), context.state.close(), context.db.close()]);
        }
      })();
      return closing;
    };
    return { ...context, server, services, close };
  } catch (error) {
    await services.stop().catch(() => {});
    await Promise.allSettled([context.state.close(), context.db.close()]);
    throw error;
  }
}
