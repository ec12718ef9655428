import { generateToken, hashToken, hashTokenBase64 } from '../crypto/random-token.ts';
import type { StateStore } from '../state/state-store.ts';
import type { Database, Queryable } from '../storage/database.ts';
import { describeDevice } from './device.ts';
import * as store from './session-store.ts';

export interface SessionSettings {
  idleSeconds: number;
  absoluteSeconds: number;
  /** How long a validated session may be served from this process's cache before re-reading it. */
  cacheSeconds: number;
}

export interface ValidSession {
  sessionId: string;
  userId: string;
}

export interface SessionView {
  id: string;
  ip: string | null;
  userAgent: string | null;
  /** e.g. "Chrome on macOS", from the user agent. */
  device: string;
  createdAt: string;
  lastSeenAt: string;
  current: boolean;
}

/** Called after sessions are revoked, so refresh families tied to them die with them. */
export type SessionsRevokedHook = (sessionIds: string[], userId: string, reason: string) => Promise<void>;

const CHANNEL = 'sessions.revoked';
const CACHE_LIMIT = 50_000;
const TOUCH_INTERVAL_MS = 60_000;

interface CacheEntry extends ValidSession {
  freshUntil: number;
  touchedAt: number;
}

/**
 * Browser sessions: 256-bit tokens kept only as SHA-256. Validation is served from a short
 * per-process cache so a cookie check does not cost a database round trip; revocations are
 * published on the state store so every process drops the session at once, and the cache
 * lifetime bounds staleness should a message be lost.
 */
export class SessionService {
  private readonly db: Database;
  private readonly state: StateStore;
  readonly settings: SessionSettings;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly hooks: SessionsRevokedHook[] = [];
  private unsubscribe: (() => Promise<void>) | undefined;

  constructor(db: Database, state: StateStore, settings: SessionSettings) {
    this.db = db;
    this.state = state;
    this.settings = settings;
  }

  onRevoked(hook: SessionsRevokedHook): void {
    this.hooks.push(hook);
  }

  async start(): Promise<void> {
    this.unsubscribe = await this.state.subscribe(CHANNEL, (message) => this.forget(JSON.parse(message)));
  }

  async stop(): Promise<void> {
    await this.unsubscribe?.();
  }

  async create(
    input: { userId: string; ip: string | null; userAgent: string | null },
    tx: Queryable = this.db,
  ) {
    const token = generateToken();
    const session = await store.insertSession(tx, {
      ...input,
      userAgent: input.userAgent?.slice(0, 512) ?? null,
      tokenHash: hashToken(token),
      idleSeconds: this.settings.idleSeconds,
      absoluteSeconds: this.settings.absoluteSeconds,
    });
    return { token, session };
  }

  /** The session a cookie token stands for, or null when it is unknown, expired, revoked or its user disabled. */
  async validate(token: string): Promise<ValidSession | null> {
    if (token.length < 32 || token.length > 64) return null;
    const key = hashTokenBase64(token);
    const now = Date.now();
    const cached = this.cache.get(key);
    if (cached && cached.freshUntil > now) {
      this.touch(cached, now);
      return { sessionId: cached.sessionId, userId: cached.userId };
    }
    const row = await store.findLiveSessionByHash(this.db, Buffer.from(key, 'base64'));
    if (!row) {
      this.cache.delete(key);
      return null;
    }
    if (this.cache.size >= CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value as string);
    const entry: CacheEntry = {
      sessionId: row.id,
      userId: row.user_id,
      freshUntil: Math.min(
        now + this.settings.cacheSeconds * 1000,
        row.absolute_expires_at.getTime(),
        row.idle_expires_at.getTime(),
      ),
      touchedAt: row.last_seen_at.getTime(),
    };
    this.cache.set(key, entry);
    this.touch(entry, now);
    return { sessionId: row.id, userId: row.user_id };
  }

  private touch(entry: CacheEntry, now: number): void {
    if (now - entry.touchedAt < TOUCH_INTERVAL_MS) return;
    entry.touchedAt = now;
    // Off the request path: a lost last-seen update only shortens the idle window.
    store.touchSession(this.db, entry.sessionId, this.settings.idleSeconds).catch(() => {});
  }

  async list(userId: string, currentSessionId: string | null): Promise<SessionView[]> {
    const rows = await store.listLiveSessions(this.db, userId);
    return rows.map((row) => ({
      id: row.id,
      ip: row.ip,
      userAgent: row.user_agent,
      device: describeDevice(row.user_agent),
      createdAt: row.created_at.toISOString(),
      lastSeenAt: row.last_seen_at.toISOString(),
      current: row.id === currentSessionId,
    }));
  }

  async revoke(userId: string, sessionId: string, reason: string): Promise<boolean> {
    const revoked = await store.revokeSession(this.db, userId, sessionId, reason);
    if (revoked) await this.announce([sessionId], userId, reason);
    return revoked;
  }

  /** Ends every session of the user but `keepId` (password change, "sign out other devices"). */
  async revokeOthers(
    userId: string,
    keepId: string | null,
    reason: string,
    tx?: Queryable,
  ): Promise<string[]> {
    const ids = await store.revokeUserSessions(tx ?? this.db, userId, reason, keepId);
    if (!tx) await this.announce(ids, userId, reason);
    return ids;
  }

  /** Ends every session of the user (disable, reset, log out everywhere). */
  revokeAll(userId: string, reason: string, tx?: Queryable): Promise<string[]> {
    return this.revokeOthers(userId, null, reason, tx);
  }

  /**
   * Tells every process (and the hooks) that sessions ended. Call after the transaction that
   * revoked them committed; the revoke methods do it themselves when given no transaction.
   */
  async announce(sessionIds: string[], userId: string, reason: string): Promise<void> {
    if (sessionIds.length === 0) return;
    this.forget({ sessionIds });
    for (const hook of this.hooks) await hook(sessionIds, userId, reason);
    // Other processes: best effort; their cache lifetime bounds the delay if this is lost.
    await this.state.publish(CHANNEL, JSON.stringify({ sessionIds })).catch(() => {});
  }

  private forget(message: { sessionIds?: string[] }): void {
    const ids = new Set(message.sessionIds ?? []);
    if (ids.size === 0) return;
    for (const [key, entry] of this.cache) if (ids.has(entry.sessionId)) this.cache.delete(key);
  }
}
