import { DependencyUnavailableError } from '../errors.ts';
import type { Logger } from '../logging/logger.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { Queryable } from '../storage/database.ts';
import { isUuid } from '../storage/ids.ts';
import type { AuditEvent, AuditLog } from './audit-log.ts';
import { AuditStore, type NewAuditRow } from './audit-store.ts';

export interface DatabaseAuditLogOptions {
  metrics?: Metrics | undefined;
  logger?: Logger | undefined;
  /** Queue length that triggers a write at once (default 100). */
  batchSize?: number;
  /** Longest an event waits in the queue while the database is up (default 250 ms). */
  flushIntervalMs?: number;
  /** Events kept while the database is down; beyond it the oldest are dropped (default 10,000). */
  maxQueue?: number;
  /** Rows per INSERT statement (default 500). */
  maxRowsPerInsert?: number;
  /** Back-off while the database is down: doubles from flushIntervalMs up to this (default 5000 ms). */
  maxRetryDelayMs?: number;
}

export const REDACTED = '[redacted]';
export const MAX_USER_AGENT_LENGTH = 512;
const MAX_STRING_LENGTH = 2000;
const MAX_DEPTH = 8;

// Key words whose values are treated as secrets wherever they appear in a key (any casing or separator).
const SECRET_FRAGMENTS = [
  'password',
  'passwd',
  'passphrase',
  'secret',
  'token',
  'apikey',
  'authorization',
  'cookie',
  'credential',
  'assertion',
  'privatekey',
];
// Short words that are secrets only as whole words (`code`, `key`), not inside `encode` or `monkey`.
const SECRET_WORDS = new Set(['pwd', 'code', 'codes', 'key', 'keys', 'otp', 'totp', 'jwt', 'bearer', 'pin']);
// A key ending in one of these names something about the secret, not the secret: `token_id`, `password_changed_at`.
const SAFE_LAST_WORDS = new Set([
  'id',
  'ids',
  'prefix',
  'type',
  'kind',
  'name',
  'method',
  'hint',
  'count',
  'length',
  'at',
  'expires',
  'expiry',
  'status',
  'reason',
  'version',
  'family',
  'purpose',
]);

function words(key: string): string[] {
  return key
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
}

/** True when a details key looks like it holds a credential. */
export function isSecretKey(key: string): boolean {
  const parts = words(key);
  if (parts.length === 0) return false;
  if (parts.length > 1 && SAFE_LAST_WORDS.has(parts.at(-1) as string)) return false;
  if (parts.some((part) => SECRET_WORDS.has(part))) return true;
  const joined = parts.join('');
  return SECRET_FRAGMENTS.some((fragment) => joined.includes(fragment));
}

const JWT_LIKE = /\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g;
const AUTH_SCHEME = /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi;

function scrubString(value: string): string {
  let out = value.length > MAX_STRING_LENGTH ? `${value.slice(0, MAX_STRING_LENGTH)}…` : value;
  // PostgreSQL text and jsonb reject NUL; one bad character must not sink a whole batch.
  out = out.replaceAll('\u0000', '');
  return out.replace(JWT_LIKE, REDACTED).replace(AUTH_SCHEME, `$1 ${REDACTED}`);
}

function scrubValue(value: unknown, depth: number, seen: WeakSet<object>): unknown {
  if (value === null || typeof value === 'boolean') return value;
  if (typeof value === 'string') return scrubString(value);
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
  if (typeof value === 'bigint') return value.toString();
  if (typeof value !== 'object') return undefined; // functions, symbols, undefined
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (depth >= MAX_DEPTH) return '[truncated]';
  if (seen.has(value)) return '[circular]';
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((item) => scrubValue(item, depth + 1, seen) ?? null);
    if (value instanceof Error) return { name: value.name, message: scrubString(value.message) };
    const out: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(value)) {
      const cleanKey = key.replaceAll('\u0000', '');
      if (isSecretKey(cleanKey) && inner !== null && inner !== undefined && typeof inner !== 'boolean') {
        out[cleanKey] = REDACTED;
        continue;
      }
      const scrubbed = scrubValue(inner, depth + 1, seen);
      if (scrubbed !== undefined) out[cleanKey] = scrubbed;
    }
    return out;
  } finally {
    seen.delete(value);
  }
}

/**
 * Defence in depth for `details`: values under secret-looking keys become '[redacted]' at any
 * depth, bearer credentials and JWTs inside strings too; the result is plain JSON.
 */
export function scrubDetails(details: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!details || typeof details !== 'object') return {};
  return scrubValue(details, 0, new WeakSet()) as Record<string, unknown>;
}

function clip(value: string | null | undefined, max: number): string | null {
  if (value === null || value === undefined) return null;
  const text = String(value).replaceAll('\u0000', '');
  return text.length > max ? text.slice(0, max) : text;
}

/** Turns a domain's event into a row: scrubbed, clipped, stamped with the time it happened. */
export function toAuditRow(event: AuditEvent, occurredAt = new Date()): NewAuditRow {
  const details = scrubDetails(event.details);
  // Columns are uuid; anything else (a client id, a malformed value) goes to details instead of failing the batch.
  const id = (value: string | null | undefined, name: string): string | null => {
    if (value === null || value === undefined || value === '') return null;
    if (isUuid(value)) return value.toLowerCase();
    details[`${name}_ref`] = scrubString(String(value).slice(0, 200));
    return null;
  };
  return {
    occurredAt,
    type: clip(event.type, 200) ?? 'unknown',
    outcome: event.outcome === 'success' ? 'success' : 'failure',
    actorId: id(event.actorId, 'actor'),
    subjectId: id(event.subjectId, 'subject'),
    ip: clip(event.ip, 100),
    userAgent: clip(event.userAgent, MAX_USER_AGENT_LENGTH),
    requestId: clip(event.requestId, 128),
    details,
  };
}

// Both drivers report an unreachable database as DependencyUnavailableError; anything else is a statement error.
function isUnavailable(error: unknown): boolean {
  return error instanceof DependencyUnavailableError;
}

/**
 * The audit trail's write side on the database. `record` only queues (never blocks a request,
 * never throws); a background flusher writes batches. While the database is down events stay
 * queued (bounded: the oldest are dropped and counted beyond `maxQueue`) and are written once
 * it is back. Shutdown order: stop the HTTP server, then `close()` this, then close the database.
 */
export class DatabaseAuditLog implements AuditLog {
  private readonly store: AuditStore;
  private readonly metrics: Metrics | undefined;
  private readonly logger: Logger | undefined;
  private readonly batchSize: number;
  private readonly flushIntervalMs: number;
  private readonly maxQueue: number;
  private readonly maxRowsPerInsert: number;
  private readonly maxRetryDelayMs: number;

  private queue: NewAuditRow[] = [];
  private timer: NodeJS.Timeout | undefined;
  private draining: Promise<boolean> | undefined;
  /** While the database is down: when to try next (epoch ms) and the current back-off. */
  private retryAt = 0;
  private retryDelayMs = 0;
  private outageStartedWith = 0;
  private closed = false;
  private droppedCount = 0;
  /** Rows taken off the queue by the current INSERT. */
  private inFlight = 0;

  constructor(db: Queryable, options: DatabaseAuditLogOptions = {}) {
    this.store = new AuditStore(db);
    this.metrics = options.metrics;
    this.logger = options.logger;
    this.batchSize = options.batchSize ?? 100;
    this.flushIntervalMs = options.flushIntervalMs ?? 250;
    this.maxQueue = options.maxQueue ?? 10_000;
    this.maxRowsPerInsert = options.maxRowsPerInsert ?? 500;
    this.maxRetryDelayMs = options.maxRetryDelayMs ?? 5000;
    this.metrics?.gauge('gatehouse_audit_queue_length', 'Audit events waiting to be written', [], (gauge) =>
      gauge.set(this.pending),
    );
  }

  /** Events queued or being written. */
  get pending(): number {
    return this.queue.length + this.inFlight;
  }

  /** Events lost since start (queue overflow, rejected by the database, recorded after close). */
  get dropped(): number {
    return this.droppedCount;
  }

  record(event: AuditEvent): void {
    try {
      this.metrics?.auditEvents.inc({ type: event.type, outcome: event.outcome });
      if (this.closed) {
        this.drop('closed', 1);
        this.logger?.warn(
          { type: event.type },
          'audit event recorded after the audit log was closed: dropped',
        );
        return;
      }
      this.queue.push(toAuditRow(event));
      this.enforceBound();
      if (this.queue.length >= this.batchSize && Date.now() >= this.retryAt) void this.drain();
      else this.schedule(Math.max(this.flushIntervalMs, this.retryAt - Date.now()));
    } catch (error) {
      // Auditing must never break the request that records.
      this.logger?.error({ err: error, type: event?.type }, 'audit event could not be queued');
    }
  }

  /**
   * Writes everything queued now (and whatever arrives meanwhile). Rejects with
   * DependencyUnavailableError when the database is down; the events stay queued.
   */
  async flush(): Promise<void> {
    this.clearTimer();
    for (;;) {
      if (this.draining) await this.draining;
      if (this.queue.length === 0) return;
      if (!(await this.drain())) {
        throw new DependencyUnavailableError('database', {
          cause: new Error(`${this.pending} audit event(s) are still queued`),
        });
      }
    }
  }

  /**
   * Stops the timer and flushes, retrying while the database is down for up to `timeoutMs`;
   * events still queued after that are logged as lost. Later `record` calls are dropped.
   */
  async close(timeoutMs = 5000): Promise<void> {
    this.closed = true;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.flush();
        this.clearTimer();
        return;
      } catch (error) {
        if (!(error instanceof DependencyUnavailableError) || Date.now() >= deadline) {
          const lost = this.pending;
          this.clearTimer();
          this.queue = [];
          this.drop('closed', lost);
          this.logger?.error({ lost, err: error }, 'audit log closed with events that could not be written');
          return;
        }
        await new Promise((resolve) =>
          setTimeout(resolve, Math.min(this.retryDelayMs, deadline - Date.now())),
        );
      }
    }
  }

  private drop(reason: 'overflow' | 'rejected' | 'closed', count: number): void {
    if (count <= 0) return;
    this.droppedCount += count;
    this.metrics?.auditDropped.inc({ reason }, count);
  }

  private enforceBound(): void {
    const excess = this.pending - this.maxQueue;
    if (excess <= 0) return;
    // Oldest first: during a long outage the most recent events are the ones worth keeping.
    const removed = this.queue.splice(0, Math.min(excess, this.queue.length)).length;
    this.drop('overflow', removed);
  }

  private schedule(delayMs: number): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.drain();
    }, delayMs);
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** One writer at a time; resolves false when the database is down (events re-queued, retry scheduled). */
  private drain(): Promise<boolean> {
    this.draining ??= this.writeAll()
      .catch((error: unknown) => {
        this.logger?.error({ err: error }, 'audit log writer failed');
        return false;
      })
      .finally(() => {
        this.draining = undefined;
      });
    return this.draining;
  }

  private async writeAll(): Promise<boolean> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxRowsPerInsert);
      this.inFlight = batch.length;
      let unwritten: NewAuditRow[] = [];
      try {
        unwritten = await this.write(batch);
      } finally {
        this.inFlight = 0;
      }
      if (unwritten.length > 0) {
        this.queue.unshift(...unwritten);
        this.enforceBound();
        this.backOff();
        return false;
      }
      if (this.retryDelayMs > 0) {
        this.logger?.info(
          { queued: this.outageStartedWith },
          'audit log: database is back, writing queued events',
        );
        this.retryDelayMs = 0;
        this.retryAt = 0;
      }
    }
    return true;
  }

  /** Writes a batch; returns the rows still to write when the database is unavailable. */
  private async write(batch: NewAuditRow[]): Promise<NewAuditRow[]> {
    try {
      await this.store.insert(batch);
      return [];
    } catch (error) {
      if (isUnavailable(error)) return batch;
      this.logger?.warn(
        { err: error, rows: batch.length },
        'audit batch rejected; writing its events one by one',
      );
    }
    // A statement error (not an outage): isolate the bad rows so the good ones still land.
    for (let index = 0; index < batch.length; index++) {
      const row = batch[index] as NewAuditRow;
      try {
        await this.store.insert([row]);
      } catch (error) {
        if (isUnavailable(error)) return batch.slice(index);
        this.drop('rejected', 1);
        this.logger?.error({ err: error, type: row.type }, 'audit event rejected by the database: dropped');
      }
    }
    return [];
  }

  private backOff(): void {
    if (this.retryDelayMs === 0) {
      this.outageStartedWith = this.pending;
      this.logger?.warn({ queued: this.pending }, 'audit log: database unavailable, keeping events queued');
    }
    this.retryDelayMs = Math.min(Math.max(this.retryDelayMs * 2, this.flushIntervalMs), this.maxRetryDelayMs);
    this.retryAt = Date.now() + this.retryDelayMs;
    this.clearTimer();
    this.schedule(this.retryDelayMs);
  }
}
