import type { FastifyPluginAsync, preHandlerAsyncHookHandler } from 'fastify';
import { Type } from 'typebox';
import type { AuditLog } from '../audit/audit-log.ts';
import type { AuthzService } from '../authz/authz-service.ts';
import { DomainError } from '../errors.ts';
import { requestMeta } from '../http/request-meta.ts';
import type { SessionService } from '../sessions/session-service.ts';
import type { Database } from '../storage/database.ts';
import { type IdentityService, publicUser } from './identity-service.ts';
import * as S from './schemas.ts';
import * as users from './user-store.ts';

export interface AdminUserRoutesOptions {
  db: Database;
  identity: IdentityService;
  sessions: SessionService;
  authz: AuthzService;
  audit: AuditLog;
  requirePermission: (permission: string) => preHandlerAsyncHookHandler;
}

const AdminUser = Type.Intersect([S.User, Type.Object({ roles: Type.Array(Type.String()) })]);

function encodeCursor(email: string): string {
  return Buffer.from(email, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): string {
  const email = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!email.includes('@')) {
    throw new DomainError('validation-error', 'The cursor is not valid', {
      extensions: {
        errors: [{ pointer: 'querystring:/cursor', detail: 'is not a cursor from a previous page' }],
      },
    });
  }
  return email;
}

/** User administration (permission users:manage). */
export const adminUserRoutes: FastifyPluginAsync<AdminUserRoutesOptions> = async (server, options) => {
  const { db, identity, sessions, authz, audit } = options;
  const tags = ['admin'];
  const preHandler = options.requirePermission('users:manage');
  const withRoles = async (row: users.UserRow) => ({
    ...publicUser(row),
    roles: (await authz.getUserAuthz(row.id)).roles,
  });

  server.get(
    '/v1/admin/users',
    {
      preHandler,
      schema: {
        tags,
        summary: 'Search users',
        querystring: Type.Object(
          {
            q: Type.Optional(Type.String({ maxLength: 320, description: 'Substring of email or name' })),
            status: Type.Optional(Type.Union([Type.Literal('active'), Type.Literal('disabled')])),
            cursor: Type.Optional(Type.String({ maxLength: 500 })),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            items: Type.Array(S.User),
            next_cursor: Type.Union([Type.String(), Type.Null()]),
          }),
        },
      },
    },
    async (request) => {
      const query = request.query as {
        q?: string;
        status?: 'active' | 'disabled';
        cursor?: string;
        limit?: number;
      };
      const limit = query.limit ?? 50;
      const rows = await users.searchUsers(db, {
        ...(query.q ? { query: query.q } : {}),
        ...(query.status ? { status: query.status } : {}),
        ...(query.cursor ? { after: decodeCursor(query.cursor) } : {}),
        limit: limit + 1,
      });
      const page = rows.slice(0, limit);
      const last = page.at(-1);
      return {
        items: page.map(publicUser),
        next_cursor: rows.length > limit && last ? encodeCursor(last.email) : null,
      };
    },
  );

  server.get(
    '/v1/admin/users/:id',
    {
      preHandler,
      schema: {
        tags,
        summary: 'One user, with roles',
        params: Type.Object({ id: Type.String({ format: 'uuid' }) }),
        response: { 200: AdminUser },
      },
    },
    async (request) => withRoles(await identity.getUser((request.params as { id: string }).id)),
  );

  server.patch(
    '/v1/admin/users/:id',
    {
      preHandler,
      schema: {
        tags,
        summary: 'Disable or enable a user, set roles, mark verified',
        description: 'Disabling ends every session and token of the user at once.',
        params: Type.Object({ id: Type.String({ format: 'uuid' }) }),
        body: Type.Object(
          {
            status: Type.Optional(Type.Union([Type.Literal('active'), Type.Literal('disabled')])),
            roles: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: 50 })),
            emailVerified: Type.Optional(Type.Boolean()),
            name: Type.Optional(S.Name),
          },
          { additionalProperties: false, minProperties: 1 },
        ),
        response: { 200: AdminUser },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const body = request.body as {
        status?: 'active' | 'disabled';
        roles?: string[];
        emailVerified?: boolean;
        name?: string | null;
      };
      const actor = (request.principal as NonNullable<typeof request.principal>).userId;
      const meta = requestMeta(request);
      if (body.roles) await authz.setUserRoles(id, body.roles, actor);
      await identity.updateProfile(
        id,
        {
          ...(body.emailVerified !== undefined ? { emailVerified: body.emailVerified } : {}),
          ...(body.name !== undefined ? { name: body.name } : {}),
        },
        actor,
        meta,
      );
      if (body.status) await identity.setStatus(id, body.status, actor, meta);
      return withRoles(await identity.getUser(id));
    },
  );

  server.post(
    '/v1/admin/users/:id/revoke-sessions',
    {
      preHandler,
      schema: {
        tags,
        summary: 'End every session of a user',
        params: Type.Object({ id: Type.String({ format: 'uuid' }) }),
        response: { 200: Type.Object({ revoked: Type.Integer() }) },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      await identity.getUser(id);
      const revoked = await sessions.revokeAll(id, 'revoked_by_admin');
      const actor = (request.principal as NonNullable<typeof request.principal>).userId;
      audit.record({
        type: 'session.revoked',
        outcome: 'success',
        actorId: actor,
        subjectId: id,
        ...requestMeta(request),
        details: { count: revoked.length, by_admin: true },
      });
      return { revoked: revoked.length };
    },
  );
};
