/** SQL for access-token revocation: the jti denylist, per-user token versions and the event feed. */
import type { Queryable } from '../storage/database.ts';

// Any fixed 64-bit number; it names "revocation event writers" among advisory locks.
const EVENTS_LOCK_ID = 7_246_771_107;

export interface EventRow {
  id: number;
  kind: 'token' | 'user';
  jti: string | null;
  user_id: string | null;
  version: number | null;
  expires_at: Date | null;
}

/**
 * Serialises event writers until commit. Identity values are handed out at insert time, not
 * at commit, so without this a reader could see event 11 before event 10 commits, move its
 * cursor past 10 and never see it. Under the lock, ids are assigned in commit order. Taken as
 * the first statement of the transaction; revocations are rare enough that serialising them costs nothing.
 */
export async function lockEventWriters(tx: Queryable): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1)', [EVENTS_LOCK_ID]);
}

/** True when the jti was not on the denylist yet. */
export async function insertRevokedToken(
  tx: Queryable,
  token: { jti: string; userId: string | null; expiresAt: Date },
): Promise<boolean> {
  const { rows } = await tx.query(
    `INSERT INTO revoked_access_tokens (jti, user_id, expires_at) VALUES ($1, $2, $3)
     ON CONFLICT (jti) DO NOTHING RETURNING jti`,
    [token.jti, token.userId, token.expiresAt],
  );
  return rows.length > 0;
}

export async function insertTokenEvent(
  tx: Queryable,
  token: { jti: string; userId: string | null; expiresAt: Date },
): Promise<number> {
  const { rows } = await tx.query<{ id: number }>(
    `INSERT INTO revocation_events (kind, jti, user_id, expires_at) VALUES ('token', $1, $2, $3) RETURNING id`,
    [token.jti, token.userId, token.expiresAt],
  );
  return (rows[0] as { id: number }).id;
}

/** Increments the user's version (creating it at 1) and returns the new value. */
export async function incrementUserVersion(tx: Queryable, userId: string): Promise<number> {
  const { rows } = await tx.query<{ version: number }>(
    `INSERT INTO user_token_versions (user_id, version, updated_at) VALUES ($1, 1, now())
     ON CONFLICT (user_id) DO UPDATE SET version = user_token_versions.version + 1, updated_at = now()
     RETURNING version`,
    [userId],
  );
  return (rows[0] as { version: number }).version;
}

export async function insertUserEvent(tx: Queryable, userId: string, version: number): Promise<number> {
  const { rows } = await tx.query<{ id: number }>(
    `INSERT INTO revocation_events (kind, user_id, version) VALUES ('user', $1, $2) RETURNING id`,
    [userId, version],
  );
  return (rows[0] as { id: number }).id;
}

export async function selectUserVersion(db: Queryable, userId: string): Promise<number> {
  const { rows } = await db.query<{ version: number }>(
    'SELECT version FROM user_token_versions WHERE user_id = $1',
    [userId],
  );
  return rows[0]?.version ?? 0;
}

export async function selectLatestEventId(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ id: number | null }>('SELECT max(id) AS id FROM revocation_events');
  return rows[0]?.id ?? 0;
}

export async function selectDenylist(db: Queryable, now: Date): Promise<{ jti: string; expires_at: Date }[]> {
  const { rows } = await db.query<{ jti: string; expires_at: Date }>(
    'SELECT jti, expires_at FROM revoked_access_tokens WHERE expires_at > $1',
    [now],
  );
  return rows;
}

export async function selectUserVersions(db: Queryable): Promise<{ user_id: string; version: number }[]> {
  const { rows } = await db.query<{ user_id: string; version: number }>(
    'SELECT user_id, version FROM user_token_versions WHERE version > 0',
  );
  return rows;
}

export async function selectEventsSince(db: Queryable, sinceId: number, limit: number): Promise<EventRow[]> {
  const { rows } = await db.query<EventRow>(
    `SELECT id, kind, jti, user_id, version, expires_at FROM revocation_events
      WHERE id > $1 ORDER BY id LIMIT $2`,
    [sinceId, limit],
  );
  return rows;
}

/**
 * Drops what can no longer matter: denylist rows and token events past the token's expiry,
 * and user events older than the retention (longer than any access token lives, so every
 * token they revoked has expired).
 */
export async function deleteExpired(
  db: Queryable,
  now: Date,
  userEventsBefore: Date,
): Promise<{ tokens: number; events: number }> {
  const tokens = await db.query('DELETE FROM revoked_access_tokens WHERE expires_at <= $1', [now]);
  const events = await db.query(
    `DELETE FROM revocation_events
      WHERE (kind = 'token' AND expires_at <= $1) OR (kind = 'user' AND created_at < $2)`,
    [now, userEventsBefore],
  );
  return { tokens: tokens.rowCount, events: events.rowCount };
}
