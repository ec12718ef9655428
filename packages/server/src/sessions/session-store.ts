import type { Queryable } from '../storage/database.ts';

export interface SessionRow {
  id: string;
  user_id: string;
  ip: string | null;
  user_agent: string | null;
  created_at: Date;
  last_seen_at: Date;
  idle_expires_at: Date;
  absolute_expires_at: Date;
  revoked_at: Date | null;
}

export interface ActiveSessionRow extends SessionRow {
  user_status: 'active' | 'disabled';
}

const COLUMNS =
  'id, user_id, ip, user_agent, created_at, last_seen_at, idle_expires_at, absolute_expires_at, revoked_at';

export async function insertSession(
  db: Queryable,
  input: {
    userId: string;
    tokenHash: Buffer;
    ip: string | null;
    userAgent: string | null;
    idleSeconds: number;
    absoluteSeconds: number;
  },
): Promise<SessionRow> {
  const { rows } = await db.query<SessionRow>(
    `INSERT INTO sessions (user_id, token_hash, ip, user_agent, idle_expires_at, absolute_expires_at)
     VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5), now() + make_interval(secs => $6))
     RETURNING ${COLUMNS}`,
    [input.userId, input.tokenHash, input.ip, input.userAgent, input.idleSeconds, input.absoluteSeconds],
  );
  return rows[0] as SessionRow;
}

/** The live session for a token hash: not revoked, not past either timeout, user still active. */
export async function findLiveSessionByHash(
  db: Queryable,
  tokenHash: Buffer,
): Promise<ActiveSessionRow | undefined> {
  const { rows } = await db.query<ActiveSessionRow>(
    `SELECT s.id, s.user_id, s.ip, s.user_agent, s.created_at, s.last_seen_at, s.idle_expires_at,
            s.absolute_expires_at, s.revoked_at, u.status AS user_status
       FROM sessions s JOIN users u ON u.id = s.user_id
      WHERE s.token_hash = $1 AND s.revoked_at IS NULL
        AND s.idle_expires_at > now() AND s.absolute_expires_at > now() AND u.status = 'active'`,
    [tokenHash],
  );
  return rows[0];
}

/** Slides the idle timeout; writes at most once a minute per session (the WHERE clause guards it). */
export async function touchSession(db: Queryable, id: string, idleSeconds: number): Promise<void> {
  await db.query(
    `UPDATE sessions SET last_seen_at = now(),
            idle_expires_at = LEAST(absolute_expires_at, now() + make_interval(secs => $2))
      WHERE id = $1 AND revoked_at IS NULL AND last_seen_at < now() - interval '1 minute'`,
    [id, idleSeconds],
  );
}

export async function listLiveSessions(db: Queryable, userId: string): Promise<SessionRow[]> {
  const { rows } = await db.query<SessionRow>(
    `SELECT ${COLUMNS} FROM sessions
      WHERE user_id = $1 AND revoked_at IS NULL AND idle_expires_at > now() AND absolute_expires_at > now()
      ORDER BY last_seen_at DESC`,
    [userId],
  );
  return rows;
}

export async function revokeSession(
  db: Queryable,
  userId: string,
  id: string,
  reason: string,
): Promise<boolean> {
  const { rowCount } = await db.query(
    'UPDATE sessions SET revoked_at = now(), revoked_reason = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL',
    [id, userId, reason],
  );
  return rowCount > 0;
}

/** Revokes every live session of a user except `keepId`; returns the revoked ids. */
export async function revokeUserSessions(
  db: Queryable,
  userId: string,
  reason: string,
  keepId: string | null = null,
): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `UPDATE sessions SET revoked_at = now(), revoked_reason = $2
      WHERE user_id = $1 AND revoked_at IS NULL AND ($3::uuid IS NULL OR id <> $3::uuid)
      RETURNING id`,
    [userId, reason, keepId],
  );
  return rows.map((row) => row.id);
}
