import type { Queryable } from '../storage/database.ts';

/** An event ready to be written: already scrubbed and normalised by the audit service. */
export interface NewAuditRow {
  occurredAt: Date;
  type: string;
  outcome: 'success' | 'failure';
  actorId: string | null;
  subjectId: string | null;
  ip: string | null;
  userAgent: string | null;
  requestId: string | null;
  details: Record<string, unknown>;
}

export interface AuditRecord extends NewAuditRow {
  id: number;
}

export interface AuditFilter {
  /** Events where this user is the actor or the subject. */
  userId?: string | undefined;
  /** Exact type, or a prefix when it ends with '.' (e.g. 'login.'). */
  type?: string | undefined;
  /** Inclusive lower bound on occurred_at. */
  from?: Date | undefined;
  /** Exclusive upper bound on occurred_at. */
  to?: Date | undefined;
  /** Opaque cursor from a previous page's nextCursor. */
  cursor?: string | undefined;
  /** Page size, 1..200 (default 50). */
  limit?: number | undefined;
}

export interface AuditPage {
  items: AuditRecord[];
  /** Cursor for the next (older) page; null on the last page. */
  nextCursor: string | null;
}

export const MAX_PAGE_SIZE = 200;
export const DEFAULT_PAGE_SIZE = 50;
/** Values per inserted row (id is generated). */
const COLUMNS = 9;

export class InvalidCursorError extends Error {
  constructor() {
    super('The cursor is malformed');
    this.name = 'InvalidCursorError';
  }
}

interface Position {
  /** occurred_at in microseconds since the epoch: exact, unlike a JS Date. */
  micros: number;
  id: number;
}

export function encodeCursor(position: Position): string {
  return Buffer.from(`${position.micros}.${position.id}`).toString('base64url');
}

export function decodeCursor(cursor: string): Position {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(cursor)) throw new InvalidCursorError();
  const match = /^(-?\d{1,17})\.(\d{1,16})$/.exec(Buffer.from(cursor, 'base64url').toString('latin1'));
  if (!match) throw new InvalidCursorError();
  const micros = Number(match[1]);
  const id = Number(match[2]);
  if (!Number.isSafeInteger(micros) || !Number.isSafeInteger(id)) throw new InvalidCursorError();
  return { micros, id };
}

interface Row {
  id: number;
  occurred_at: Date;
  micros: number;
  type: string;
  outcome: 'success' | 'failure';
  actor_id: string | null;
  subject_id: string | null;
  ip: string | null;
  user_agent: string | null;
  request_id: string | null;
  details: Record<string, unknown>;
}

/** SQL for the audit trail. The table is append-only: there is deliberately no update or delete. */
export class AuditStore {
  private readonly db: Queryable;

  constructor(db: Queryable) {
    this.db = db;
  }

  /** Writes the rows in one multi-row INSERT (callers keep batches to a few hundred rows). */
  async insert(rows: readonly NewAuditRow[]): Promise<void> {
    if (rows.length === 0) return;
    const params: unknown[] = [];
    const tuples = rows.map((row, index) => {
      const base = index * COLUMNS;
      params.push(
        row.occurredAt.toISOString(),
        row.type,
        row.outcome,
        row.actorId,
        row.subjectId,
        row.ip,
        row.userAgent,
        row.requestId,
        JSON.stringify(row.details),
      );
      return `($${base + 1}::timestamptz, $${base + 2}, $${base + 3}, $${base + 4}::uuid, $${base + 5}::uuid, $${base + 6}, $${base + 7}, $${base + 8}, $${base + 9}::jsonb)`;
    });
    await this.db.query(
      `INSERT INTO audit_events (occurred_at, type, outcome, actor_id, subject_id, ip, user_agent, request_id, details)
       VALUES ${tuples.join(', ')}`,
      params,
    );
  }

  /** Newest first, keyset-paginated on (occurred_at, id) so pages never skip or repeat rows. */
  async list(filter: AuditFilter = {}): Promise<AuditPage> {
    const limit = Math.min(Math.max(Math.trunc(filter.limit ?? DEFAULT_PAGE_SIZE), 1), MAX_PAGE_SIZE);
    const where: string[] = [];
    const params: unknown[] = [];
    const param = (value: unknown) => {
      params.push(value);
      return `$${params.length}`;
    };
    if (filter.userId) {
      const user = param(filter.userId);
      where.push(`(actor_id = ${user}::uuid OR subject_id = ${user}::uuid)`);
    }
    if (filter.type) {
      if (filter.type.endsWith('.')) {
        where.push(`type LIKE ${param(`${filter.type.replace(/[\\%_]/g, '\\$&')}%`)}`);
      } else {
        where.push(`type = ${param(filter.type)}`);
      }
    }
    if (filter.from) where.push(`occurred_at >= ${param(filter.from.toISOString())}::timestamptz`);
    if (filter.to) where.push(`occurred_at < ${param(filter.to.toISOString())}::timestamptz`);
    if (filter.cursor) {
      const position = decodeCursor(filter.cursor);
      where.push(
        `(occurred_at, id) < (timestamptz 'epoch' + ${param(position.micros)}::bigint * interval '1 microsecond', ${param(position.id)}::bigint)`,
      );
    }
    const { rows } = await this.db.query<Row>(
      `SELECT id, occurred_at, (extract(epoch FROM occurred_at) * 1000000)::bigint AS micros, type, outcome,
              actor_id, subject_id, ip, user_agent, request_id, details
         FROM audit_events
        ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
        ORDER BY occurred_at DESC, id DESC
        LIMIT ${param(limit + 1)}`,
      params,
    );
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return {
      items: page.map((row) => ({
        id: row.id,
        occurredAt: new Date(row.occurred_at),
        type: row.type,
        outcome: row.outcome,
        actorId: row.actor_id,
        subjectId: row.subject_id,
        ip: row.ip,
        userAgent: row.user_agent,
        requestId: row.request_id,
        details: row.details,
      })),
      nextCursor: rows.length > limit && last ? encodeCursor({ micros: last.micros, id: last.id }) : null,
    };
  }
}
