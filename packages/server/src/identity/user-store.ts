import type { Queryable } from '../storage/database.ts';

export interface UserRow {
  id: string;
  email: string;
  name: string | null;
  status: 'active' | 'disabled';
  email_verified: boolean;
  password_hash: string | null;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS = 'id, email, name, status, email_verified, password_hash, created_at, updated_at';

export async function findUserByEmail(db: Queryable, email: string): Promise<UserRow | undefined> {
  const { rows } = await db.query<UserRow>(`SELECT ${COLUMNS} FROM users WHERE email = $1`, [email]);
  return rows[0];
}

export async function findUserById(db: Queryable, id: string): Promise<UserRow | undefined> {
  const { rows } = await db.query<UserRow>(`SELECT ${COLUMNS} FROM users WHERE id = $1`, [id]);
  return rows[0];
}

/** Inserts a user, or returns undefined when the email is taken (a concurrent registration lost the race). */
export async function insertUser(
  db: Queryable,
  input: { email: string; name: string | null; passwordHash: string; emailVerified?: boolean },
): Promise<UserRow | undefined> {
  const { rows } = await db.query<UserRow>(
    `INSERT INTO users (email, name, password_hash, password_changed_at, email_verified)
     VALUES ($1, $2, $3, now(), $4)
     ON CONFLICT (email) DO NOTHING
     RETURNING ${COLUMNS}`,
    [input.email, input.name, input.passwordHash, input.emailVerified ?? false],
  );
  return rows[0];
}

export async function updatePasswordHash(
  db: Queryable,
  userId: string,
  passwordHash: string,
  changed: boolean,
): Promise<void> {
  await db.query(
    `UPDATE users SET password_hash = $2, updated_at = now()${changed ? ', password_changed_at = now()' : ''} WHERE id = $1`,
    [userId, passwordHash],
  );
}

export async function setEmailVerified(db: Queryable, userId: string, verified: boolean): Promise<void> {
  await db.query('UPDATE users SET email_verified = $2, updated_at = now() WHERE id = $1', [
    userId,
    verified,
  ]);
}

export async function setUserStatus(
  db: Queryable,
  userId: string,
  status: 'active' | 'disabled',
): Promise<boolean> {
  const { rowCount } = await db.query('UPDATE users SET status = $2, updated_at = now() WHERE id = $1', [
    userId,
    status,
  ]);
  return rowCount > 0;
}

export async function updateUserName(db: Queryable, userId: string, name: string | null): Promise<void> {
  await db.query('UPDATE users SET name = $2, updated_at = now() WHERE id = $1', [userId, name]);
}

export interface UserSearch {
  query?: string;
  status?: 'active' | 'disabled';
  /** Keyset cursor: the email of the last row of the previous page. */
  after?: string;
  limit: number;
}

export async function searchUsers(db: Queryable, search: UserSearch): Promise<UserRow[]> {
  const { rows } = await db.query<UserRow>(
    `SELECT ${COLUMNS} FROM users
      WHERE ($1::text IS NULL OR email LIKE '%' || $1 || '%' OR lower(coalesce(name, '')) LIKE '%' || $1 || '%')
        AND ($2::text IS NULL OR status = $2)
        AND ($3::text IS NULL OR email > $3)
      ORDER BY email
      LIMIT $4`,
    [
      search.query ? search.query.toLowerCase().replace(/[%_\\]/g, '\\$&') : null,
      search.status ?? null,
      search.after ?? null,
      search.limit,
    ],
  );
  return rows;
}

export async function countUsers(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM users');
  return rows[0]?.n ?? 0;
}

// --- single-use email links ---

export type EmailTokenPurpose = 'verify_email' | 'reset_password';

export async function insertEmailToken(
  db: Queryable,
  input: { tokenHash: Buffer; userId: string; purpose: EmailTokenPurpose; ttlSeconds: number },
): Promise<void> {
  await db.query(
    `INSERT INTO email_tokens (token_hash, user_id, purpose, expires_at)
     VALUES ($1, $2, $3, now() + make_interval(secs => $4))`,
    [input.tokenHash, input.userId, input.purpose, input.ttlSeconds],
  );
}

/** Consumes a live link in one statement: two concurrent uses yield one winner. */
export async function consumeEmailToken(
  db: Queryable,
  tokenHash: Buffer,
  purpose: EmailTokenPurpose,
): Promise<string | undefined> {
  const { rows } = await db.query<{ user_id: string }>(
    `UPDATE email_tokens SET consumed_at = now()
      WHERE token_hash = $1 AND purpose = $2 AND consumed_at IS NULL AND expires_at > now()
      RETURNING user_id`,
    [tokenHash, purpose],
  );
  return rows[0]?.user_id;
}

/** Invalidates every outstanding link of a user (after use, or when the password changes). */
export async function invalidateEmailTokens(
  db: Queryable,
  userId: string,
  purpose?: EmailTokenPurpose,
): Promise<void> {
  await db.query(
    `UPDATE email_tokens SET consumed_at = now()
      WHERE user_id = $1 AND consumed_at IS NULL AND ($2::text IS NULL OR purpose = $2)`,
    [userId, purpose ?? null],
  );
}
