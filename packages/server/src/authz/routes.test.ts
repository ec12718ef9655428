import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { FastifyRequest } from 'fastify';
import { backends, dropSchema, uniqueSchema } from '../../test/support/backends.ts';
import type { AuditEvent, AuditLog } from '../audit/audit-log.ts';
import { loadConfig } from '../config/config.ts';
import { PROBLEM_BASE } from '../http/problem.ts';
import { createHttpServer, type HttpServer } from '../http/server.ts';
import { createLogger } from '../logging/logger.ts';
import { type Database, openDatabase } from '../storage/index.ts';
import { migrate } from '../storage/migrate.ts';
import { AuthzService } from './authz-service.ts';
import type { AuthenticationResult, Principal } from './principal.ts';
import { createAuthorization } from './require-permission.ts';
import { authzRoutes } from './routes.ts';

class MemoryAuditLog implements AuditLog {
  events: AuditEvent[] = [];
  record(event: AuditEvent): void {
    this.events.push(event);
  }
  async flush(): Promise<void> {}
}

type Response = { statusCode: number; headers: Record<string, unknown>; body: string };

/** The parsed JSON body (any, as in the other HTTP tests: assertions check its shape). */
const json = (response: Response) => JSON.parse(response.body);

function assertProblem(response: Response, status: number, kind: string) {
  assert.equal(response.statusCode, status, response.body);
  assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
  const body = json(response);
  assert.equal(body.type, PROBLEM_BASE + kind);
  return body;
}

for (const backend of backends()) {
  describe(`admin role routes on ${backend.name}`, () => {
    const schema = uniqueSchema();
    let db: Database;
    let server: HttpServer;
    let audit: MemoryAuditLog;
    const reduced: { userIds: string[]; reason: string }[] = [];
    let adminId: string;
    const tokens = new Map<string, AuthenticationResult>();

    const createUser = async () => {
      const { rows } = await db.query<{ id: string }>('INSERT INTO users (email) VALUES ($1) RETURNING id', [
        `${randomUUID()}@example.test`,
      ]);
      return (rows[0] as { id: string }).id;
    };
    const principal = (userId: string, permissions: string[]): Principal => ({
      userId,
      via: 'access_token',
      sessionId: null,
      tokenId: randomUUID(),
      clientId: null,
      roles: [],
      permissions,
      expiresAt: 2_000_000_000,
    });

    const call = (method: string, url: string, payload?: unknown, token: string | null = 'admin') =>
      server.inject({
        method: method as 'GET',
        url,
        ...(payload === undefined ? {} : { payload: payload as object }),
        headers: token ? { authorization: `Bearer ${token}` } : {},
      }) as Promise<Response>;

    before(async () => {
      db = await openDatabase({ databaseUrl: backend.databaseUrl, dataDir: null, schema });
      await migrate(db);
      audit = new MemoryAuditLog();
      const service = new AuthzService(db, {
        audit,
        onPermissionsReduced: async (userIds, reason) => {
          reduced.push({ userIds, reason });
        },
      });
      adminId = await createUser();
      tokens.set('admin', { outcome: 'authenticated', principal: principal(adminId, ['roles:manage']) });
      tokens.set('reader', { outcome: 'authenticated', principal: principal(adminId, ['models:read']) });
      const authorization = createAuthorization(async (request: FastifyRequest) => {
        const header = request.headers.authorization;
        if (!header) return { outcome: 'missing' };
        return tokens.get(header.slice('Bearer '.length)) ?? { outcome: 'invalid', reason: 'unknown token' };
      });
      server = await createHttpServer(loadConfig({ GATEHOUSE_LOG_LEVEL: 'silent' }), createLogger('silent'));
      await server.register(authzRoutes, { service, requirePermission: authorization.requirePermission });
    });
    after(async () => {
      await server.close();
      await db.close();
      await dropSchema({ DATABASE_URL: backend.databaseUrl, GATEHOUSE_DATABASE_SCHEMA: schema });
    });
    beforeEach(() => {
      audit.events = [];
      reduced.length = 0;
    });

    const someUser = '00000000-0000-4000-8000-000000000000';
    const ROUTES: [string, string, unknown][] = [
      ['GET', '/v1/admin/roles', undefined],
      ['POST', '/v1/admin/roles', { name: 'x', permissions: [] }],
      ['GET', '/v1/admin/roles/user', undefined],
      ['PATCH', '/v1/admin/roles/user', { description: 'x' }],
      ['DELETE', '/v1/admin/roles/user', undefined],
      ['GET', `/v1/admin/users/${someUser}/roles`, undefined],
      ['PUT', `/v1/admin/users/${someUser}/roles`, { roles: [] }],
      ['POST', `/v1/admin/users/${someUser}/roles`, { role: 'user' }],
      ['DELETE', `/v1/admin/users/${someUser}/roles/user`, undefined],
    ];

    it('every route: 401 without credentials, 401 invalid_token, 403 without roles:manage', async () => {
      for (const [method, url, payload] of ROUTES) {
        const missing = await call(method, url, payload, null);
        assertProblem(missing, 401, 'unauthorized');
        assert.equal(missing.headers['www-authenticate'], 'Bearer realm="gatehouse"', `${method} ${url}`);
        const invalid = await call(method, url, payload, 'forged');
        assertProblem(invalid, 401, 'unauthorized');
        assert.equal(invalid.headers['www-authenticate'], 'Bearer realm="gatehouse", error="invalid_token"');
        const forbidden = await call(method, url, payload, 'reader');
        assertProblem(forbidden, 403, 'forbidden');
        assert.equal(
          forbidden.headers['www-authenticate'],
          'Bearer realm="gatehouse", error="insufficient_scope", scope="roles:manage"',
        );
      }
      // Nothing was changed by any of them.
      assert.deepEqual(audit.events, []);
    });

    it('authorization comes before body validation', async () => {
      assertProblem(await call('POST', '/v1/admin/roles', { nonsense: 1 }, null), 401, 'unauthorized');
      assertProblem(await call('POST', '/v1/admin/roles', { nonsense: 1 }, 'reader'), 403, 'forbidden');
      assertProblem(await call('POST', '/v1/admin/roles', { nonsense: 1 }), 400, 'validation-error');
    });

    it('GET /v1/admin/roles lists the builtin roles', async () => {
      const response = await call('GET', '/v1/admin/roles');
      assert.equal(response.statusCode, 200, response.body);
      const items = json(response).items as { name: string; builtin: boolean; permissions: string[] }[];
      const admin = items.find((role) => role.name === 'admin');
      assert.deepEqual(admin?.permissions, ['*']);
      assert.equal(admin?.builtin, true);
      assert.deepEqual(
        items.filter((role) => role.builtin).map((role) => role.name),
        ['admin', 'premium', 'user'],
      );
    });

    it('role lifecycle: create 201, get, patch, delete 204; audited with the acting user', async () => {
      const created = await call('POST', '/v1/admin/roles', {
        name: 'data-science',
        description: 'DS team',
        permissions: ['models:predict:llama-3-8b', 'datasets:*'],
      });
      assert.equal(created.statusCode, 201, created.body);
      assert.equal(created.headers.location, '/v1/admin/roles/data-science');
      const body = json(created);
      assert.equal(body.name, 'data-science');
      assert.equal(body.description, 'DS team');
      assert.equal(body.builtin, false);
      assert.deepEqual(body.permissions, ['datasets:*', 'models:predict:llama-3-8b']);
      assert.ok(!Number.isNaN(Date.parse(body.created_at)));
      assert.ok(!Number.isNaN(Date.parse(body.updated_at)));
      assert.deepEqual(Object.keys(body).sort(), [
        'builtin',
        'created_at',
        'description',
        'name',
        'permissions',
        'updated_at',
      ]);

      assert.deepEqual(json(await call('GET', '/v1/admin/roles/data-science')), body);
      assertProblem(
        await call('POST', '/v1/admin/roles', { name: 'data-science', permissions: [] }),
        409,
        'conflict',
      );

      const patched = await call('PATCH', '/v1/admin/roles/data-science', { permissions: ['datasets:*'] });
      assert.equal(patched.statusCode, 200, patched.body);
      assert.deepEqual(json(patched).permissions, ['datasets:*']);

      const deleted = await call('DELETE', '/v1/admin/roles/data-science');
      assert.equal(deleted.statusCode, 204);
      assert.equal(deleted.body, '');
      assertProblem(await call('GET', '/v1/admin/roles/data-science'), 404, 'not-found');

      assert.deepEqual(
        audit.events.map((event) => [event.type, event.actorId]),
        [
          ['role.created', adminId],
          ['role.updated', adminId],
          ['role.deleted', adminId],
        ],
      );
      assert.ok(audit.events.every((event) => typeof event.requestId === 'string'));
    });

    it('invalid permissions are field errors pointing at each one', async () => {
      const response = await call('POST', '/v1/admin/roles', {
        name: 'bad-perms',
        permissions: ['models:read', '*:read', 'mod*', 'models:*:x'],
      });
      const body = assertProblem(response, 400, 'validation-error');
      assert.deepEqual(
        body.errors.map((error: { pointer: string }) => error.pointer),
        ['/permissions/1', '/permissions/2', '/permissions/3'],
      );
      const patch = await call('PATCH', '/v1/admin/roles/user', { permissions: ['Models:read'] });
      assert.deepEqual(
        assertProblem(patch, 400, 'validation-error').errors.map(
          (error: { pointer: string }) => error.pointer,
        ),
        ['/permissions/0'],
      );
    });

    it('bodies are strict: unknown fields, bad names, empty patches are 400', async () => {
      const unknown = await call('POST', '/v1/admin/roles', { name: 'x', permissions: [], builtin: true });
      assert.deepEqual(
        assertProblem(unknown, 400, 'validation-error').errors.map(
          (error: { pointer: string }) => error.pointer,
        ),
        ['/builtin'],
      );
      assertProblem(
        await call('POST', '/v1/admin/roles', { name: 'Bad Name', permissions: [] }),
        400,
        'validation-error',
      );
      assertProblem(await call('PATCH', '/v1/admin/roles/user', {}), 400, 'validation-error');
    });

    it('builtin roles: no delete, no rename, admin keeps *: 409', async () => {
      assertProblem(await call('DELETE', '/v1/admin/roles/premium'), 409, 'conflict');
      assertProblem(await call('PATCH', '/v1/admin/roles/user', { name: 'member' }), 409, 'conflict');
      assertProblem(
        await call('PATCH', '/v1/admin/roles/admin', { permissions: ['models:*'] }),
        409,
        'conflict',
      );
      const described = await call('PATCH', '/v1/admin/roles/premium', { description: 'Paying customers' });
      assert.equal(described.statusCode, 200, described.body);
      assert.equal(json(described).description, 'Paying customers');
    });

    it("user roles: assign 201 then 200, list, replace, remove 204; removal revokes the user's tokens", async () => {
      const user = await createUser();
      const base = `/v1/admin/users/${user}/roles`;
      const empty = await call('GET', base);
      assert.equal(empty.statusCode, 200, empty.body);
      assert.deepEqual(json(empty), { user_id: user, roles: [], grants: [], permissions: [] });

      const assigned = await call('POST', base, { role: 'user' });
      assert.equal(assigned.statusCode, 201, assigned.body);
      assert.deepEqual(json(assigned).roles, ['user']);
      assert.deepEqual(json(assigned).permissions, ['inference:run', 'keys:manage:own', 'models:read']);
      assert.equal(json(assigned).grants[0].granted_by, adminId);
      assert.ok(!Number.isNaN(Date.parse(json(assigned).grants[0].granted_at)));
      assert.equal((await call('POST', base, { role: 'user' })).statusCode, 200);

      const replaced = await call('PUT', base, { roles: ['premium'] });
      assert.equal(replaced.statusCode, 200, replaced.body);
      assert.deepEqual(json(replaced).roles, ['premium']);
      assert.deepEqual(reduced, [{ userIds: [user], reason: 'roles user removed' }]);

      reduced.length = 0;
      const removed = await call('DELETE', `${base}/premium`);
      assert.equal(removed.statusCode, 204, removed.body);
      assert.deepEqual(reduced, [{ userIds: [user], reason: 'role premium removed' }]);
      assert.deepEqual(json(await call('GET', base)).roles, []);
      assertProblem(await call('DELETE', `${base}/premium`), 404, 'not-found');

      assert.deepEqual(
        audit.events.map((event) => [event.type, event.actorId, event.subjectId, event.details?.role]),
        [
          ['role.assigned', adminId, user, 'user'],
          ['role.assigned', adminId, user, 'premium'],
          ['role.removed', adminId, user, 'user'],
          ['role.removed', adminId, user, 'premium'],
        ],
      );
    });

    it('unknown users and roles are 404; a malformed user id is 400', async () => {
      const unknown = `/v1/admin/users/${randomUUID()}/roles`;
      assertProblem(await call('GET', unknown), 404, 'not-found');
      assertProblem(await call('POST', unknown, { role: 'user' }), 404, 'not-found');
      assertProblem(await call('PUT', unknown, { roles: ['user'] }), 404, 'not-found');
      const user = await createUser();
      assertProblem(await call('POST', `/v1/admin/users/${user}/roles`, { role: 'nope' }), 404, 'not-found');
      assertProblem(
        await call('PUT', `/v1/admin/users/${user}/roles`, { roles: ['user', 'nope'] }),
        404,
        'not-found',
      );
      assertProblem(await call('DELETE', `/v1/admin/users/${user}/roles/nope`), 404, 'not-found');
      assertProblem(await call('GET', '/v1/admin/users/not-a-uuid/roles'), 400, 'validation-error');
      assertProblem(await call('GET', '/v1/admin/roles/nope'), 404, 'not-found');
    });

    it('the routes appear in the OpenAPI document under the admin tag', async () => {
      const document = json(await call('GET', '/openapi.json', undefined, null));
      const operation = document.paths['/v1/admin/roles/{name}'].patch;
      assert.deepEqual(operation.tags, ['admin']);
      assert.ok(document.paths['/v1/admin/users/{id}/roles'].put);
    });
  });
}
