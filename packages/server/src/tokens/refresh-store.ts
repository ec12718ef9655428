/**
 * SQL for refresh-token families. Every timestamp comes from the caller's clock (a parameter,
 * never `now()`), so expiry is decided by one clock that tests can move.
 */
import type { Queryable } from '../storage/database.ts';
import { type TokenSubjectRow, tokenSubjectColumns } from './subject-store.ts';

export interface FamilyRow {
  id: string;
  user_id: string;
  client_id: string;
  session_id: string | null;
  scope: string[];
  audience: string;
  absolute_expires_at: Date;
}

export interface RotatedRow extends FamilyRow, TokenSubjectRow {
  /** Idle expiry of the successor token. */
  idle_expires_at: Date;
}

/** A token and its family, read to explain why a rotation affected no row. */
export interface TokenStateRow extends FamilyRow {
  consumed_at: Date | null;
  idle_expires_at: Date;
  revoked_at: Date | null;
}

const FAMILY_COLUMNS = 'id, user_id, client_id, session_id, scope, audience, absolute_expires_at';

/** Inserts a family and its first token in one statement (one round trip, atomic without a transaction). */
export async function insertFamilyWithToken(
  db: Queryable,
  family: {
    userId: string;
    clientId: string;
    sessionId: string | null;
    scope: string[];
    audience: string;
    now: Date;
    absoluteExpiresAt: Date;
    tokenHash: Buffer;
    idleExpiresAt: Date;
  },
): Promise<string> {
  const { rows } = await db.query<{ id: string }>(
    `WITH family AS (
       INSERT INTO refresh_families (user_id, client_id, session_id, scope, audience, created_at, absolute_expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id
     )
     INSERT INTO refresh_tokens (token_hash, family_id, created_at, idle_expires_at)
     SELECT $8, id, $6, $9 FROM family
     RETURNING family_id AS id`,
    [
      family.userId,
      family.clientId,
      family.sessionId,
      family.scope,
      family.audience,
      family.now,
      family.absoluteExpiresAt,
      family.tokenHash,
      family.idleExpiresAt,
    ],
  );
  return (rows[0] as { id: string }).id;
}

/**
 * Consumes a live token and inserts its successor in one statement. The row lock taken by the
 * UPDATE makes a concurrent second use wait, then re-check `consumed_at IS NULL` and match
 * nothing, so however many processes race on one token, exactly one successor is created.
 * The client binding is part of the condition: a token presented by another client is not consumed.
 * It also returns what the new access token needs (roles, permissions, token version): the
 * whole rotation is one round trip.
 */
export async function rotateToken(
  db: Queryable,
  rotation: { hash: Buffer; successorHash: Buffer; clientId: string; now: Date; idleExpiresAt: Date },
): Promise<RotatedRow | undefined> {
  const { rows } = await db.query<RotatedRow>(
    `WITH consumed AS (
       UPDATE refresh_tokens AS t
          SET consumed_at = $3, replaced_by = $2
         FROM refresh_families AS f
        WHERE t.token_hash = $1
          AND f.id = t.family_id
          AND t.consumed_at IS NULL
          AND t.idle_expires_at > $3
          AND f.client_id = $4
          AND f.revoked_at IS NULL
          AND f.absolute_expires_at > $3
       RETURNING f.id, f.user_id, f.client_id, f.session_id, f.scope, f.audience, f.absolute_expires_at
     ), inserted AS (
       INSERT INTO refresh_tokens (token_hash, family_id, created_at, idle_expires_at)
       SELECT $2, id, $3, LEAST($5::timestamptz, absolute_expires_at) FROM consumed
       RETURNING idle_expires_at
     )
     SELECT c.id, c.user_id, c.client_id, c.session_id, c.scope, c.audience, c.absolute_expires_at,
            i.idle_expires_at, ${tokenSubjectColumns('c.user_id')}
       FROM consumed AS c CROSS JOIN inserted AS i`,
    [rotation.hash, rotation.successorHash, rotation.now, rotation.clientId, rotation.idleExpiresAt],
  );
  return rows[0];
}

export async function findTokenState(db: Queryable, hash: Buffer): Promise<TokenStateRow | undefined> {
  const { rows } = await db.query<TokenStateRow>(
    `SELECT f.id, f.user_id, f.client_id, f.session_id, f.scope, f.audience, f.absolute_expires_at,
            f.revoked_at, t.consumed_at, t.idle_expires_at
       FROM refresh_tokens AS t JOIN refresh_families AS f ON f.id = t.family_id
      WHERE t.token_hash = $1`,
    [hash],
  );
  return rows[0];
}

/** Each revoke returns only the families this call revoked, so callers act once per family. */
export async function revokeFamilyById(
  db: Queryable,
  familyId: string,
  reason: string,
  now: Date,
): Promise<FamilyRow[]> {
  const { rows } = await db.query<FamilyRow>(
    `UPDATE refresh_families SET revoked_at = $2, revoked_reason = $3
      WHERE id = $1 AND revoked_at IS NULL RETURNING ${FAMILY_COLUMNS}`,
    [familyId, now, reason],
  );
  return rows;
}

export async function revokeFamiliesBySession(
  db: Queryable,
  sessionId: string,
  reason: string,
  now: Date,
): Promise<FamilyRow[]> {
  const { rows } = await db.query<FamilyRow>(
    `UPDATE refresh_families SET revoked_at = $2, revoked_reason = $3
      WHERE session_id = $1 AND revoked_at IS NULL RETURNING ${FAMILY_COLUMNS}`,
    [sessionId, now, reason],
  );
  return rows;
}

export async function revokeFamiliesByUser(
  db: Queryable,
  userId: string,
  reason: string,
  now: Date,
): Promise<FamilyRow[]> {
  const { rows } = await db.query<FamilyRow>(
    `UPDATE refresh_families SET revoked_at = $2, revoked_reason = $3
      WHERE user_id = $1 AND revoked_at IS NULL RETURNING ${FAMILY_COLUMNS}`,
    [userId, now, reason],
  );
  return rows;
}

/** Families past their absolute expiry can never be used again; their tokens go with them. */
export async function deleteExpiredFamilies(db: Queryable, before: Date): Promise<number> {
  const { rowCount } = await db.query('DELETE FROM refresh_families WHERE absolute_expires_at < $1', [
    before,
  ]);
  return rowCount;
}
