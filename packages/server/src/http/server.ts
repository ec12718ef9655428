import cors from '@fastify/cors';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Config } from '../config/config.ts';
import type { Logger } from '../logging/logger.ts';
import { registerJsonBodyParser } from './json-body.ts';
import { registerOpenApi } from './openapi.ts';
import { handleError, sendProblem } from './problem.ts';
import {
  AccessLogController,
  type CompletionListener,
  lazyChildLogger,
  requestId,
} from './request-context.ts';
import { registerResponseHeaders } from './security-headers.ts';
import { validatorCompiler } from './validation.ts';

export type HttpServer = FastifyInstance;

declare module 'fastify' {
  interface FastifyInstance {
    /** Runs `listener` once per finished request, on every route (metrics); cheaper than an onResponse hook. */
    onRequestCompleted(listener: CompletionListener): void;
  }
}

/**
 * The HTTP shell shared by every domain: errors as problem+json, request ids, access logs,
 * security headers, CORS, strict body validation and the OpenAPI document. Domains add
 * their routes as plugins afterwards.
 */
export async function createHttpServer(config: Config, logger: Logger): Promise<HttpServer> {
  const logController = new AccessLogController(logger);
  const server = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    logController,
    childLoggerFactory: (parent, bindings, options) =>
      lazyChildLogger(parent, bindings, options as Record<string, unknown>),
    genReqId: requestId,
    bodyLimit: config.bodyLimitBytes,
    trustProxy: config.trustProxy,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    routerOptions: { ignoreTrailingSlash: false, maxParamLength: 200 },
  });

  server.decorate('onRequestCompleted', (listener: CompletionListener) =>
    logController.onCompleted(listener),
  );
  server.setValidatorCompiler(validatorCompiler);
  server.setErrorHandler(handleError);
  server.setNotFoundHandler((request, reply) =>
    sendProblem(reply, 'not-found', `No route for ${request.method} ${request.url.split('?')[0]}`),
  );
  // Only JSON bodies: a text/plain body would bypass schema expectations and CSRF preflights.
  server.removeContentTypeParser('text/plain');
  registerJsonBodyParser(server);

  registerResponseHeaders(server, config.secureTransport);
  // No allow-listed origins (the default): no cross-origin reads at all, and no CORS hook on
  // every request either.
  if (config.corsOrigins.length > 0) {
    await server.register(cors, {
      origin: config.corsOrigins,
      credentials: true,
      methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
      allowedHeaders: ['Authorization', 'Content-Type', 'X-API-Key', 'X-Request-Id'],
      exposedHeaders: ['X-Request-Id', 'Retry-After', 'WWW-Authenticate'],
      maxAge: 600,
    });
  }
  await registerOpenApi(server, config.publicUrl);
  return server;
}
