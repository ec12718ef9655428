import type { FastifyPluginAsync, preHandlerAsyncHookHandler } from 'fastify';
import { Type } from 'typebox';
import type { AuditLog } from '../audit/audit-log.ts';
import { DomainError } from '../errors.ts';
import { requestMeta } from '../http/request-meta.ts';
import type { SessionService } from './session-service.ts';

export interface SessionRoutesOptions {
  sessions: SessionService;
  audit: AuditLog;
  requireAuthentication: () => preHandlerAsyncHookHandler;
}

const Session = Type.Object({
  id: Type.String({ format: 'uuid' }),
  ip: Type.Union([Type.String(), Type.Null()]),
  userAgent: Type.Union([Type.String(), Type.Null()]),
  device: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
  lastSeenAt: Type.String({ format: 'date-time' }),
  current: Type.Boolean(),
});

/** A user's own browser sessions: list, end one, end all the others. */
export const sessionRoutes: FastifyPluginAsync<SessionRoutesOptions> = async (
  server,
  { sessions, audit, requireAuthentication },
) => {
  const tags = ['sessions'];
  const preHandler = requireAuthentication();

  server.get(
    '/v1/me/sessions',
    {
      preHandler,
      schema: {
        tags,
        summary: 'List my active sessions',
        response: { 200: Type.Object({ items: Type.Array(Session) }) },
      },
    },
    async (request) => {
      const principal = request.principal as NonNullable<typeof request.principal>;
      const current = principal.via === 'session' ? principal.sessionId : null;
      return { items: await sessions.list(principal.userId, current) };
    },
  );

  server.delete(
    '/v1/me/sessions/:id',
    {
      preHandler,
      schema: {
        tags,
        summary: 'End one of my sessions',
        params: Type.Object({ id: Type.String({ format: 'uuid' }) }),
        response: { 204: Type.Null() },
      },
    },
    async (request, reply) => {
      const principal = request.principal as NonNullable<typeof request.principal>;
      const { id } = request.params as { id: string };
      if (!(await sessions.revoke(principal.userId, id, 'revoked_by_user')))
        throw new DomainError('not-found', 'No such active session');
      audit.record({
        type: 'session.revoked',
        outcome: 'success',
        actorId: principal.userId,
        subjectId: principal.userId,
        ...requestMeta(request),
        details: { session_id: id },
      });
      return reply.code(204).send();
    },
  );

  server.post(
    '/v1/me/sessions/revoke-others',
    {
      preHandler,
      schema: {
        tags,
        summary: 'End all my sessions except this one',
        response: { 200: Type.Object({ revoked: Type.Integer() }) },
      },
    },
    async (request) => {
      const principal = request.principal as NonNullable<typeof request.principal>;
      const keep = principal.via === 'session' ? principal.sessionId : null;
      const revoked = await sessions.revokeOthers(principal.userId, keep, 'revoked_by_user');
      audit.record({
        type: 'session.revoked',
        outcome: 'success',
        actorId: principal.userId,
        subjectId: principal.userId,
        ...requestMeta(request),
        details: { count: revoked.length, others: true },
      });
      return { revoked: revoked.length };
    },
  );
};
