import type { AuditEvent, AuditLog, RequestMeta } from '../audit/audit-log.ts';
import { DomainError, type FieldProblem } from '../errors.ts';
import type { Database } from '../storage/database.ts';
import { isUuid } from '../storage/ids.ts';
import {
  deleteRolePermissionsExcept,
  deleteRoleRow,
  deleteUserRoles,
  deleteUserRolesExcept,
  insertRole,
  insertRolePermissions,
  insertUserRoles,
  type RoleRecord,
  selectHoldersLosingPermissions,
  selectRole,
  selectRoleHolders,
  selectRoleIds,
  selectRoles,
  selectUserAuthz,
  selectUserGrants,
  touchRole,
  updateRoleRow,
  userExists,
} from './authz-store.ts';
import { permissionProblem, uniqueSorted } from './permissions.ts';

export interface Role {
  name: string;
  description: string;
  builtin: boolean;
  /** Sorted, unique. */
  permissions: string[];
  createdAt: Date;
  updatedAt: Date;
}

export interface RoleGrant {
  role: string;
  grantedAt: Date;
  /** The user who granted it; null for the system. */
  grantedBy: string | null;
}

export interface UserRoles {
  userId: string;
  /** Sorted by role name. */
  grants: RoleGrant[];
  /** The union of the roles' permissions, sorted. */
  permissions: string[];
}

export interface UserAuthz {
  roles: string[];
  permissions: string[];
}

export interface CreateRoleInput {
  name: string;
  description?: string;
  permissions: readonly string[];
}

export interface UpdateRoleInput {
  /** Rename (not for builtin roles). */
  name?: string;
  description?: string;
  /** Replaces the role's permission set. */
  permissions?: readonly string[];
}

/** Revokes the live tokens of users whose roles or permissions shrank (the token service bumps their epoch). */
export type PermissionsReducedHook = (userIds: string[], reason: string) => Promise<void>;

/** Any committed change to who holds what: `userIds` affected, or null when a role changed for all its holders. */
export type AuthzChangedHook = (userIds: string[] | null) => Promise<void>;

export interface AuthzServiceOptions {
  audit: AuditLog;
  onPermissionsReduced: PermissionsReducedHook;
  /** Caches of users' roles (the session principal) drop what changed. */
  onChanged?: AuthzChangedHook;
}

export const ROLE_NAME_PATTERN = /^[a-z][a-z0-9_-]{0,63}$/;
export const MAX_ROLE_DESCRIPTION_LENGTH = 500;
export const MAX_ROLE_PERMISSIONS = 256;
/** The one role whose permissions are fixed: it is how an operator always gets back in. */
const ADMIN_ROLE = 'admin';

function toRole(record: RoleRecord): Role {
  const { id: _id, ...role } = record;
  return role;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const left = uniqueSorted(a);
  const right = uniqueSorted(b);
  return left.length === right.length && left.every((value, index) => value === right[index]);
}

function validationError(errors: FieldProblem[]): DomainError {
  return new DomainError('validation-error', `${errors.length} field(s) failed validation`, {
    extensions: { errors },
  });
}

function checkName(name: unknown, errors: FieldProblem[]): void {
  if (typeof name !== 'string' || !ROLE_NAME_PATTERN.test(name)) {
    errors.push({
      pointer: '/name',
      detail: 'must be 1-64 lower-case letters, digits, `_` or `-`, starting with a letter',
    });
  }
}

function checkDescription(description: unknown, errors: FieldProblem[]): void {
  if (typeof description !== 'string' || description.length > MAX_ROLE_DESCRIPTION_LENGTH) {
    errors.push({
      pointer: '/description',
      detail: `must be a string of at most ${MAX_ROLE_DESCRIPTION_LENGTH} characters`,
    });
  }
}

function checkPermissions(permissions: unknown, errors: FieldProblem[]): void {
  if (!Array.isArray(permissions)) {
    errors.push({ pointer: '/permissions', detail: 'must be an array of permissions' });
    return;
  }
  if (permissions.length > MAX_ROLE_PERMISSIONS) {
    errors.push({ pointer: '/permissions', detail: `must hold at most ${MAX_ROLE_PERMISSIONS} permissions` });
  }
  permissions.forEach((permission, index) => {
    const problem = permissionProblem(permission);
    if (problem !== null) errors.push({ pointer: `/permissions/${index}`, detail: problem });
  });
}

function notFoundRole(name: string): DomainError {
  return new DomainError('not-found', `No role named ${JSON.stringify(name)}`);
}

function notFoundUser(): DomainError {
  return new DomainError('not-found', 'No such user');
}

/**
 * Roles, their permissions and who holds them. Additions take effect with the next token;
 * anything that shrinks a user's roles or permissions calls `onPermissionsReduced` with exactly
 * those users, after the change is committed, so their live tokens stop working.
 */
export class AuthzService {
  private readonly db: Database;
  private readonly audit: AuditLog;
  private readonly onPermissionsReduced: PermissionsReducedHook;
  private readonly onChanged: AuthzChangedHook;

  constructor(db: Database, options: AuthzServiceOptions) {
    this.db = db;
    this.audit = options.audit;
    this.onPermissionsReduced = options.onPermissionsReduced;
    this.onChanged = options.onChanged ?? (async () => {});
  }

  /** A user's role names and effective permissions (union over roles), both sorted; one query. */
  async getUserAuthz(userId: string): Promise<UserAuthz> {
    if (!isUuid(userId)) return { roles: [], permissions: [] };
    return selectUserAuthz(this.db, userId);
  }

  async listRoles(): Promise<Role[]> {
    return (await selectRoles(this.db)).map(toRole);
  }

  async getRole(name: string): Promise<Role> {
    const role = await selectRole(this.db, name);
    if (!role) throw notFoundRole(name);
    return toRole(role);
  }

  async createRole(input: CreateRoleInput, actorId: string | null = null, meta?: RequestMeta): Promise<Role> {
    const errors: FieldProblem[] = [];
    checkName(input.name, errors);
    if (input.description !== undefined) checkDescription(input.description, errors);
    checkPermissions(input.permissions, errors);
    if (errors.length > 0) throw validationError(errors);
    const permissions = uniqueSorted(input.permissions);

    const role = await this.db.transaction(async (tx) => {
      const id = await insertRole(tx, { name: input.name, description: input.description ?? '' });
      if (id === undefined)
        throw new DomainError('conflict', `A role named ${JSON.stringify(input.name)} exists`);
      await insertRolePermissions(tx, id, permissions);
      return selectRole(tx, input.name);
    });
    if (!role) throw notFoundRole(input.name);
    this.record('role.created', actorId, null, meta, { role: role.name, permissions });
    return toRole(role);
  }

  async updateRole(
    name: string,
    changes: UpdateRoleInput,
    actorId: string | null = null,
    meta?: RequestMeta,
  ): Promise<Role> {
    const errors: FieldProblem[] = [];
    if (changes.name !== undefined) checkName(changes.name, errors);
    if (changes.description !== undefined) checkDescription(changes.description, errors);
    if (changes.permissions !== undefined) checkPermissions(changes.permissions, errors);
    if (errors.length > 0) throw validationError(errors);

    const outcome = await this.db.transaction(async (tx) => {
      const role = await selectRole(tx, name, { forUpdate: true });
      if (!role) throw notFoundRole(name);
      const rename = changes.name !== undefined && changes.name !== role.name ? changes.name : undefined;
      if (rename !== undefined && role.builtin) {
        throw new DomainError('conflict', `The builtin role ${JSON.stringify(role.name)} cannot be renamed`);
      }
      const newPermissions =
        changes.permissions === undefined ? undefined : uniqueSorted(changes.permissions);
      if (
        newPermissions !== undefined &&
        role.name === ADMIN_ROLE &&
        role.builtin &&
        !sameSet(newPermissions, role.permissions)
      ) {
        throw new DomainError('conflict', 'The permissions of the builtin admin role cannot be changed');
      }
      const describe = changes.description !== undefined && changes.description !== role.description;

      let removed: string[] = [];
      let added: string[] = [];
      if (newPermissions !== undefined) {
        removed = await deleteRolePermissionsExcept(tx, role.id, newPermissions);
        added = await insertRolePermissions(tx, role.id, newPermissions);
      }
      if (rename !== undefined || describe) {
        const result = await updateRoleRow(tx, role.id, {
          ...(rename !== undefined ? { name: rename } : {}),
          ...(describe ? { description: changes.description } : {}),
        });
        if (result === 'conflict') {
          throw new DomainError('conflict', `A role named ${JSON.stringify(rename)} exists`);
        }
      } else if (removed.length > 0 || added.length > 0) {
        await touchRole(tx, role.id);
      }

      // A rename shrinks every holder's roles claim; a permission removal only hurts holders
      // who no longer get that permission from any role.
      const affected =
        rename !== undefined
          ? await selectRoleHolders(tx, role.id)
          : await selectHoldersLosingPermissions(tx, role.id, removed);
      const updated = await selectRole(tx, rename ?? role.name);
      return { before: role, updated, rename, describe, added, removed, affected };
    });

    const { before, updated, rename, describe, added, removed, affected } = outcome;
    if (!updated) throw notFoundRole(rename ?? name);
    if (rename !== undefined || added.length > 0 || removed.length > 0) await this.onChanged(null);
    if (rename !== undefined || describe || added.length > 0 || removed.length > 0) {
      this.record('role.updated', actorId, null, meta, {
        role: before.name,
        ...(rename !== undefined ? { renamedTo: rename } : {}),
        ...(describe ? { descriptionChanged: true } : {}),
        added,
        removed,
        affectedUsers: affected.length,
      });
    }
    if (affected.length > 0) {
      await this.onPermissionsReduced(
        affected,
        rename !== undefined
          ? `role ${before.name} renamed to ${rename}`
          : `permissions removed from role ${before.name}`,
      );
    }
    return toRole(updated);
  }

  async deleteRole(name: string, actorId: string | null = null, meta?: RequestMeta): Promise<void> {
    const { role, holders } = await this.db.transaction(async (tx) => {
      const role = await selectRole(tx, name, { forUpdate: true });
      if (!role) throw notFoundRole(name);
      if (role.builtin) {
        throw new DomainError('conflict', `The builtin role ${JSON.stringify(role.name)} cannot be deleted`);
      }
      return { role, holders: await deleteRoleRow(tx, role.id) };
    });
    if (holders.length > 0) await this.onChanged(holders);
    this.record('role.deleted', actorId, null, meta, {
      role: role.name,
      permissions: role.permissions,
      affectedUsers: holders.length,
    });
    if (holders.length > 0) await this.onPermissionsReduced(holders, `role ${role.name} deleted`);
  }

  /** The user's role grants and effective permissions (404 for an unknown user, unlike getUserAuthz). */
  async getUserRoles(userId: string): Promise<UserRoles> {
    if (!isUuid(userId)) throw notFoundUser();
    const [exists, grants, authz] = await Promise.all([
      userExists(this.db, userId),
      selectUserGrants(this.db, userId),
      selectUserAuthz(this.db, userId),
    ]);
    if (!exists) throw notFoundUser();
    return { userId, grants, permissions: authz.permissions };
  }

  /** Grants the role; true when newly granted, false when the user already held it. */
  async assignRole(
    userId: string,
    roleName: string,
    actorId: string | null,
    meta?: RequestMeta,
  ): Promise<boolean> {
    if (!isUuid(userId)) throw notFoundUser();
    const granted = await this.db.transaction(async (tx) => {
      if (!(await userExists(tx, userId))) throw notFoundUser();
      const roleId = (await selectRoleIds(tx, [roleName])).get(roleName);
      if (roleId === undefined) throw notFoundRole(roleName);
      return insertUserRoles(tx, userId, [roleId], actorId);
    });
    if (granted.length === 0) return false;
    await this.onChanged([userId]);
    this.record('role.assigned', actorId, userId, meta, { role: roleName });
    return true;
  }

  /** Revokes the role (404 when the user does not hold it) and the user's live tokens. */
  async removeRole(
    userId: string,
    roleName: string,
    actorId: string | null,
    meta?: RequestMeta,
  ): Promise<void> {
    if (!isUuid(userId)) throw notFoundUser();
    await this.db.transaction(async (tx) => {
      if (!(await userExists(tx, userId))) throw notFoundUser();
      const roleId = (await selectRoleIds(tx, [roleName])).get(roleName);
      if (roleId === undefined) throw notFoundRole(roleName);
      const revoked = await deleteUserRoles(tx, userId, [roleId]);
      if (revoked.length === 0) {
        throw new DomainError('not-found', `The user does not hold the role ${JSON.stringify(roleName)}`);
      }
    });
    await this.onChanged([userId]);
    this.record('role.removed', actorId, userId, meta, { role: roleName });
    await this.onPermissionsReduced([userId], `role ${roleName} removed`);
  }

  /** Replaces the user's roles with exactly `roleNames`; returns what changed. */
  async setUserRoles(
    userId: string,
    roleNames: readonly string[],
    actorId: string | null,
    meta?: RequestMeta,
  ): Promise<{ added: string[]; removed: string[] }> {
    if (!isUuid(userId)) throw notFoundUser();
    const names = uniqueSorted(roleNames);
    const { added, removed } = await this.db.transaction(async (tx) => {
      // Locks the user row: two concurrent replacements must not interleave into a union.
      if (!(await userExists(tx, userId, { lock: true }))) throw notFoundUser();
      const ids = await selectRoleIds(tx, names);
      const unknown = names.filter((name) => !ids.has(name));
      if (unknown.length > 0) {
        throw new DomainError(
          'not-found',
          `No role named ${unknown.map((name) => JSON.stringify(name)).join(', ')}`,
        );
      }
      const roleIds = [...ids.values()];
      const removed = await deleteUserRolesExcept(tx, userId, roleIds);
      const added = await insertUserRoles(tx, userId, roleIds, actorId);
      return { added, removed };
    });
    if (added.length > 0 || removed.length > 0) await this.onChanged([userId]);
    for (const role of added) this.record('role.assigned', actorId, userId, meta, { role });
    for (const role of removed) this.record('role.removed', actorId, userId, meta, { role });
    if (removed.length > 0) await this.onPermissionsReduced([userId], `roles ${removed.join(', ')} removed`);
    return { added, removed };
  }

  private record(
    type: string,
    actorId: string | null,
    subjectId: string | null,
    meta: RequestMeta | undefined,
    details: Record<string, unknown>,
  ): void {
    const event: AuditEvent = {
      type,
      outcome: 'success',
      actorId,
      subjectId,
      ip: meta?.ip ?? null,
      userAgent: meta?.userAgent ?? null,
      requestId: meta?.requestId ?? null,
      details,
    };
    this.audit.record(event);
  }
}
