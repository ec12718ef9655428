import { loadConfig } from '../config/config.ts';
import { listOutbox, MAX_OUTBOX_LIMIT } from '../mail/outbox-store.ts';
import { openConfiguredDatabase } from '../storage/index.ts';
import type { Command } from './commands.ts';

const USAGE = `gatehouse mail [--to EMAIL] [--limit N]

  --to EMAIL   only mail sent to this address
  --limit N    how many mails, newest first (default 20, at most ${MAX_OUTBOX_LIMIT})

Without SMTP_URL, Gatehouse stores outgoing mail (verification and reset links) in the dev
outbox instead of sending it; this command prints it. The embedded database (PGlite) serves one
process per data directory: while the server runs on the same GATEHOUSE_DATA_DIR, this command
stops with an "in use" message. Stop the server first, or run on PostgreSQL (DATABASE_URL).`;

interface MailArgs {
  to?: string;
  limit: number;
}

function parseArgs(args: string[]): MailArgs | string {
  const parsed: MailArgs = { limit: 20 };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? arg.split(/=(.*)/s, 2) : [arg];
    const value = inline ?? args[i + 1];
    if (flag !== '--to' && flag !== '--limit') return `unknown option ${JSON.stringify(arg)}`;
    if (value === undefined || value === '') return `${flag} needs a value`;
    if (inline === undefined) i++;
    if (flag === '--to') parsed.to = value;
    else {
      if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > MAX_OUTBOX_LIMIT) {
        return `--limit must be an integer from 1 to ${MAX_OUTBOX_LIMIT}`;
      }
      parsed.limit = Number(value);
    }
  }
  return parsed;
}

export const mailCommand: Command = {
  name: 'mail',
  summary: 'Show the dev outbox: mail stored instead of sent while SMTP_URL is unset',
  usage: USAGE,
  async run(args) {
    const options = parseArgs(args);
    if (typeof options === 'string') {
      process.stderr.write(`gatehouse mail: ${options}\n\nUsage: ${USAGE}\n`);
      return 2;
    }
    const config = loadConfig();
    const db = await openConfiguredDatabase(config);
    try {
      const { rows } = await db.query<{ exists: boolean }>(
        `SELECT to_regclass('mail_outbox') IS NOT NULL AS exists`,
      );
      if (!rows[0]?.exists) {
        process.stderr.write(
          `gatehouse mail: ${db.description} has no outbox yet; run \`gatehouse migrate\` or start the server first.\n`,
        );
        return 1;
      }
      const mails = await listOutbox(db, { limit: options.limit, ...(options.to ? { to: options.to } : {}) });
      if (config.smtpUrl) {
        process.stderr.write(
          'Note: SMTP_URL is set, so new mail goes to the SMTP server, not to this outbox.\n',
        );
      }
      if (mails.length === 0) {
        process.stdout.write(
          options.to ? `No mail to ${options.to} in the outbox.\n` : 'The outbox is empty.\n',
        );
        return 0;
      }
      const out = mails.map((mail) =>
        [
          `Date:    ${mail.createdAt.toISOString()}`,
          `To:      ${mail.to}`,
          `Subject: ${mail.subject}`,
          '',
          mail.text.trimEnd(),
          '',
          '-'.repeat(72),
          '',
        ].join('\n'),
      );
      process.stdout.write(out.join(''));
      return 0;
    } finally {
      await db.close();
    }
  },
};
