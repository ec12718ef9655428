import { createRequire } from 'node:module';
import type { createTransport } from 'nodemailer';
import { DomainError } from '../errors.ts';
import type { Queryable } from '../storage/database.ts';
import { insertOutboxMail } from './outbox-store.ts';

/**
 * Outgoing mail. With SMTP_URL set, mail goes to that server (nodemailer); without it, to the
 * dev outbox table, which `gatehouse mail` lists. Mail bodies may hold single-use links: never
 * log them.
 */
export interface OutgoingMail {
  to: string;
  subject: string;
  text: string;
  html?: string;
}

export interface Mailer {
  readonly kind: 'smtp' | 'outbox';
  /** Throws DomainError('dependency-unavailable') when the mail cannot be handed over. */
  send(mail: OutgoingMail): Promise<void>;
  close(): Promise<void>;
}

export interface SmtpMailerOptions {
  /** smtp://user:password@host:587 (STARTTLS when offered) or smtps://user:password@host:465. */
  url: string;
  /** Sender, e.g. `Gatehouse <no-reply@example.com>`. */
  from: string;
  /** Bound on connecting and on each wait for the server; default 10 s. */
  timeoutMs?: number;
}

const RETRY_AFTER_SECONDS = '30';

/**
 * nodemailer (~40 modules) loads with the first SMTP mailer: without SMTP_URL the server never
 * uses it. Synchronous (nodemailer is CommonJS), so the constructor can build the transport.
 */
function loadCreateTransport(): typeof createTransport {
  return (createRequire(import.meta.url)('nodemailer') as typeof import('nodemailer')).createTransport;
}

/** The URL's password as written and decoded, to scrub from error messages. */
function credentialsOf(url: string): string[] {
  let password: string;
  try {
    password = new URL(url).password;
  } catch {
    return [];
  }
  const secrets = [password];
  try {
    secrets.push(decodeURIComponent(password));
  } catch {
    // malformed escape: the raw form is all there is
  }
  return secrets.filter((secret) => secret.length > 0);
}

export class SmtpMailer implements Mailer {
  readonly kind = 'smtp' as const;
  private readonly transport: ReturnType<typeof createTransport>;
  private readonly from: string;
  private readonly secrets: string[];

  constructor(options: SmtpMailerOptions) {
    const timeout = options.timeoutMs ?? 10_000;
    this.from = options.from;
    this.secrets = credentialsOf(options.url);
    // No pool: one connection per mail keeps a restarted mail server from breaking later sends.
    this.transport = loadCreateTransport()({
      url: options.url,
      connectionTimeout: timeout,
      greetingTimeout: timeout,
      socketTimeout: 3 * timeout,
      dnsTimeout: timeout,
    });
  }

  async send(mail: OutgoingMail): Promise<void> {
    try {
      await this.transport.sendMail({
        from: this.from,
        // An address object, not a string: a string would be parsed as a list of recipients.
        to: { name: '', address: mail.to },
        subject: mail.subject,
        text: mail.text,
        ...(mail.html !== undefined ? { html: mail.html } : {}),
      });
    } catch (error) {
      throw new DomainError('dependency-unavailable', 'The mail server is unavailable; retry later.', {
        extensions: { dependency: 'mail server' },
        headers: { 'retry-after': RETRY_AFTER_SECONDS },
        cause: this.sanitize(error),
      });
    }
  }

  async close(): Promise<void> {
    this.transport.close();
  }

  /** The failure without anything that could carry the URL's password (for the operator's logs). */
  private sanitize(error: unknown): Error {
    const original = error as { message?: unknown; code?: unknown; responseCode?: unknown };
    let message = typeof original?.message === 'string' ? original.message : String(error);
    for (const secret of this.secrets) message = message.split(secret).join('***');
    const sanitized = new Error(`SMTP delivery failed: ${message}`);
    if (typeof original?.code === 'string') Object.assign(sanitized, { code: original.code });
    if (typeof original?.responseCode === 'number') {
      Object.assign(sanitized, { responseCode: original.responseCode });
    }
    return sanitized;
  }
}

/** Development fallback: stores the mail in mail_outbox for `gatehouse mail` to show. */
export class OutboxMailer implements Mailer {
  readonly kind = 'outbox' as const;
  private readonly db: Queryable;

  constructor(db: Queryable) {
    this.db = db;
  }

  /** Database failures propagate as the storage layer reports them (DependencyUnavailableError: 503). */
  async send(mail: OutgoingMail): Promise<void> {
    await insertOutboxMail(this.db, mail);
  }

  async close(): Promise<void> {
    // The database belongs to the app, which closes it.
  }
}

export function createMailer(options: { smtpUrl: string | undefined; from: string; db: Queryable }): Mailer {
  return options.smtpUrl
    ? new SmtpMailer({ url: options.smtpUrl, from: options.from })
    : new OutboxMailer(options.db);
}
