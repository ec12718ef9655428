import type { Queryable } from '../storage/database.ts';
import type { OutgoingMail } from './mailer.ts';

/** One stored mail of the dev outbox (SQL only; see 0006_mail.sql). */
export interface OutboxEntry {
  id: string;
  to: string;
  subject: string;
  text: string;
  html: string | null;
  createdAt: Date;
}

interface OutboxRow {
  id: string;
  to_address: string;
  subject: string;
  text_body: string;
  html_body: string | null;
  created_at: Date | string;
}

export const MAX_OUTBOX_LIMIT = 1000;

export async function insertOutboxMail(db: Queryable, mail: OutgoingMail): Promise<void> {
  await db.query(
    'INSERT INTO mail_outbox (to_address, subject, text_body, html_body) VALUES ($1, $2, $3, $4)',
    [mail.to, mail.subject, mail.text, mail.html ?? null],
  );
}

/** Newest first; `to` matches the recipient case-insensitively. */
export async function listOutbox(
  db: Queryable,
  options: { limit?: number; to?: string } = {},
): Promise<OutboxEntry[]> {
  const limit = Math.min(Math.max(Math.trunc(options.limit ?? 20), 1), MAX_OUTBOX_LIMIT);
  const { rows } = await db.query<OutboxRow>(
    `SELECT id, to_address, subject, text_body, html_body, created_at
       FROM mail_outbox
      WHERE $1::text IS NULL OR lower(to_address) = lower($1::text)
      ORDER BY created_at DESC, seq DESC
      LIMIT $2`,
    [options.to ?? null, limit],
  );
  return rows.map((row) => ({
    id: row.id,
    to: row.to_address,
    subject: row.subject,
    text: row.text_body,
    html: row.html_body,
    createdAt: row.created_at instanceof Date ? row.created_at : new Date(row.created_at),
  }));
}
