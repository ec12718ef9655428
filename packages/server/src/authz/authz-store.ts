import type { Queryable } from '../storage/database.ts';
import { coveringPermissions, uniqueSorted } from './permissions.ts';

/** SQL for roles, their permissions and who holds them. No logic beyond the statements. */

export interface RoleRecord {
  id: string;
  name: string;
  description: string;
  builtin: boolean;
  /** Sorted. */
  permissions: string[];
  createdAt: Date;
  updatedAt: Date;
}

export interface RoleGrantRecord {
  role: string;
  grantedAt: Date;
  grantedBy: string | null;
}

interface RoleRow {
  id: string;
  name: string;
  description: string;
  builtin: boolean;
  permissions: string[];
  created_at: Date;
  updated_at: Date;
}

const ROLE_COLUMNS = `r.id, r.name, r.description, r.builtin, r.created_at, r.updated_at,
  coalesce((SELECT array_agg(rp.permission) FROM role_permissions rp WHERE rp.role_id = r.id), '{}') AS permissions`;

function toRole(row: RoleRow): RoleRecord {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    builtin: row.builtin,
    permissions: uniqueSorted(row.permissions),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

const UNIQUE_VIOLATION = '23505';

function isUniqueViolation(error: unknown): boolean {
  return (error as { code?: string } | null)?.code === UNIQUE_VIOLATION;
}

/**
 * The select list for "what the user `userId` (an SQL expression) holds": role names and the
 * union of their permissions. Shared with the token service, which reads it in the same
 * statement as the rest of a grant.
 */
export function userAuthzColumns(userId: string): string {
  return `coalesce((SELECT array_agg(r.name) FROM user_roles ur JOIN roles r ON r.id = ur.role_id
                      WHERE ur.user_id = ${userId}), '{}') AS roles,
            coalesce((SELECT array_agg(DISTINCT rp.permission) FROM user_roles ur
                        JOIN role_permissions rp ON rp.role_id = ur.role_id
                      WHERE ur.user_id = ${userId}), '{}') AS permissions`;
}

export interface UserAuthzRow {
  roles: string[];
  permissions: string[];
}

export function toUserAuthz(row: UserAuthzRow | undefined): { roles: string[]; permissions: string[] } {
  return { roles: uniqueSorted(row?.roles ?? []), permissions: uniqueSorted(row?.permissions ?? []) };
}

export async function selectUserAuthz(
  db: Queryable,
  userId: string,
): Promise<{ roles: string[]; permissions: string[] }> {
  const { rows } = await db.query<UserAuthzRow>(`SELECT ${userAuthzColumns('$1')}`, [userId]);
  return toUserAuthz(rows[0]);
}

export async function selectRoles(db: Queryable): Promise<RoleRecord[]> {
  const { rows } = await db.query<RoleRow>(`SELECT ${ROLE_COLUMNS} FROM roles r ORDER BY r.name`);
  return rows.map(toRole);
}

/** `forUpdate` locks the role row until the transaction ends, serialising concurrent edits. */
export async function selectRole(
  db: Queryable,
  name: string,
  options: { forUpdate?: boolean } = {},
): Promise<RoleRecord | undefined> {
  const { rows } = await db.query<RoleRow>(
    `SELECT ${ROLE_COLUMNS} FROM roles r WHERE r.name = $1${options.forUpdate ? ' FOR UPDATE OF r' : ''}`,
    [name],
  );
  return rows[0] ? toRole(rows[0]) : undefined;
}

/** Ids of the named roles that exist, by name. */
export async function selectRoleIds(db: Queryable, names: readonly string[]): Promise<Map<string, string>> {
  const { rows } = await db.query<{ id: string; name: string }>(
    'SELECT id, name FROM roles WHERE name = ANY($1::text[])',
    [names],
  );
  return new Map(rows.map((row) => [row.name, row.id]));
}

/** Returns the new role's id, or undefined when the name is taken. */
export async function insertRole(
  db: Queryable,
  role: { name: string; description: string },
): Promise<string | undefined> {
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO roles (name, description) VALUES ($1, $2)
     ON CONFLICT (name) DO NOTHING RETURNING id`,
    [role.name, role.description],
  );
  return rows[0]?.id;
}

/** Updates name and/or description and bumps updated_at; 'conflict' when the new name is taken. */
export async function updateRoleRow(
  db: Queryable,
  roleId: string,
  changes: { name?: string; description?: string },
): Promise<'updated' | 'conflict'> {
  try {
    await db.query(
      `UPDATE roles SET name = coalesce($2, name), description = coalesce($3, description), updated_at = now()
        WHERE id = $1`,
      [roleId, changes.name ?? null, changes.description ?? null],
    );
    return 'updated';
  } catch (error) {
    if (isUniqueViolation(error)) return 'conflict';
    throw error;
  }
}

export async function touchRole(db: Queryable, roleId: string): Promise<void> {
  await db.query('UPDATE roles SET updated_at = now() WHERE id = $1', [roleId]);
}

/** Adds the permissions the role lacks; returns those actually added. */
export async function insertRolePermissions(
  db: Queryable,
  roleId: string,
  permissions: readonly string[],
): Promise<string[]> {
  if (permissions.length === 0) return [];
  const { rows } = await db.query<{ permission: string }>(
    `INSERT INTO role_permissions (role_id, permission)
     SELECT $1, p FROM unnest($2::text[]) AS p
     ON CONFLICT DO NOTHING RETURNING permission`,
    [roleId, permissions],
  );
  return uniqueSorted(rows.map((row) => row.permission));
}

/** Removes every permission of the role not in `keep`; returns those removed. */
export async function deleteRolePermissionsExcept(
  db: Queryable,
  roleId: string,
  keep: readonly string[],
): Promise<string[]> {
  const { rows } = await db.query<{ permission: string }>(
    `DELETE FROM role_permissions WHERE role_id = $1 AND NOT (permission = ANY($2::text[]))
     RETURNING permission`,
    [roleId, keep],
  );
  return uniqueSorted(rows.map((row) => row.permission));
}

/** Deletes the role (its permissions and grants cascade); returns the users who held it. */
export async function deleteRoleRow(db: Queryable, roleId: string): Promise<string[]> {
  // The holders are read in the same statement: the cascade removes the rows they come from.
  const { rows } = await db.query<{ user_id: string }>(
    `WITH holders AS (SELECT user_id FROM user_roles WHERE role_id = $1),
          deleted AS (DELETE FROM roles WHERE id = $1 RETURNING id)
     SELECT user_id FROM holders WHERE EXISTS (SELECT 1 FROM deleted)`,
    [roleId],
  );
  return uniqueSorted(rows.map((row) => row.user_id));
}

export async function selectRoleHolders(db: Queryable, roleId: string): Promise<string[]> {
  const { rows } = await db.query<{ user_id: string }>('SELECT user_id FROM user_roles WHERE role_id = $1', [
    roleId,
  ]);
  return uniqueSorted(rows.map((row) => row.user_id));
}

/**
 * Holders of the role who, with the role's permissions as they are now (call after the
 * change, in the same transaction), are no longer granted one of `removed` by any of their
 * roles. Coverage is plain equality against coveringPermissions(), so wildcards held through
 * another role (say `*` from admin) keep a user out of the list.
 */
export async function selectHoldersLosingPermissions(
  db: Queryable,
  roleId: string,
  removed: readonly string[],
): Promise<string[]> {
  if (removed.length === 0) return [];
  const indexes: number[] = [];
  const covering: string[] = [];
  removed.forEach((permission, index) => {
    for (const candidate of coveringPermissions(permission)) {
      indexes.push(index);
      covering.push(candidate);
    }
  });
  const { rows } = await db.query<{ user_id: string }>(
    `SELECT h.user_id
       FROM user_roles h
      WHERE h.role_id = $1
        AND EXISTS (
          SELECT 1 FROM generate_series(0, $2::int - 1) AS lost (i)
           WHERE NOT EXISTS (
             SELECT 1
               FROM unnest($3::int[], $4::text[]) AS c (removed, permission)
               JOIN role_permissions rp ON rp.permission = c.permission
               JOIN user_roles ur ON ur.role_id = rp.role_id
              WHERE c.removed = lost.i AND ur.user_id = h.user_id))`,
    [roleId, removed.length, indexes, covering],
  );
  return uniqueSorted(rows.map((row) => row.user_id));
}

/** `lock` holds the user row until the transaction ends (NO KEY UPDATE: foreign-key checks still pass). */
export async function userExists(
  db: Queryable,
  userId: string,
  options: { lock?: boolean } = {},
): Promise<boolean> {
  const { rows } = await db.query(
    `SELECT 1 FROM users WHERE id = $1${options.lock ? ' FOR NO KEY UPDATE' : ''}`,
    [userId],
  );
  return rows.length > 0;
}

export async function selectUserGrants(db: Queryable, userId: string): Promise<RoleGrantRecord[]> {
  const { rows } = await db.query<{ role: string; granted_at: Date; granted_by: string | null }>(
    `SELECT r.name AS role, ur.granted_at, ur.granted_by
       FROM user_roles ur JOIN roles r ON r.id = ur.role_id
      WHERE ur.user_id = $1`,
    [userId],
  );
  return rows
    .map((row) => ({ role: row.role, grantedAt: row.granted_at, grantedBy: row.granted_by }))
    .sort((a, b) => (a.role < b.role ? -1 : a.role > b.role ? 1 : 0));
}

/** Grants the roles the user lacks; returns the names actually granted. */
export async function insertUserRoles(
  db: Queryable,
  userId: string,
  roleIds: readonly string[],
  grantedBy: string | null,
): Promise<string[]> {
  if (roleIds.length === 0) return [];
  const { rows } = await db.query<{ name: string }>(
    `WITH granted AS (
       INSERT INTO user_roles (user_id, role_id, granted_by)
       SELECT $1, id, $3 FROM unnest($2::uuid[]) AS id
       ON CONFLICT DO NOTHING RETURNING role_id)
     SELECT r.name FROM granted g JOIN roles r ON r.id = g.role_id`,
    [userId, roleIds, grantedBy],
  );
  return uniqueSorted(rows.map((row) => row.name));
}

/** Revokes the user's roles that are in `roleIds`; returns the names actually revoked. */
export async function deleteUserRoles(
  db: Queryable,
  userId: string,
  roleIds: readonly string[],
): Promise<string[]> {
  if (roleIds.length === 0) return [];
  const { rows } = await db.query<{ name: string }>(
    `WITH revoked AS (
       DELETE FROM user_roles WHERE user_id = $1 AND role_id = ANY($2::uuid[]) RETURNING role_id)
     SELECT r.name FROM revoked v JOIN roles r ON r.id = v.role_id`,
    [userId, roleIds],
  );
  return uniqueSorted(rows.map((row) => row.name));
}

/** Revokes every role of the user not in `keepRoleIds`; returns the names revoked. */
export async function deleteUserRolesExcept(
  db: Queryable,
  userId: string,
  keepRoleIds: readonly string[],
): Promise<string[]> {
  const { rows } = await db.query<{ name: string }>(
    `WITH revoked AS (
       DELETE FROM user_roles WHERE user_id = $1 AND NOT (role_id = ANY($2::uuid[])) RETURNING role_id)
     SELECT r.name FROM revoked v JOIN roles r ON r.id = v.role_id`,
    [userId, keepRoleIds],
  );
  return uniqueSorted(rows.map((row) => row.name));
}

/** True when at least one user holds the role (start-up checks for a first administrator). */
export async function roleHasHolders(db: Queryable, roleName: string): Promise<boolean> {
  const { rows } = await db.query(
    'SELECT 1 FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE r.name = $1 LIMIT 1',
    [roleName],
  );
  return rows.length > 0;
}
