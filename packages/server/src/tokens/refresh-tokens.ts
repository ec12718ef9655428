/**
 * Refresh tokens: opaque, rotated on every use, grouped in families (one per grant). Presenting
 * a token that was already exchanged means two parties hold the family (RFC 9700 section
 * 4.14.2), so the whole family is revoked.
 */
import type { AuditEvent, AuditLog, RequestMeta } from '../audit/audit-log.ts';
import { generateToken, hashToken } from '../crypto/random-token.ts';
import type { Database, Queryable } from '../storage/database.ts';
import { isUuid } from '../storage/ids.ts';
import {
  deleteExpiredFamilies,
  type FamilyRow,
  findTokenState,
  insertFamilyWithToken,
  revokeFamiliesBySession,
  revokeFamiliesByUser,
  revokeFamilyById,
  rotateToken,
  type TokenStateRow,
} from './refresh-store.ts';
import { type TokenSubject, toTokenSubject } from './subject-store.ts';

/** Lets secret scanners and people recognise a leaked Gatehouse refresh token. */
export const REFRESH_TOKEN_PREFIX = 'ghr_';
const TOKEN_PATTERN = /^ghr_[A-Za-z0-9_-]{43}$/;

/** The revocation reason used when a consumed token comes back. */
export const REUSE_REVOCATION_REASON = 'reuse_detected';

export interface RefreshFamily {
  id: string;
  userId: string;
  clientId: string;
  sessionId: string | null;
  scope: string[];
  audience: string;
}

/**
 * Internal reasons, for logs and audit only: every one of them is `invalid_grant` to the caller
 * (RFC 6749 section 5.2), so a client learns nothing about someone else's token.
 * `reused_within_grace`: a consumed token came back within reuseGraceSeconds; refused, family kept.
 */
export type InvalidGrantReason =
  | 'unknown'
  | 'expired'
  | 'revoked'
  | 'client_mismatch'
  | 'reused'
  | 'reused_within_grace';

export class InvalidGrantError extends Error {
  readonly error = 'invalid_grant' as const;
  readonly reason: InvalidGrantReason;
  /** The family the token belongs to, when the token is known (for audit; never shown to the caller). */
  readonly familyId: string | null;
  readonly userId: string | null;
  constructor(reason: InvalidGrantReason, family?: { id: string; user_id: string }) {
    super('The refresh token is invalid, expired or revoked');
    this.name = 'InvalidGrantError';
    this.reason = reason;
    this.familyId = family?.id ?? null;
    this.userId = family?.user_id ?? null;
  }
}

export interface RefreshTokenServiceOptions {
  /** Lifetime of a family from its creation; rotation never extends it. Default 30 days. */
  absoluteTtlSeconds?: number;
  /** A token unused for this long expires. Default 7 days. */
  idleTtlSeconds?: number;
  /**
   * A consumed token presented again less than this long after it was consumed is refused
   * without revoking the family, which tolerates a client retrying a request whose response
   * it lost, or two tabs refreshing at once. The retry does NOT get the successor (only its
   * hash is stored): the client must use the successor it already has or sign in again.
   * Default 0: any second use revokes the family.
   */
  reuseGraceSeconds?: number;
  audit: AuditLog;
  /**
   * Called once for each family a call of this service newly revokes, whatever the reason
   * (`reuse_detected`, or the reason passed to a revoke method). Branch on the reason: e.g.
   * revoke the session on `reuse_detected`. Awaited; what it throws reaches the caller after
   * the revocation itself is committed.
   */
  onFamilyRevoked?: (family: RefreshFamily, reason: string) => Promise<void>;
  /** Metric hook: called once per family revoked because of reuse. */
  onReuseDetected?: () => void;
  /** Epoch milliseconds; the only clock expiry is judged by. */
  now?: () => number;
}

export interface CreateFamilyInput {
  userId: string;
  clientId: string;
  sessionId: string | null;
  scope: string[];
  audience: string;
}

export interface IssuedRefreshToken {
  familyId: string;
  refreshToken: string;
  /** When this token expires unless used (never after the family's absolute expiry). */
  expiresAt: Date;
  absoluteExpiresAt: Date;
}

export interface RotatedRefreshToken {
  family: RefreshFamily;
  /** The family's user as the rotation statement read them, for the new access token. */
  subject: TokenSubject;
  refreshToken: string;
  expiresAt: Date;
  absoluteExpiresAt: Date;
}

export type RevokeByTokenOutcome = 'revoked' | 'unknown' | 'client_mismatch';

const DAY = 86_400;

export class RefreshTokenService {
  readonly #db: Database;
  readonly #absoluteTtlMs: number;
  readonly #idleTtlMs: number;
  readonly #graceMs: number;
  readonly #audit: AuditLog;
  readonly #onFamilyRevoked: ((family: RefreshFamily, reason: string) => Promise<void>) | undefined;
  readonly #onReuseDetected: (() => void) | undefined;
  readonly #now: () => number;

  constructor(db: Database, options: RefreshTokenServiceOptions) {
    this.#db = db;
    this.#absoluteTtlMs = seconds('absoluteTtlSeconds', options.absoluteTtlSeconds ?? 30 * DAY, 1) * 1000;
    this.#idleTtlMs = seconds('idleTtlSeconds', options.idleTtlSeconds ?? 7 * DAY, 1) * 1000;
    this.#graceMs = seconds('reuseGraceSeconds', options.reuseGraceSeconds ?? 0, 0) * 1000;
    this.#audit = options.audit;
    this.#onFamilyRevoked = options.onFamilyRevoked;
    this.#onReuseDetected = options.onReuseDetected;
    this.#now = options.now ?? Date.now;
  }

  /** Starts a family with its first token. Pass `tx` to create it inside the caller's transaction. */
  async createFamily(input: CreateFamilyInput, tx?: Queryable): Promise<IssuedRefreshToken> {
    const nowMs = this.#now();
    const now = new Date(nowMs);
    const absoluteExpiresAt = new Date(nowMs + this.#absoluteTtlMs);
    const expiresAt = new Date(Math.min(nowMs + this.#idleTtlMs, absoluteExpiresAt.getTime()));
    const { token, hash } = generateRefreshToken();
    const familyId = await insertFamilyWithToken(tx ?? this.#db, {
      ...input,
      now,
      absoluteExpiresAt,
      tokenHash: hash,
      idleExpiresAt: expiresAt,
    });
    return { familyId, refreshToken: token, expiresAt, absoluteExpiresAt };
  }

  /**
   * Exchanges a refresh token for its successor. Throws InvalidGrantError when the token is
   * unknown, expired, revoked, bound to another client, or already used (which revokes the family).
   */
  async rotate(input: {
    refreshToken: string;
    clientId: string;
    meta?: RequestMeta;
  }): Promise<RotatedRefreshToken> {
    if (!TOKEN_PATTERN.test(input.refreshToken)) throw new InvalidGrantError('unknown');
    const hash = hashToken(input.refreshToken);
    const successor = generateRefreshToken();
    const nowMs = this.#now();
    const rotated = await rotateToken(this.#db, {
      hash,
      successorHash: successor.hash,
      clientId: input.clientId,
      now: new Date(nowMs),
      idleExpiresAt: new Date(nowMs + this.#idleTtlMs),
    });
    if (rotated) {
      return {
        family: toFamily(rotated),
        subject: toTokenSubject(rotated),
        refreshToken: successor.token,
        expiresAt: rotated.idle_expires_at,
        absoluteExpiresAt: rotated.absolute_expires_at,
      };
    }
    // Nothing was consumed: read the token to tell why (the answer is invalid_grant either way).
    const state = await findTokenState(this.#db, hash);
    throw await this.#refusal(state, input.clientId, nowMs, input.meta);
  }

  async #refusal(
    state: TokenStateRow | undefined,
    clientId: string,
    nowMs: number,
    meta: RequestMeta | undefined,
  ): Promise<InvalidGrantError> {
    if (!state) return new InvalidGrantError('unknown');
    // Checked first: another client's token must neither be consumed nor revoke anything.
    if (state.client_id !== clientId) return new InvalidGrantError('client_mismatch', state);
    if (state.revoked_at) return new InvalidGrantError('revoked', state);
    if (state.absolute_expires_at.getTime() <= nowMs) return new InvalidGrantError('expired', state);
    if (state.consumed_at) {
      // A consumed token counts as reuse even past its idle expiry: the family is still alive,
      // and only someone holding an old copy can present it.
      if (nowMs - state.consumed_at.getTime() < this.#graceMs) {
        return new InvalidGrantError('reused_within_grace', state);
      }
      const revoked = await revokeFamilyById(this.#db, state.id, REUSE_REVOCATION_REASON, new Date(nowMs));
      // Only the caller whose UPDATE revoked the family reports it: concurrent replays of one
      // token all land here, and the family is revoked, audited and announced once.
      if (revoked.length > 0) {
        this.#audit.record({
          type: 'token.reuse_detected',
          outcome: 'failure',
          subjectId: state.user_id,
          ...metaFields(meta),
          details: { familyId: state.id, clientId: state.client_id },
        });
        this.#onReuseDetected?.();
        await this.#announce(revoked, REUSE_REVOCATION_REASON, meta);
      }
      return new InvalidGrantError('reused', state);
    }
    if (state.idle_expires_at.getTime() <= nowMs) return new InvalidGrantError('expired', state);
    // The statement found the token live yet consumed nothing; only a state change between the
    // two reads could cause that. Refuse: the client can retry.
    return new InvalidGrantError('unknown', state);
  }

  /** Revokes one family. True when this call revoked it, false when it was already revoked or unknown. */
  async revokeFamily(familyId: string, reason: string, meta?: RequestMeta): Promise<boolean> {
    if (!isUuid(familyId)) return false;
    const revoked = await revokeFamilyById(this.#db, familyId, reason, new Date(this.#now()));
    await this.#announce(revoked, reason, meta);
    return revoked.length > 0;
  }

  /** Revokes every family started from a session (sign-out, session revoked). Returns how many it revoked. */
  async revokeFamiliesForSession(sessionId: string, reason: string, meta?: RequestMeta): Promise<number> {
    if (!isUuid(sessionId)) return 0;
    const revoked = await revokeFamiliesBySession(this.#db, sessionId, reason, new Date(this.#now()));
    await this.#announce(revoked, reason, meta);
    return revoked.length;
  }

  /** Revokes every family of a user (password change, disable, sign out everywhere). */
  async revokeAllForUser(userId: string, reason: string, meta?: RequestMeta): Promise<number> {
    if (!isUuid(userId)) return 0;
    const revoked = await revokeFamiliesByUser(this.#db, userId, reason, new Date(this.#now()));
    await this.#announce(revoked, reason, meta);
    return revoked.length;
  }

  /**
   * Logout and RFC 7009 revocation: revoking any token of a family, consumed or not, revokes
   * the family. `revoked` also when it already was (idempotent). RFC 7009 answers 200 for
   * `unknown`; `client_mismatch` means the token belongs to another client and nothing changed.
   */
  async revokeByToken(
    refreshToken: string,
    clientId: string,
    meta?: RequestMeta,
  ): Promise<RevokeByTokenOutcome> {
    if (!TOKEN_PATTERN.test(refreshToken)) return 'unknown';
    const state = await findTokenState(this.#db, hashToken(refreshToken));
    if (!state) return 'unknown';
    if (state.client_id !== clientId) return 'client_mismatch';
    if (!state.revoked_at) {
      const revoked = await revokeFamilyById(this.#db, state.id, 'revoked_by_client', new Date(this.#now()));
      await this.#announce(revoked, 'revoked_by_client', meta);
    }
    return 'revoked';
  }

  /** Deletes families past their absolute expiry (and their tokens). Safe to run on every node. */
  async purgeExpired(): Promise<number> {
    return deleteExpiredFamilies(this.#db, new Date(this.#now()));
  }

  /** Audits each newly revoked family and runs the hook for each; the first hook failure is rethrown. */
  async #announce(rows: FamilyRow[], reason: string, meta: RequestMeta | undefined): Promise<void> {
    let failure: { error: unknown } | undefined;
    for (const row of rows) {
      const event: AuditEvent = {
        type: 'token.family_revoked',
        outcome: 'success',
        subjectId: row.user_id,
        ...metaFields(meta),
        details: { familyId: row.id, clientId: row.client_id, reason },
      };
      this.#audit.record(event);
      if (!this.#onFamilyRevoked) continue;
      try {
        await this.#onFamilyRevoked(toFamily(row), reason);
      } catch (error) {
        failure ??= { error };
      }
    }
    if (failure) throw failure.error;
  }
}

/** A fresh token (256 random bits) and the SHA-256 that is all the database ever sees. */
export function generateRefreshToken(): { token: string; hash: Buffer } {
  const token = generateToken(REFRESH_TOKEN_PREFIX);
  return { token, hash: hashToken(token) };
}

function toFamily(row: FamilyRow): RefreshFamily {
  return {
    id: row.id,
    userId: row.user_id,
    clientId: row.client_id,
    sessionId: row.session_id,
    scope: row.scope,
    audience: row.audience,
  };
}

function metaFields(meta: RequestMeta | undefined): Pick<AuditEvent, 'ip' | 'userAgent' | 'requestId'> {
  return meta ? { ip: meta.ip, userAgent: meta.userAgent, requestId: meta.requestId } : {};
}

function seconds(name: string, value: number, min: number): number {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`${name} must be an integer >= ${min}, got ${value}`);
  }
  return value;
}
