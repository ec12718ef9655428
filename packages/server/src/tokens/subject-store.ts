import { toUserAuthz, USER_AUTHZ_COLUMNS, type UserAuthzRow } from '../authz/authz-store.ts';
import type { Queryable } from '../storage/database.ts';

/** What a new access token says about its subject. */
export interface TokenSubject {
  roles: string[];
  /** Sorted, unique: the union over the user's roles. */
  permissions: string[];
  /** The user's token version (`ver`); tokens below the current one are revoked. */
  version: number;
}

/**
 * Roles, permissions and token version in one round trip: every grant and every refresh reads
 * them, and on the refresh path this read is half of the database work.
 */
export async function selectTokenSubject(db: Queryable, userId: string): Promise<TokenSubject> {
  const { rows } = await db.query<UserAuthzRow & { version: number }>(
    `SELECT ${USER_AUTHZ_COLUMNS},
            coalesce((SELECT version FROM user_token_versions WHERE user_id = $1), 0) AS version`,
    [userId],
  );
  return { ...toUserAuthz(rows[0]), version: rows[0]?.version ?? 0 };
}
