import type { Queryable } from '../storage/database.ts';
import type { SigningAlg } from './jwt.ts';

/** SQL for the signing_keys table (migration 0004). Times are passed in, never taken from now(), so an injected clock rules. */

export type { SigningAlg };
export type KeyUse = 'access_token' | 'id_token';
export type KeyState = 'next' | 'current' | 'retiring' | 'retired';

/** The public members a JWKS may carry; never `d`, `p`, `q` or other private parts. */
export interface PublicJwk {
  kty: string;
  kid: string;
  alg: SigningAlg;
  use: 'sig';
  crv?: string;
  x?: string;
  y?: string;
  n?: string;
  e?: string;
}

export interface SigningKeyRow {
  kid: string;
  alg: SigningAlg;
  use: KeyUse;
  state: KeyState;
  publicJwk: PublicJwk;
  createdAt: Date;
  activatedAt: Date | null;
  retiringAt: Date | null;
  retiredAt: Date | null;
  notAfter: Date | null;
}

export interface SealedSigningKeyRow extends SigningKeyRow {
  privateKeyEnc: Uint8Array;
}

interface RawRow {
  kid: string;
  alg: SigningAlg;
  use: KeyUse;
  state: KeyState;
  public_jwk: PublicJwk | string;
  private_key_enc?: Uint8Array;
  created_at: Date | string;
  activated_at: Date | string | null;
  retiring_at: Date | string | null;
  retired_at: Date | string | null;
  not_after: Date | string | null;
}

const COLUMNS =
  'kid, alg, use, state, public_jwk, created_at, activated_at, retiring_at, retired_at, not_after';

function date(value: Date | string | null): Date | null {
  return value === null ? null : value instanceof Date ? value : new Date(value);
}

function toRow(raw: RawRow): SigningKeyRow {
  return {
    kid: raw.kid,
    alg: raw.alg,
    use: raw.use,
    state: raw.state,
    publicJwk: typeof raw.public_jwk === 'string' ? JSON.parse(raw.public_jwk) : raw.public_jwk,
    createdAt: date(raw.created_at) as Date,
    activatedAt: date(raw.activated_at),
    retiringAt: date(raw.retiring_at),
    retiredAt: date(raw.retired_at),
    notAfter: date(raw.not_after),
  };
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

// Conflict targets name the partial unique indexes of migration 0004.
const ON_CONFLICT_CURRENT = `ON CONFLICT (alg, use) WHERE state = 'current' DO NOTHING`;
const ON_CONFLICT_NEXT = `ON CONFLICT (alg, use) WHERE state = 'next' DO NOTHING`;

export interface NewSigningKey {
  kid: string;
  alg: SigningAlg;
  use: KeyUse;
  publicJwk: PublicJwk;
  privateKeyEnc: Uint8Array;
}

/**
 * Inserts a key as `current` (first key of its set) or `next` (a rotation). One conditional
 * statement: when another node already holds that slot, nothing is inserted and false returned.
 */
export async function insertKey(
  db: Queryable,
  key: NewSigningKey,
  state: 'current' | 'next',
  nowMs: number,
): Promise<boolean> {
  const result = await db.query(
    `INSERT INTO signing_keys (kid, alg, use, state, public_jwk, private_key_enc, created_at, activated_at)
     VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7::timestamptz, $8::timestamptz)
     ${state === 'current' ? ON_CONFLICT_CURRENT : ON_CONFLICT_NEXT}`,
    [
      key.kid,
      key.alg,
      key.use,
      state,
      JSON.stringify(key.publicJwk),
      key.privateKeyEnc,
      iso(nowMs),
      state === 'current' ? iso(nowMs) : null,
    ],
  );
  return result.rowCount === 1;
}

/** Keys in the JWKS (next, current, retiring), with their sealed private parts. */
export async function listPublishedKeys(db: Queryable): Promise<SealedSigningKeyRow[]> {
  const { rows } = await db.query<RawRow>(
    `SELECT ${COLUMNS}, private_key_enc FROM signing_keys WHERE state <> 'retired' ORDER BY created_at, kid`,
  );
  return rows.map((raw) => ({ ...toRow(raw), privateKeyEnc: raw.private_key_enc as Uint8Array }));
}

/** Every key, newest first, without private parts (CLI listing). */
export async function listAllKeys(db: Queryable): Promise<SigningKeyRow[]> {
  const { rows } = await db.query<RawRow>(
    `SELECT ${COLUMNS} FROM signing_keys ORDER BY created_at DESC, kid`,
  );
  return rows.map(toRow);
}

export async function findKey(db: Queryable, kid: string): Promise<SigningKeyRow | undefined> {
  const { rows } = await db.query<RawRow>(`SELECT ${COLUMNS} FROM signing_keys WHERE kid = $1`, [kid]);
  return rows[0] ? toRow(rows[0]) : undefined;
}

/** The pending key of a set, if any. */
export async function findNextKey(
  db: Queryable,
  alg: SigningAlg,
  use: KeyUse,
): Promise<SigningKeyRow | undefined> {
  const { rows } = await db.query<RawRow>(
    `SELECT ${COLUMNS} FROM signing_keys WHERE alg = $1 AND use = $2 AND state = 'next'`,
    [alg, use],
  );
  return rows[0] ? toRow(rows[0]) : undefined;
}

export async function hasCurrentKey(db: Queryable, alg: SigningAlg, use: KeyUse): Promise<boolean> {
  const { rows } = await db.query(
    `SELECT 1 FROM signing_keys WHERE alg = $1 AND use = $2 AND state = 'current'`,
    [alg, use],
  );
  return rows.length > 0;
}

/** Retiring keys whose last token has expired become retired. Idempotent. */
export async function retireExpiredKeys(db: Queryable, nowMs: number): Promise<SigningKeyRow[]> {
  const { rows } = await db.query<RawRow>(
    `UPDATE signing_keys SET state = 'retired', retired_at = $1::timestamptz
     WHERE state = 'retiring' AND not_after <= $1::timestamptz
     RETURNING ${COLUMNS}`,
    [iso(nowMs)],
  );
  return rows.map(toRow);
}

/** Pending keys created at or before `createdBeforeMs`: published long enough to be promoted. */
export async function listPromotableKeys(db: Queryable, createdBeforeMs: number): Promise<SigningKeyRow[]> {
  const { rows } = await db.query<RawRow>(
    `SELECT ${COLUMNS} FROM signing_keys WHERE state = 'next' AND created_at <= $1::timestamptz ORDER BY created_at`,
    [iso(createdBeforeMs)],
  );
  return rows.map(toRow);
}

/** Current keys activated at or before `activatedBeforeMs` whose set has no pending key yet. */
export async function listKeysDueForRotation(
  db: Queryable,
  activatedBeforeMs: number,
): Promise<SigningKeyRow[]> {
  const { rows } = await db.query<RawRow>(
    `SELECT ${COLUMNS} FROM signing_keys AS k
     WHERE state = 'current' AND activated_at <= $1::timestamptz
       AND NOT EXISTS (SELECT 1 FROM signing_keys AS n WHERE n.alg = k.alg AND n.use = k.use AND n.state = 'next')`,
    [iso(activatedBeforeMs)],
  );
  return rows.map(toRow);
}

/**
 * Demotes the set's current key to retiring (published until `notAfterMs`). Conditional:
 * returns the demoted kid, or undefined when there was no current key.
 */
export async function demoteCurrentKey(
  tx: Queryable,
  alg: SigningAlg,
  use: KeyUse,
  nowMs: number,
  notAfterMs: number,
): Promise<string | undefined> {
  const { rows } = await tx.query<{ kid: string }>(
    `UPDATE signing_keys SET state = 'retiring', retiring_at = $3::timestamptz, not_after = $4::timestamptz
     WHERE alg = $1 AND use = $2 AND state = 'current'
     RETURNING kid`,
    [alg, use, iso(nowMs), iso(notAfterMs)],
  );
  return rows[0]?.kid;
}

/** Promotes a pending key to current; false when it is no longer pending (another node won). */
export async function promoteKey(tx: Queryable, kid: string, nowMs: number): Promise<boolean> {
  const result = await tx.query(
    `UPDATE signing_keys SET state = 'current', activated_at = $2::timestamptz WHERE kid = $1 AND state = 'next'`,
    [kid, iso(nowMs)],
  );
  return result.rowCount === 1;
}
