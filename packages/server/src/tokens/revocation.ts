/**
 * Revocation of access tokens that reaches every verifier. Two mechanisms: a jti denylist for
 * single tokens, and a per-user version (`ver` claim) that revokes every older token of a user
 * at once. PostgreSQL holds both and an event feed; each node keeps them in memory so the
 * check on every request is a synchronous map lookup. Nodes learn of revocations through the
 * state store's pub/sub (milliseconds) and, should a message be lost, by reading the feed
 * every few seconds, so they converge even with pub/sub down.
 */
import type { AuditLog, RequestMeta } from '../audit/audit-log.ts';
import type { StateStore } from '../state/state-store.ts';
import type { Database } from '../storage/database.ts';
import { isUuid } from '../storage/ids.ts';
import {
  deleteExpired,
  type EventRow,
  incrementUserVersion,
  insertRevokedToken,
  insertTokenEvent,
  insertUserEvent,
  lockEventWriters,
  selectDenylist,
  selectEventsSince,
  selectLatestEventId,
  selectUserVersion,
  selectUserVersions,
} from './revocation-store.ts';

/** Pub/sub channel on the state store. */
export const REVOCATION_CHANNEL = 'revocations';
/** State-store key prefix of the denylist mirror (value '1', expires with the token). */
export const REVOKED_JTI_KEY_PREFIX = 'revoked:jti:';

const CATCH_UP_PAGE = 1000;

/** What the feed and pub/sub carry. `token`: that jti is revoked until `exp`. `user`: tokens of `sub` with `ver` below this `ver` are revoked. */
export interface RevocationEvent {
  id: number;
  kind: 'token' | 'user';
  jti?: string;
  sub?: string;
  ver?: number;
  /** Epoch seconds. */
  exp?: number;
}

/** The claims the check needs; `ver` absent counts as 0. */
export interface RevocationClaims {
  jti: string;
  sub: string;
  ver?: number;
  exp: number;
}

export interface RevocationLogger {
  warn(details: object, message: string): void;
}

export interface RevocationServiceOptions {
  audit: AuditLog;
  logger?: RevocationLogger;
  /** Epoch milliseconds. */
  now?: () => number;
  /** How often the event feed is read, in case a pub/sub message was lost. Default 5000. */
  catchUpIntervalMs?: number;
  /** How often expired denylist entries leave memory. Default 60000. */
  pruneIntervalMs?: number;
  /** How often expired rows leave the database (every node may do it); 0 disables. Default 600000. */
  purgeIntervalMs?: number;
  /** User events are kept this long; must exceed the longest access-token lifetime. Default 1 day. */
  userEventRetentionSeconds?: number;
}

type Message =
  | { kind: 'token'; jti: string; userId: string | null; exp: number; eventId: number }
  | { kind: 'user'; userId: string; version: number; eventId: number };

export class RevocationService {
  readonly #db: Database;
  readonly #state: StateStore;
  readonly #audit: AuditLog;
  readonly #logger: RevocationLogger | undefined;
  readonly #now: () => number;
  readonly #catchUpIntervalMs: number;
  readonly #pruneIntervalMs: number;
  readonly #purgeIntervalMs: number;
  readonly #userEventRetentionMs: number;
  /** jti -> exp (epoch seconds). */
  readonly #denied = new Map<string, number>();
  /** user id -> current token version. */
  readonly #versions = new Map<string, number>();
  /** Every event up to this id is applied. Only the feed read moves it: pub/sub may deliver out of order. */
  #lastEventId = 0;
  #started = false;
  /** Stays true after stop(): requests still in flight during shutdown keep being checked. */
  #loaded = false;
  #timers: NodeJS.Timeout[] = [];
  #unsubscribe: (() => Promise<void>) | undefined;
  #subscribing: Promise<void> | undefined;
  #catchingUp: Promise<number> | undefined;

  constructor(db: Database, state: StateStore, options: RevocationServiceOptions) {
    this.#db = db;
    this.#state = state;
    this.#audit = options.audit;
    this.#logger = options.logger;
    this.#now = options.now ?? Date.now;
    this.#catchUpIntervalMs = options.catchUpIntervalMs ?? 5000;
    this.#pruneIntervalMs = options.pruneIntervalMs ?? 60_000;
    this.#purgeIntervalMs = options.purgeIntervalMs ?? 600_000;
    this.#userEventRetentionMs = (options.userEventRetentionSeconds ?? 86_400) * 1000;
  }

  /** Loads the denylist and user versions, subscribes, and starts the catch-up and pruning timers. */
  async start(): Promise<void> {
    if (this.#started) return;
    // Subscribe before loading: a revocation published meanwhile is then not lost (applying twice is harmless).
    await this.#subscribe();
    // The cursor is read before the tables: every event up to it is committed (ids follow commit
    // order), so the tables read next reflect it; later events come from the feed.
    try {
      const lastEventId = await selectLatestEventId(this.#db);
      const nowMs = this.#now();
      for (const row of await selectDenylist(this.#db, new Date(nowMs))) {
        this.#deny(row.jti, Math.floor(row.expires_at.getTime() / 1000), nowMs);
      }
      for (const row of await selectUserVersions(this.#db)) this.#raiseVersion(row.user_id, row.version);
      this.#lastEventId = Math.max(this.#lastEventId, lastEventId);
    } catch (error) {
      await this.#unsubscribe?.().catch(() => {});
      this.#unsubscribe = undefined;
      throw error;
    }
    this.#started = true;
    this.#loaded = true;
    this.#every(this.#catchUpIntervalMs, async () => {
      if (!this.#unsubscribe) await this.#subscribe();
      await this.catchUp();
    });
    this.#every(this.#pruneIntervalMs, async () => {
      this.prune();
    });
    if (this.#purgeIntervalMs > 0)
      this.#every(this.#purgeIntervalMs, () => this.purgeExpired().then(() => {}));
  }

  /** Stops timers and the subscription. The in-memory state stays (and is still checked); `start` again resumes. */
  async stop(): Promise<void> {
    this.#started = false;
    for (const timer of this.#timers) clearInterval(timer);
    this.#timers = [];
    await this.#subscribing;
    const unsubscribe = this.#unsubscribe;
    this.#unsubscribe = undefined;
    await unsubscribe?.().catch(() => {});
    await this.#catchingUp?.catch(() => {});
  }

  /**
   * The check on every request, from memory: true when the jti is denylisted or the token was
   * issued before the user's current version. Throws before `start` (failing open would accept revoked tokens).
   */
  isRevoked(claims: RevocationClaims): boolean {
    if (!this.#loaded) throw new Error('RevocationService.isRevoked called before start()');
    if (this.#denied.has(claims.jti)) return true;
    const version = this.#versions.get(claims.sub);
    return version !== undefined && (claims.ver ?? 0) < version;
  }

  /**
   * Denylists one access token until it expires. `expiresAt` is the token's `exp` (epoch
   * seconds); `userId` is null for a token without a user (a subject that is not a user id,
   * e.g. a client-credentials `sub`, is stored as null). True when this call revoked it;
   * false when it already was revoked or has expired.
   */
  async revokeAccessToken(input: {
    jti: string;
    userId: string | null;
    expiresAt: number;
    reason: string;
    meta?: RequestMeta;
  }): Promise<boolean> {
    const { jti, expiresAt } = input;
    const userId = input.userId && isUuid(input.userId) ? input.userId : null;
    const nowMs = this.#now();
    const ttlMs = Math.ceil(expiresAt * 1000 - nowMs);
    if (ttlMs <= 0) return false;
    const token = { jti, userId, expiresAt: new Date(expiresAt * 1000) };
    const eventId = await this.#db.transaction(async (tx) => {
      await lockEventWriters(tx);
      if (!(await insertRevokedToken(tx, token))) return null;
      return insertTokenEvent(tx, token);
    });
    this.#deny(jti, expiresAt, nowMs);
    // The mirror lets other components check the denylist in the state store; PostgreSQL stays authoritative.
    await this.#bestEffort('mirror', () =>
      this.#state.setIfAbsent(REVOKED_JTI_KEY_PREFIX + jti, '1', ttlMs).then(() => {}),
    );
    if (eventId === null) return false;
    await this.#publish({ kind: 'token', jti, userId, exp: expiresAt, eventId });
    this.#audit.record({
      type: 'token.revoked',
      outcome: 'success',
      subjectId: userId,
      ...metaFields(input.meta),
      details: { jti, reason: input.reason },
    });
    return true;
  }

  /**
   * Revokes every access token the user holds now (password change or reset, disable, sign out
   * everywhere, losing a role or permission) and returns the new version, which tokens issued
   * from now on carry as `ver`.
   */
  async bumpUserVersion(userId: string, reason: string, meta?: RequestMeta): Promise<number> {
    const { version, eventId } = await this.#db.transaction(async (tx) => {
      await lockEventWriters(tx);
      const version = await incrementUserVersion(tx, userId);
      return { version, eventId: await insertUserEvent(tx, userId, version) };
    });
    this.#raiseVersion(userId, version);
    await this.#publish({ kind: 'user', userId, version, eventId });
    this.#audit.record({
      type: 'token.user_version_bumped',
      outcome: 'success',
      subjectId: userId,
      ...metaFields(meta),
      details: { reason, version },
    });
    return version;
  }

  /** The user's token version as this process knows it (memory; raised by events and catch-up). */
  knownVersion(userId: string): number {
    return this.#versions.get(userId) ?? 0;
  }

  /** The user's token version as the database holds it (authoritative; grants read it with their roles, subject-store.ts). */
  async currentVersion(userId: string): Promise<number> {
    if (!isUuid(userId)) return 0;
    return selectUserVersion(this.#db, userId);
  }

  /** Events after `sinceId`, oldest first, for verifiers that follow the HTTP feed. */
  async listSince(sinceId: number, limit: number): Promise<RevocationEvent[]> {
    const rows = await selectEventsSince(this.#db, sinceId, limit);
    return rows.map(toEvent);
  }

  /** Applies events written since the last read; runs on a timer, callable directly. Returns how many it applied. */
  catchUp(): Promise<number> {
    this.#catchingUp ??= (async () => {
      let applied = 0;
      try {
        for (;;) {
          const rows = await selectEventsSince(this.#db, this.#lastEventId, CATCH_UP_PAGE);
          const nowMs = this.#now();
          for (const row of rows) {
            this.#applyRow(row, nowMs);
            this.#lastEventId = row.id;
          }
          applied += rows.length;
          if (rows.length < CATCH_UP_PAGE) return applied;
        }
      } finally {
        this.#catchingUp = undefined;
      }
    })();
    return this.#catchingUp;
  }

  /** Drops expired denylist entries from memory; returns how many. */
  prune(): number {
    const nowSeconds = this.#now() / 1000;
    let pruned = 0;
    for (const [jti, exp] of this.#denied) {
      if (exp <= nowSeconds) {
        this.#denied.delete(jti);
        pruned++;
      }
    }
    return pruned;
  }

  /** Deletes expired denylist rows and events the feed no longer needs. */
  async purgeExpired(): Promise<{ tokens: number; events: number }> {
    const nowMs = this.#now();
    return deleteExpired(this.#db, new Date(nowMs), new Date(nowMs - this.#userEventRetentionMs));
  }

  /** For metrics and tests. */
  get stats(): { deniedTokens: number; userVersions: number; lastEventId: number; subscribed: boolean } {
    return {
      deniedTokens: this.#denied.size,
      userVersions: this.#versions.size,
      lastEventId: this.#lastEventId,
      subscribed: this.#unsubscribe !== undefined,
    };
  }

  #deny(jti: string, exp: number, nowMs: number): void {
    if (exp * 1000 > nowMs) this.#denied.set(jti, exp);
  }

  /** Versions only grow, so events applied twice or out of order leave the right value. */
  #raiseVersion(userId: string, version: number): void {
    if (version > (this.#versions.get(userId) ?? 0)) this.#versions.set(userId, version);
  }

  #applyRow(row: EventRow, nowMs: number): void {
    if (row.kind === 'token' && row.jti && row.expires_at) {
      this.#deny(row.jti, Math.floor(row.expires_at.getTime() / 1000), nowMs);
    } else if (row.kind === 'user' && row.user_id && row.version !== null) {
      this.#raiseVersion(row.user_id, row.version);
    }
  }

  #onMessage(raw: string): void {
    const message = parseMessage(raw);
    if (!message) {
      this.#logger?.warn({ channel: REVOCATION_CHANNEL }, 'ignored a malformed revocation message');
      return;
    }
    if (message.kind === 'token') this.#deny(message.jti, message.exp, this.#now());
    else this.#raiseVersion(message.userId, message.version);
  }

  async #subscribe(): Promise<void> {
    this.#subscribing ??= (async () => {
      try {
        this.#unsubscribe = await this.#state.subscribe(REVOCATION_CHANNEL, (raw) => this.#onMessage(raw));
      } catch (error) {
        // Not fatal: the feed read still delivers, and the next timer tick tries again.
        this.#logger?.warn({ err: error }, 'cannot subscribe to revocations; relying on the database feed');
      } finally {
        this.#subscribing = undefined;
      }
    })();
    return this.#subscribing;
  }

  async #publish(message: Message): Promise<void> {
    await this.#bestEffort('publish', () => this.#state.publish(REVOCATION_CHANNEL, JSON.stringify(message)));
  }

  /** The database has committed the revocation; a state-store failure only delays other nodes until catch-up. */
  async #bestEffort(action: string, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (error) {
      this.#logger?.warn(
        { err: error, action },
        'revocation not sent to the state store; nodes catch up from the database',
      );
    }
  }

  #every(intervalMs: number, task: () => Promise<void>): void {
    const timer = setInterval(() => {
      task().catch((error: unknown) => {
        this.#logger?.warn({ err: error }, 'revocation background task failed');
      });
    }, intervalMs);
    // Housekeeping must not keep the process alive.
    timer.unref();
    this.#timers.push(timer);
  }
}

function toEvent(row: EventRow): RevocationEvent {
  const event: RevocationEvent = { id: row.id, kind: row.kind };
  if (row.jti !== null) event.jti = row.jti;
  if (row.user_id !== null) event.sub = row.user_id;
  if (row.version !== null) event.ver = row.version;
  if (row.expires_at !== null) event.exp = Math.floor(row.expires_at.getTime() / 1000);
  return event;
}

function parseMessage(raw: string): Message | undefined {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const m = value as Record<string, unknown>;
  if (m.kind === 'token' && typeof m.jti === 'string' && typeof m.exp === 'number') {
    return {
      kind: 'token',
      jti: m.jti,
      exp: m.exp,
      userId: typeof m.userId === 'string' ? m.userId : null,
      eventId: Number(m.eventId),
    };
  }
  if (m.kind === 'user' && typeof m.userId === 'string' && Number.isSafeInteger(m.version)) {
    return { kind: 'user', userId: m.userId, version: m.version as number, eventId: Number(m.eventId) };
  }
  return undefined;
}

function metaFields(meta: RequestMeta | undefined): {
  ip?: string | null;
  userAgent?: string | null;
  requestId?: string | null;
} {
  return meta ? { ip: meta.ip, userAgent: meta.userAgent, requestId: meta.requestId } : {};
}
