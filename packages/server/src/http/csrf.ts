import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import { DomainError } from '../errors.ts';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * CSRF defence for cookie-authenticated requests: a state-changing request must come from an
 * allow-listed origin (our public URL and GATEHOUSE_CORS_ORIGINS). Browsers always send
 * Origin on cross-site POSTs and Sec-Fetch-Site on modern ones; a request carrying our
 * cookie with neither cannot be vouched for and is refused. Requests authenticated with an
 * Authorization header are exempt: browsers never attach it by themselves.
 *
 * Register it before the routes it guards: it hooks into route registration.
 */
export function registerCsrfProtection(
  server: FastifyInstance,
  options: { allowedOrigins: string[]; sessionCookieName: string },
): void {
  const allowed = new Set(options.allowedOrigins);
  const reject = () =>
    new DomainError('forbidden', 'Cross-site request refused (CSRF protection)', {
      extensions: { reason: 'csrf' },
    });
  const check = (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction) => {
    if (request.headers.authorization) return done();
    const origin = request.headers.origin;
    if (origin !== undefined) return done(allowed.has(origin) ? undefined : reject());
    const site = request.headers['sec-fetch-site'];
    if (site !== undefined) return done(site === 'same-origin' || site === 'none' ? undefined : reject());
    const cookie = request.headers.cookie;
    done(cookie?.includes(`${options.sessionCookieName}=`) ? reject() : undefined);
  };
  // Attached to the state-changing routes only, so reads (most of the traffic) pay nothing.
  server.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (methods.every((method) => SAFE_METHODS.has(method))) return;
    const existing = route.onRequest;
    route.onRequest =
      existing === undefined ? [check] : [check, ...(Array.isArray(existing) ? existing : [existing])];
  });
}
