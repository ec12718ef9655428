import { toUserAuthz, type UserAuthzRow, userAuthzColumns } from '../authz/authz-store.ts';
import type { Queryable } from '../storage/database.ts';

/** What a new access token says about its subject. */
export interface TokenSubject {
  roles: string[];
  /** Sorted, unique: the union over the user's roles. */
  permissions: string[];
  /** The user's token version (`ver`); tokens below the current one are revoked. */
  version: number;
}

export interface TokenSubjectRow extends UserAuthzRow {
  version: number;
}

/** Roles, permissions and token version of `userId` (an SQL expression), as select-list columns. */
export function tokenSubjectColumns(userId: string): string {
  return `${userAuthzColumns(userId)},
            coalesce((SELECT version FROM user_token_versions WHERE user_id = ${userId}), 0) AS version`;
}

export function toTokenSubject(row: TokenSubjectRow | undefined): TokenSubject {
  return { ...toUserAuthz(row), version: row?.version ?? 0 };
}

/**
 * Roles, permissions and token version in one round trip, for a new grant. (A refresh reads
 * them in its rotation statement.)
 */
export async function selectTokenSubject(db: Queryable, userId: string): Promise<TokenSubject> {
  const { rows } = await db.query<TokenSubjectRow>(`SELECT ${tokenSubjectColumns('$1')}`, [userId]);
  return toTokenSubject(rows[0]);
}
