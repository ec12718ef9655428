import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, beforeEach, describe, it } from 'node:test';
import { backends, dropSchema, uniqueSchema } from '../../test/support/backends.ts';
import type { AuditEvent, AuditLog } from '../audit/audit-log.ts';
import { DomainError, type ProblemKind } from '../errors.ts';
import { type Database, openDatabase } from '../storage/index.ts';
import { migrate } from '../storage/migrate.ts';
import { AuthzService } from './authz-service.ts';

/** Test double for the audit interface: keeps events in memory. */
class MemoryAuditLog implements AuditLog {
  events: AuditEvent[] = [];
  record(event: AuditEvent): void {
    this.events.push(event);
  }
  async flush(): Promise<void> {}
}

interface HookCall {
  userIds: string[];
  reason: string;
}

async function rejectsWith(
  promise: Promise<unknown>,
  kind: ProblemKind,
  detail?: RegExp,
): Promise<DomainError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof DomainError, `expected DomainError(${kind}), got ${String(caught)}`);
  assert.equal(caught.kind, kind, caught.message);
  if (detail) assert.match(caught.detail ?? '', detail);
  return caught;
}

const sorted = (values: string[]) => [...values].sort();

for (const backend of backends()) {
  describe(`authz on ${backend.name}`, () => {
    const schema = uniqueSchema();
    let db: Database;
    let audit: MemoryAuditLog;
    let hookCalls: HookCall[];
    let service: AuthzService;
    let admin: string;

    const createUser = async () => {
      const { rows } = await db.query<{ id: string }>('INSERT INTO users (email) VALUES ($1) RETURNING id', [
        `${randomUUID()}@example.test`,
      ]);
      return (rows[0] as { id: string }).id;
    };
    let roleCounter = 0;
    const roleName = (prefix = 'role') => `${prefix}-${++roleCounter}-${randomUUID().slice(0, 8)}`;

    before(async () => {
      db = await openDatabase({ databaseUrl: backend.databaseUrl, dataDir: null, schema });
      await migrate(db);
      audit = new MemoryAuditLog();
      hookCalls = [];
      service = new AuthzService(db, {
        audit,
        onPermissionsReduced: async (userIds, reason) => {
          hookCalls.push({ userIds, reason });
        },
      });
      admin = await createUser();
    });
    after(async () => {
      await db.close();
      await dropSchema({ DATABASE_URL: backend.databaseUrl, GATEHOUSE_DATABASE_SCHEMA: schema });
    });
    beforeEach(() => {
      audit.events = [];
      hookCalls.length = 0;
    });

    it('seeds the builtin roles', async () => {
      const roles = await service.listRoles();
      const byName = new Map(roles.map((role) => [role.name, role]));
      assert.deepEqual(byName.get('admin')?.permissions, ['*']);
      assert.deepEqual(byName.get('premium')?.permissions, [
        'inference:heavy',
        'inference:run',
        'keys:manage:own',
        'models:read',
      ]);
      assert.deepEqual(byName.get('user')?.permissions, ['inference:run', 'keys:manage:own', 'models:read']);
      for (const name of ['admin', 'premium', 'user']) {
        assert.equal(byName.get(name)?.builtin, true, name);
        assert.ok(byName.get(name)?.createdAt instanceof Date);
      }
      assert.deepEqual((await service.getRole('premium')).permissions, byName.get('premium')?.permissions);
    });

    it('a user with several roles gets the union of their permissions, sorted', async () => {
      const user = await createUser();
      assert.deepEqual(await service.getUserAuthz(user), { roles: [], permissions: [] });
      assert.equal(await service.assignRole(user, 'user', admin), true);
      assert.equal(await service.assignRole(user, 'premium', admin), true);
      const name = roleName();
      await service.createRole({ name, permissions: ['models:predict:llama-3-8b', 'models:read'] }, admin);
      await service.assignRole(user, name, admin);
      assert.deepEqual(await service.getUserAuthz(user), {
        roles: sorted(['premium', 'user', name]),
        permissions: [
          'inference:heavy',
          'inference:run',
          'keys:manage:own',
          'models:predict:llama-3-8b',
          'models:read',
        ],
      });
    });

    it('unknown or malformed user ids have no roles', async () => {
      assert.deepEqual(await service.getUserAuthz(randomUUID()), { roles: [], permissions: [] });
      assert.deepEqual(await service.getUserAuthz('not-a-uuid'), { roles: [], permissions: [] });
    });

    it('a role without permissions still counts as a role', async () => {
      const user = await createUser();
      const name = roleName('empty');
      await service.createRole({ name, permissions: [] }, admin);
      await service.assignRole(user, name, admin);
      assert.deepEqual(await service.getUserAuthz(user), { roles: [name], permissions: [] });
    });

    describe('role CRUD', () => {
      it('creates, reads, lists; records role.created', async () => {
        const name = roleName('ds');
        const role = await service.createRole(
          { name, description: 'Data science', permissions: ['models:*', 'datasets:read', 'models:*'] },
          admin,
          { ip: '203.0.113.9', userAgent: 'test', requestId: 'req-1' },
        );
        assert.equal(role.name, name);
        assert.equal(role.description, 'Data science');
        assert.equal(role.builtin, false);
        assert.deepEqual(role.permissions, ['datasets:read', 'models:*']);
        assert.deepEqual(await service.getRole(name), role);
        assert.ok((await service.listRoles()).some((listed) => listed.name === name));
        assert.deepEqual(audit.events, [
          {
            type: 'role.created',
            outcome: 'success',
            actorId: admin,
            subjectId: null,
            ip: '203.0.113.9',
            userAgent: 'test',
            requestId: 'req-1',
            details: { role: name, permissions: ['datasets:read', 'models:*'] },
          },
        ]);
        assert.deepEqual(hookCalls, []);
      });

      it('defaults the description to empty', async () => {
        const role = await service.createRole({ name: roleName(), permissions: ['models:read'] }, admin);
        assert.equal(role.description, '');
      });

      it('rejects a duplicate name with 409', async () => {
        const name = roleName();
        await service.createRole({ name, permissions: [] }, admin);
        await rejectsWith(service.createRole({ name, permissions: ['models:read'] }, admin), 'conflict');
        await rejectsWith(service.createRole({ name: 'admin', permissions: [] }, admin), 'conflict');
        assert.deepEqual((await service.getRole(name)).permissions, []);
      });

      it('rejects invalid names and permissions with field errors, naming each', async () => {
        const error = await rejectsWith(
          service.createRole(
            { name: 'Bad Name', permissions: ['models:read', '*:read', 'models:*:x', 'Models:read'] },
            admin,
          ),
          'validation-error',
        );
        const pointers = (error.extensions.errors as { pointer: string }[]).map((problem) => problem.pointer);
        assert.deepEqual(pointers, ['/name', '/permissions/1', '/permissions/2', '/permissions/3']);
        await rejectsWith(
          service.createRole({ name: roleName(), description: 'x'.repeat(501), permissions: [] }, admin),
          'validation-error',
        );
        assert.equal(audit.events.length, 0);
      });

      it('unknown roles are 404', async () => {
        await rejectsWith(service.getRole('no-such-role'), 'not-found');
        await rejectsWith(service.updateRole('no-such-role', { description: 'x' }, admin), 'not-found');
        await rejectsWith(service.deleteRole('no-such-role', admin), 'not-found');
      });

      it('updates the description and permissions; records role.updated', async () => {
        const name = roleName();
        const created = await service.createRole({ name, permissions: ['models:read'] }, admin);
        audit.events = [];
        const updated = await service.updateRole(
          name,
          { description: 'New', permissions: ['models:read', 'models:predict'] },
          admin,
        );
        assert.equal(updated.description, 'New');
        assert.deepEqual(updated.permissions, ['models:predict', 'models:read']);
        assert.ok(updated.updatedAt.getTime() >= created.updatedAt.getTime());
        assert.equal(audit.events.length, 1);
        assert.equal(audit.events[0]?.type, 'role.updated');
        assert.equal(audit.events[0]?.actorId, admin);
        assert.deepEqual(audit.events[0]?.details, {
          role: name,
          descriptionChanged: true,
          added: ['models:predict'],
          removed: [],
          affectedUsers: 0,
        });
      });

      it('an update that changes nothing records nothing', async () => {
        const name = roleName();
        await service.createRole({ name, description: 'd', permissions: ['models:read'] }, admin);
        audit.events = [];
        await service.updateRole(name, { description: 'd', permissions: ['models:read'] }, admin);
        assert.deepEqual(audit.events, []);
      });

      it('renames a custom role; a taken name is 409', async () => {
        const name = roleName();
        const other = roleName();
        await service.createRole({ name, permissions: [] }, admin);
        await service.createRole({ name: other, permissions: [] }, admin);
        await rejectsWith(service.updateRole(name, { name: other }, admin), 'conflict');
        const renamed = roleName('renamed');
        assert.equal((await service.updateRole(name, { name: renamed }, admin)).name, renamed);
        await rejectsWith(service.getRole(name), 'not-found');
      });

      it('deletes a custom role; records role.deleted', async () => {
        const name = roleName();
        await service.createRole({ name, permissions: ['models:read'] }, admin);
        audit.events = [];
        await service.deleteRole(name, admin);
        await rejectsWith(service.getRole(name), 'not-found');
        assert.deepEqual(
          audit.events.map((event) => [event.type, event.actorId, event.details]),
          [['role.deleted', admin, { role: name, permissions: ['models:read'], affectedUsers: 0 }]],
        );
        assert.deepEqual(hookCalls, []);
      });
    });

    describe('builtin roles', () => {
      it('cannot be deleted', async () => {
        for (const name of ['admin', 'premium', 'user']) {
          await rejectsWith(service.deleteRole(name, admin), 'conflict', /builtin/);
        }
        assert.equal((await service.listRoles()).filter((role) => role.builtin).length, 3);
      });

      it('cannot be renamed', async () => {
        await rejectsWith(service.updateRole('premium', { name: 'gold' }, admin), 'conflict', /renamed/);
        await rejectsWith(service.updateRole('admin', { name: 'root' }, admin), 'conflict');
        await rejectsWith(service.getRole('gold'), 'not-found');
        // "Renaming" to its own name is no rename.
        assert.equal((await service.updateRole('user', { name: 'user' }, admin)).name, 'user');
      });

      it("admin's permissions cannot be changed, its description can", async () => {
        await rejectsWith(
          service.updateRole('admin', { permissions: ['models:*'] }, admin),
          'conflict',
          /admin/,
        );
        await rejectsWith(
          service.updateRole('admin', { permissions: ['*', 'models:read'] }, admin),
          'conflict',
        );
        await rejectsWith(service.updateRole('admin', { permissions: [] }, admin), 'conflict');
        assert.deepEqual((await service.getRole('admin')).permissions, ['*']);
        const role = await service.updateRole(
          'admin',
          { description: 'Operators', permissions: ['*'] },
          admin,
        );
        assert.equal(role.description, 'Operators');
        assert.deepEqual(role.permissions, ['*']);
      });

      it("premium's permissions can be changed (and are restored here)", async () => {
        const before = (await service.getRole('premium')).permissions;
        const changed = await service.updateRole(
          'premium',
          { permissions: [...before, 'models:predict'] },
          admin,
        );
        assert.deepEqual(changed.permissions, sorted([...before, 'models:predict']));
        await service.updateRole('premium', { permissions: before }, admin);
        assert.deepEqual((await service.getRole('premium')).permissions, before);
      });
    });

    describe('assigning and removing roles', () => {
      it('assigns once, records role.assigned with actor and subject; no revocation', async () => {
        const user = await createUser();
        assert.equal(await service.assignRole(user, 'user', admin), true);
        assert.equal(await service.assignRole(user, 'user', admin), false);
        assert.deepEqual(
          audit.events.map((event) => [event.type, event.actorId, event.subjectId, event.details]),
          [['role.assigned', admin, user, { role: 'user' }]],
        );
        const grants = (await service.getUserRoles(user)).grants;
        assert.equal(grants.length, 1);
        assert.equal(grants[0]?.role, 'user');
        assert.equal(grants[0]?.grantedBy, admin);
        assert.ok(grants[0]?.grantedAt instanceof Date);
        assert.deepEqual(hookCalls, []);
      });

      it('unknown users and roles are 404', async () => {
        const user = await createUser();
        await rejectsWith(service.assignRole(randomUUID(), 'user', admin), 'not-found', /user/);
        await rejectsWith(service.assignRole('not-a-uuid', 'user', admin), 'not-found', /user/);
        await rejectsWith(service.assignRole(user, 'no-such-role', admin), 'not-found', /role/);
        await rejectsWith(service.removeRole(randomUUID(), 'user', admin), 'not-found');
        await rejectsWith(service.removeRole(user, 'no-such-role', admin), 'not-found');
        await rejectsWith(service.removeRole(user, 'user', admin), 'not-found', /does not hold/);
        await rejectsWith(service.getUserRoles(randomUUID()), 'not-found');
        await rejectsWith(service.setUserRoles(randomUUID(), ['user'], admin), 'not-found');
        assert.deepEqual(audit.events, []);
        assert.deepEqual(hookCalls, []);
      });

      it('removing a role revokes exactly that user, even if other roles cover its permissions', async () => {
        const user = await createUser();
        const bystander = await createUser();
        await service.assignRole(user, 'user', admin);
        await service.assignRole(user, 'premium', admin);
        await service.assignRole(bystander, 'user', admin);
        audit.events = [];
        await service.removeRole(user, 'user', admin);
        // The roles claim shrank, so the user's tokens go even though premium covers the permissions.
        assert.deepEqual(hookCalls, [{ userIds: [user], reason: 'role user removed' }]);
        assert.deepEqual(
          audit.events.map((event) => [event.type, event.actorId, event.subjectId, event.details]),
          [['role.removed', admin, user, { role: 'user' }]],
        );
        assert.deepEqual((await service.getUserAuthz(user)).roles, ['premium']);
        assert.deepEqual((await service.getUserAuthz(bystander)).roles, ['user']);
      });

      it('setUserRoles replaces the set; revokes only when something is taken away', async () => {
        const user = await createUser();
        const custom = roleName();
        await service.createRole({ name: custom, permissions: ['datasets:read'] }, admin);
        audit.events = [];

        assert.deepEqual(await service.setUserRoles(user, ['user', custom, 'user'], admin), {
          added: sorted(['user', custom]),
          removed: [],
        });
        assert.deepEqual(hookCalls, []);
        assert.deepEqual(
          sorted(audit.events.map((event) => `${event.type}:${event.details?.role}`)),
          sorted(['role.assigned:user', `role.assigned:${custom}`]),
        );

        audit.events = [];
        assert.deepEqual(await service.setUserRoles(user, ['premium', custom], admin), {
          added: ['premium'],
          removed: ['user'],
        });
        assert.deepEqual(hookCalls, [{ userIds: [user], reason: 'roles user removed' }]);
        assert.deepEqual(
          audit.events.map((event) => [event.type, event.subjectId, event.details?.role]),
          [
            ['role.assigned', user, 'premium'],
            ['role.removed', user, 'user'],
          ],
        );
        assert.deepEqual((await service.getUserAuthz(user)).roles, sorted(['premium', custom]));

        hookCalls.length = 0;
        assert.deepEqual(await service.setUserRoles(user, [], admin), {
          added: [],
          removed: sorted(['premium', custom]),
        });
        assert.deepEqual(hookCalls, [
          { userIds: [user], reason: `roles ${sorted(['premium', custom]).join(', ')} removed` },
        ]);
        assert.deepEqual(await service.getUserAuthz(user), { roles: [], permissions: [] });
      });

      it('setUserRoles with an unknown role changes nothing', async () => {
        const user = await createUser();
        await service.assignRole(user, 'user', admin);
        audit.events = [];
        await rejectsWith(
          service.setUserRoles(user, ['premium', 'no-such-role'], admin),
          'not-found',
          /no-such-role/,
        );
        assert.deepEqual((await service.getUserAuthz(user)).roles, ['user']);
        assert.deepEqual(audit.events, []);
        assert.deepEqual(hookCalls, []);
      });
    });

    describe('revoking live tokens when permissions shrink', () => {
      it('permission removal revokes exactly the holders who lose it', async () => {
        const role = roleName('team');
        const helper = roleName('helper');
        await service.createRole({ name: role, permissions: ['models:predict:llama', 'models:read'] }, admin);
        await service.createRole({ name: helper, permissions: ['models:predict'] }, admin);
        const [loses, keepsViaAdmin, keepsViaOtherRole, notHolder] = [
          await createUser(),
          await createUser(),
          await createUser(),
          await createUser(),
        ];
        const alsoLoses = await createUser();
        for (const user of [loses, alsoLoses, keepsViaAdmin, keepsViaOtherRole]) {
          await service.assignRole(user, role, admin);
        }
        await service.assignRole(keepsViaAdmin, 'admin', admin);
        await service.assignRole(keepsViaOtherRole, helper, admin);
        await service.assignRole(notHolder, 'user', admin);
        hookCalls.length = 0;

        // models:predict:llama is still granted by `*` (admin) and by models:predict (helper).
        await service.updateRole(role, { permissions: ['models:read'] }, admin);
        assert.deepEqual(hookCalls, [
          { userIds: sorted([loses, alsoLoses]), reason: `permissions removed from role ${role}` },
        ]);
        assert.equal(audit.events.at(-1)?.details?.affectedUsers, 2);
        assert.deepEqual((await service.getUserAuthz(loses)).permissions, ['models:read']);
      });

      it('a permission removal no holder notices calls no hook', async () => {
        const role = roleName();
        await service.createRole({ name: role, permissions: ['models:*', 'models:read'] }, admin);
        const user = await createUser();
        await service.assignRole(user, role, admin);
        // models:read is still granted by models:* in the same role.
        await service.updateRole(role, { permissions: ['models:*'] }, admin);
        assert.deepEqual(hookCalls, []);
        // Narrowing models:* to models:read is a loss.
        await service.updateRole(role, { permissions: ['models:read'] }, admin);
        assert.deepEqual(hookCalls, [{ userIds: [user], reason: `permissions removed from role ${role}` }]);
      });

      it('additions never call the hook', async () => {
        const role = roleName();
        await service.createRole({ name: role, permissions: ['models:read'] }, admin);
        const user = await createUser();
        await service.assignRole(user, role, admin);
        await service.updateRole(
          role,
          { permissions: ['models:read', 'models:predict', 'datasets:*'] },
          admin,
        );
        await service.updateRole(role, { description: 'more' }, admin);
        await service.assignRole(user, 'premium', admin);
        await service.setUserRoles(user, [role, 'premium', 'user'], admin);
        assert.deepEqual(hookCalls, []);
      });

      it('deleting a role revokes exactly its holders', async () => {
        const role = roleName();
        await service.createRole({ name: role, permissions: ['models:read'] }, admin);
        const [a, b, other] = [await createUser(), await createUser(), await createUser()];
        await service.assignRole(a, role, admin);
        await service.assignRole(b, role, admin);
        await service.assignRole(b, 'user', admin);
        await service.assignRole(other, 'user', admin);
        audit.events = [];
        await service.deleteRole(role, admin);
        assert.deepEqual(hookCalls, [{ userIds: sorted([a, b]), reason: `role ${role} deleted` }]);
        assert.deepEqual(await service.getUserAuthz(a), { roles: [], permissions: [] });
        assert.deepEqual((await service.getUserAuthz(b)).roles, ['user']);
        assert.deepEqual(
          audit.events.map((event) => [event.type, event.details?.affectedUsers]),
          [['role.deleted', 2]],
        );
      });

      it('renaming a role revokes its holders (their roles claim changes)', async () => {
        const role = roleName();
        await service.createRole({ name: role, permissions: ['models:read'] }, admin);
        const user = await createUser();
        await service.assignRole(user, role, admin);
        const renamed = roleName('renamed');
        await service.updateRole(role, { name: renamed }, admin);
        assert.deepEqual(hookCalls, [{ userIds: [user], reason: `role ${role} renamed to ${renamed}` }]);
        assert.deepEqual((await service.getUserAuthz(user)).roles, [renamed]);
      });

      it('deleting a user removes their grants (cascade)', async () => {
        const user = await createUser();
        await service.assignRole(user, 'premium', admin);
        await db.query('DELETE FROM users WHERE id = $1', [user]);
        assert.deepEqual(await service.getUserAuthz(user), { roles: [], permissions: [] });
      });
    });
  });
}
