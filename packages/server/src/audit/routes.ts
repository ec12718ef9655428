import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { type Static, Type } from 'typebox';
import { DomainError } from '../errors.ts';
import type { Queryable } from '../storage/database.ts';
import { AuditStore, DEFAULT_PAGE_SIZE, InvalidCursorError, MAX_PAGE_SIZE } from './audit-store.ts';

export interface AuditRoutesOptions {
  /** Where the audit trail is read from (the primary, or a replica). */
  db: Queryable;
  /** Throws DomainError('unauthorized' | 'forbidden') unless the caller holds `permission`. */
  authorize: (request: FastifyRequest, permission: string) => Promise<void>;
}

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) =>
  Type.Union([schema, Type.Null()]);

const AuditQuery = Type.Object(
  {
    user_id: Type.Optional(
      Type.String({ format: 'uuid', description: 'Events where this user is the actor or the subject' }),
    ),
    type: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 200,
        description: "Event type; a value ending in '.' matches by prefix (e.g. `login.`)",
      }),
    ),
    from: Type.Optional(Type.String({ format: 'date-time', description: 'Earliest time, inclusive' })),
    to: Type.Optional(Type.String({ format: 'date-time', description: 'Latest time, exclusive' })),
    cursor: Type.Optional(Type.String({ maxLength: 128, description: 'next_cursor from the previous page' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PAGE_SIZE, default: DEFAULT_PAGE_SIZE })),
  },
  { additionalProperties: false },
);

const AuditItem = Type.Object({
  id: Type.String({ description: 'Event id (a decimal integer, increasing with insertion)' }),
  occurred_at: Type.String({ format: 'date-time' }),
  type: Type.String(),
  outcome: Type.Union([Type.Literal('success'), Type.Literal('failure')]),
  actor_id: Nullable(Type.String({ format: 'uuid' })),
  subject_id: Nullable(Type.String({ format: 'uuid' })),
  ip: Nullable(Type.String()),
  user_agent: Nullable(Type.String()),
  request_id: Nullable(Type.String()),
  details: Type.Object({}, { additionalProperties: true }),
});

const AuditPageSchema = Type.Object({
  items: Type.Array(AuditItem),
  next_cursor: Nullable(Type.String()),
});

function fieldError(pointer: string, detail: string): DomainError {
  return new DomainError('validation-error', '1 field(s) failed validation', {
    extensions: { errors: [{ pointer: `querystring:${pointer}`, detail }] },
  });
}

/** GET /v1/admin/audit: the audit trail, newest first, for operators holding audit:read. */
export const auditRoutes: FastifyPluginAsync<AuditRoutesOptions> = async (server, { db, authorize }) => {
  const store = new AuditStore(db);

  server.get<{ Querystring: Static<typeof AuditQuery> }>(
    '/v1/admin/audit',
    {
      schema: {
        tags: ['audit'],
        summary: 'List audit events, newest first (cursor-paginated)',
        security: [{ bearer: [] }],
        querystring: AuditQuery,
        response: { 200: AuditPageSchema },
      },
      preHandler: async (request) => {
        await authorize(request, 'audit:read');
      },
    },
    async (request) => {
      const { user_id, type, from, to, cursor, limit } = request.query;
      const fromDate = from ? new Date(from) : undefined;
      const toDate = to ? new Date(to) : undefined;
      if (fromDate && toDate && fromDate > toDate) throw fieldError('/from', 'must not be after `to`');
      try {
        const page = await store.list({ userId: user_id, type, from: fromDate, to: toDate, cursor, limit });
        return {
          items: page.items.map((item) => ({
            id: String(item.id),
            occurred_at: item.occurredAt.toISOString(),
            type: item.type,
            outcome: item.outcome,
            actor_id: item.actorId,
            subject_id: item.subjectId,
            ip: item.ip,
            user_agent: item.userAgent,
            request_id: item.requestId,
            details: item.details,
          })),
          next_cursor: page.nextCursor,
        };
      } catch (error) {
        if (error instanceof InvalidCursorError) {
          throw fieldError('/cursor', 'is not a cursor returned by this endpoint');
        }
        throw error;
      }
    },
  );
};
