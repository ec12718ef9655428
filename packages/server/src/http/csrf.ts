import type { FastifyInstance } from 'fastify';
import { DomainError } from '../errors.ts';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * CSRF defence for cookie-authenticated requests: a state-changing request must come from an
 * allow-listed origin (our public URL and GATEHOUSE_CORS_ORIGINS). Browsers always send
 * Origin on cross-site POSTs and Sec-Fetch-Site on modern ones; a request carrying our
 * cookie with neither cannot be vouched for and is refused. Requests authenticated with an
 * Authorization header are exempt: browsers never attach it by themselves.
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
  server.addHook('onRequest', async (request) => {
    if (SAFE_METHODS.has(request.method) || request.headers.authorization) return;
    const origin = request.headers.origin;
    if (origin !== undefined) {
      if (!allowed.has(origin)) throw reject();
      return;
    }
    const site = request.headers['sec-fetch-site'];
    if (site !== undefined) {
      if (site !== 'same-origin' && site !== 'none') throw reject();
      return;
    }
    const cookie = request.headers.cookie;
    if (cookie?.includes(`${options.sessionCookieName}=`)) throw reject();
  });
}
