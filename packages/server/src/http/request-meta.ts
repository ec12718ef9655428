import type { FastifyRequest } from 'fastify';
import type { RequestMeta } from '../audit/audit-log.ts';

/** The request facts audit events carry. */
export function requestMeta(request: FastifyRequest): RequestMeta {
  const agent = request.headers['user-agent'];
  return {
    ip: request.ip ?? null,
    userAgent: typeof agent === 'string' ? agent.slice(0, 512) : null,
    requestId: request.id,
  };
}
