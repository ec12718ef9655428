import type { FastifyPluginAsync, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { type Static, Type } from 'typebox';
import { DomainError } from '../errors.ts';
import { requestMeta } from '../http/request-meta.ts';
import {
  type AuthzService,
  MAX_ROLE_DESCRIPTION_LENGTH,
  MAX_ROLE_PERMISSIONS,
  type Role,
  type UserRoles,
} from './authz-service.ts';
import { MAX_PERMISSION_LENGTH } from './permissions.ts';
import type { PermissionSource } from './require-permission.ts';

export interface AuthzRoutesOptions {
  service: AuthzService;
  requirePermission: (permission: PermissionSource) => preHandlerAsyncHookHandler;
}

/** The permission every route here requires. */
export const ROLES_MANAGE = 'roles:manage';

const ROLE_NAME = '^[a-z][a-z0-9_-]{0,63}$';
const MAX_ROLES_PER_USER = 64;

const RoleName = Type.String({
  pattern: ROLE_NAME,
  description: 'Lower-case slug, 1-64 characters',
  examples: ['data-science'],
});
const Permission = Type.String({
  minLength: 1,
  maxLength: MAX_PERMISSION_LENGTH,
  description:
    '`resource:action` or `resource:action:resource-id`; wildcards only as `*`, `resource:*`, `resource:action:*`',
  examples: ['models:predict:llama-3-8b'],
});
const Permissions = Type.Array(Permission, { maxItems: MAX_ROLE_PERMISSIONS });
const Description = Type.String({ maxLength: MAX_ROLE_DESCRIPTION_LENGTH });

const RoleSchema = Type.Object({
  name: Type.String(),
  description: Type.String(),
  builtin: Type.Boolean({ description: 'Seeded role: cannot be deleted or renamed' }),
  permissions: Type.Array(Type.String()),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

const UserRolesSchema = Type.Object({
  user_id: Type.String({ format: 'uuid' }),
  roles: Type.Array(Type.String()),
  grants: Type.Array(
    Type.Object({
      role: Type.String(),
      granted_at: Type.String({ format: 'date-time' }),
      granted_by: Type.Union([Type.String({ format: 'uuid' }), Type.Null()]),
    }),
  ),
  permissions: Type.Array(Type.String(), { description: 'Effective permissions: the union over the roles' }),
});

const CreateRoleBody = Type.Object(
  { name: RoleName, description: Type.Optional(Description), permissions: Permissions },
  { additionalProperties: false },
);
const UpdateRoleBody = Type.Object(
  {
    name: Type.Optional(RoleName),
    description: Type.Optional(Description),
    permissions: Type.Optional(
      Type.Array(Permission, { maxItems: MAX_ROLE_PERMISSIONS, description: 'Replaces the set' }),
    ),
  },
  { additionalProperties: false, minProperties: 1 },
);
const SetUserRolesBody = Type.Object(
  { roles: Type.Array(Type.String({ maxLength: 64 }), { maxItems: MAX_ROLES_PER_USER }) },
  { additionalProperties: false },
);
const AssignRoleBody = Type.Object({ role: Type.String({ maxLength: 64 }) }, { additionalProperties: false });

const RoleParams = Type.Object({ name: Type.String({ maxLength: 64 }) });
const UserParams = Type.Object({ id: Type.String({ format: 'uuid' }) });
const UserRoleParams = Type.Object({
  id: Type.String({ format: 'uuid' }),
  role: Type.String({ maxLength: 64 }),
});

function roleBody(role: Role) {
  return {
    name: role.name,
    description: role.description,
    builtin: role.builtin,
    permissions: role.permissions,
    created_at: role.createdAt.toISOString(),
    updated_at: role.updatedAt.toISOString(),
  };
}

function userRolesBody(user: UserRoles) {
  return {
    user_id: user.userId,
    roles: user.grants.map((grant) => grant.role),
    grants: user.grants.map((grant) => ({
      role: grant.role,
      granted_at: grant.grantedAt.toISOString(),
      granted_by: grant.grantedBy,
    })),
    permissions: user.permissions,
  };
}

function actorOf(request: FastifyRequest): string {
  // The hook sets it; a route registered without the hook must fail closed, not act anonymously.
  if (!request.principal) throw new DomainError('unauthorized', 'Authentication is required');
  return request.principal.userId;
}

/** Role administration under /v1/admin (permission roles:manage). */
export const authzRoutes: FastifyPluginAsync<AuthzRoutesOptions> = async (
  server,
  { service, requirePermission },
) => {
  // onRequest, not preHandler: the caller is authenticated and authorized before the body is
  // even parsed, so nobody learns the schema (or gets a 400) without the permission.
  const onRequest = requirePermission(ROLES_MANAGE);
  const tags = ['admin'];
  const security = [{ bearer: [] }];

  server.get(
    '/v1/admin/roles',
    {
      onRequest,
      schema: {
        tags,
        security,
        summary: 'List roles',
        response: { 200: Type.Object({ items: Type.Array(RoleSchema) }) },
      },
    },
    async () => ({ items: (await service.listRoles()).map(roleBody) }),
  );

  server.post<{ Body: Static<typeof CreateRoleBody> }>(
    '/v1/admin/roles',
    {
      onRequest,
      schema: {
        tags,
        security,
        summary: 'Create a role',
        body: CreateRoleBody,
        response: { 201: RoleSchema },
      },
    },
    async (request, reply) => {
      const role = await service.createRole(request.body, actorOf(request), requestMeta(request));
      reply.code(201).header('location', `/v1/admin/roles/${encodeURIComponent(role.name)}`);
      return roleBody(role);
    },
  );

  server.get<{ Params: Static<typeof RoleParams> }>(
    '/v1/admin/roles/:name',
    {
      onRequest,
      schema: { tags, security, summary: 'Get a role', params: RoleParams, response: { 200: RoleSchema } },
    },
    async (request) => roleBody(await service.getRole(request.params.name)),
  );

  server.patch<{ Params: Static<typeof RoleParams>; Body: Static<typeof UpdateRoleBody> }>(
    '/v1/admin/roles/:name',
    {
      onRequest,
      schema: {
        tags,
        security,
        summary: 'Update a role',
        description:
          'Builtin roles cannot be renamed and the admin role keeps its permissions. Removing permissions ' +
          "(or renaming) revokes the live tokens of the users who lose something; additions apply from each user's next token.",
        params: RoleParams,
        body: UpdateRoleBody,
        response: { 200: RoleSchema },
      },
    },
    async (request) =>
      roleBody(
        await service.updateRole(request.params.name, request.body, actorOf(request), requestMeta(request)),
      ),
  );

  server.delete<{ Params: Static<typeof RoleParams> }>(
    '/v1/admin/roles/:name',
    {
      onRequest,
      schema: {
        tags,
        security,
        summary: 'Delete a role',
        description:
          "Builtin roles cannot be deleted. The role's holders lose it and their live tokens are revoked.",
        params: RoleParams,
        response: { 204: Type.Null() },
      },
    },
    async (request, reply) => {
      await service.deleteRole(request.params.name, actorOf(request), requestMeta(request));
      return reply.code(204).send();
    },
  );

  server.get<{ Params: Static<typeof UserParams> }>(
    '/v1/admin/users/:id/roles',
    {
      onRequest,
      schema: {
        tags,
        security,
        summary: "A user's roles and effective permissions",
        params: UserParams,
        response: { 200: UserRolesSchema },
      },
    },
    async (request) => userRolesBody(await service.getUserRoles(request.params.id)),
  );

  server.put<{ Params: Static<typeof UserParams>; Body: Static<typeof SetUserRolesBody> }>(
    '/v1/admin/users/:id/roles',
    {
      onRequest,
      schema: {
        tags,
        security,
        summary: "Replace a user's roles",
        description: "If any role is taken away, the user's live tokens are revoked.",
        params: UserParams,
        body: SetUserRolesBody,
        response: { 200: UserRolesSchema },
      },
    },
    async (request) => {
      await service.setUserRoles(
        request.params.id,
        request.body.roles,
        actorOf(request),
        requestMeta(request),
      );
      return userRolesBody(await service.getUserRoles(request.params.id));
    },
  );

  server.post<{ Params: Static<typeof UserParams>; Body: Static<typeof AssignRoleBody> }>(
    '/v1/admin/users/:id/roles',
    {
      onRequest,
      schema: {
        tags,
        security,
        summary: 'Grant a role to a user',
        description: '201 when newly granted, 200 when the user already held it.',
        params: UserParams,
        body: AssignRoleBody,
        response: { 200: UserRolesSchema, 201: UserRolesSchema },
      },
    },
    async (request, reply) => {
      const granted = await service.assignRole(
        request.params.id,
        request.body.role,
        actorOf(request),
        requestMeta(request),
      );
      reply.code(granted ? 201 : 200);
      return userRolesBody(await service.getUserRoles(request.params.id));
    },
  );

  server.delete<{ Params: Static<typeof UserRoleParams> }>(
    '/v1/admin/users/:id/roles/:role',
    {
      onRequest,
      schema: {
        tags,
        security,
        summary: 'Take a role away from a user',
        description: "The user's live tokens are revoked.",
        params: UserRoleParams,
        response: { 204: Type.Null() },
      },
    },
    async (request, reply) => {
      await service.removeRole(
        request.params.id,
        request.params.role,
        actorOf(request),
        requestMeta(request),
      );
      return reply.code(204).send();
    },
  );
};
