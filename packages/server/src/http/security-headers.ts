import helmet from '@fastify/helmet';
import type { FastifyInstance } from 'fastify';

/**
 * Security headers on every response. API responses are JSON, so the CSP denies everything;
 * the docs UI sets its own, narrower CSP on its routes. HSTS only when we are served over
 * https (sending it over http would be ignored, and misleading in a laptop set-up).
 */
export async function registerSecurityHeaders(
  server: FastifyInstance,
  secureTransport: boolean,
): Promise<void> {
  await server.register(helmet, {
    global: true,
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'none'"],
        frameAncestors: ["'none'"],
        baseUri: ["'none'"],
        formAction: ["'self'"],
      },
    },
    hsts: secureTransport ? { maxAge: 31_536_000, includeSubDomains: true } : false,
    crossOriginOpenerPolicy: { policy: 'same-origin' },
    crossOriginResourcePolicy: { policy: 'same-site' },
    referrerPolicy: { policy: 'no-referrer' },
    frameguard: { action: 'deny' },
    xPoweredBy: true,
  });
}
