import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { inspect } from 'node:util';
import { SMTPServer } from 'smtp-server';
import { backends, dropSchema, tempDir, uniqueSchema } from '../../test/support/backends.ts';
import { freePort, runCli } from '../../test/support/processes.ts';
import { DomainError } from '../errors.ts';
import type { Database } from '../storage/database.ts';
import { openDatabase } from '../storage/index.ts';
import { migrate } from '../storage/migrate.ts';
import { PgliteDatabase } from '../storage/pglite-driver.ts';
import { createMailer, OutboxMailer, SmtpMailer } from './mailer.ts';
import { listOutbox } from './outbox-store.ts';
import {
  escapeHtml,
  passwordChangedMail,
  passwordResetMail,
  registrationAttemptMail,
  verificationMail,
} from './templates.ts';

const SMTP_USER = 'gatehouse';
// Characters that must be percent-encoded in the URL, so decoding is exercised too.
const SMTP_PASSWORD = 'pa$$/word:9@x';
const FROM = 'Gatehouse Test <no-reply@gatehouse.test>';

interface Received {
  from: string | undefined;
  to: string[];
  raw: string;
}

/** A real SMTP server over TCP on a free port: AUTH required, STARTTLS off (plain connection). */
async function startSmtpServer(): Promise<{
  url: string;
  port: number;
  received: Received[];
  close(): Promise<void>;
}> {
  const received: Received[] = [];
  const server = new SMTPServer({
    authOptional: false,
    allowInsecureAuth: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onAuth(auth, _session, callback) {
      if (auth.username === SMTP_USER && auth.password === SMTP_PASSWORD)
        callback(null, { user: auth.username });
      else callback(new Error('Invalid username or password'));
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        received.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : undefined,
          to: session.envelope.rcptTo.map((rcpt) => rcpt.address),
          raw: Buffer.concat(chunks).toString('utf8'),
        });
        callback();
      });
    },
  });
  const port = await freePort();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    url: `smtp://${SMTP_USER}:${encodeURIComponent(SMTP_PASSWORD)}@127.0.0.1:${port}`,
    port,
    received,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function assertNoPassword(error: unknown): void {
  const seen = [String(error), inspect(error, { depth: 10 }), JSON.stringify(error)].join('\n');
  for (const secret of [SMTP_PASSWORD, encodeURIComponent(SMTP_PASSWORD)]) {
    assert.ok(!seen.includes(secret), `the error shows the SMTP password:\n${seen}`);
  }
}

describe('SmtpMailer against a real SMTP server', () => {
  let smtp: Awaited<ReturnType<typeof startSmtpServer>>;
  before(async () => {
    smtp = await startSmtpServer();
  });
  after(async () => {
    await smtp.close();
  });

  it('delivers a mail with the right sender, recipient, subject and bodies', async () => {
    const mailer = new SmtpMailer({ url: smtp.url, from: FROM });
    assert.equal(mailer.kind, 'smtp');
    try {
      await mailer.send({
        to: 'ada@example.com',
        subject: 'Confirm your email address',
        text: 'Hello from the test.\nOpen https://gatehouse.test/verify?t=abc to confirm.',
        html: '<p>Hello from the <b>test</b>.</p>',
      });
    } finally {
      await mailer.close();
    }
    assert.equal(smtp.received.length, 1);
    const [mail] = smtp.received;
    assert.equal(mail?.from, 'no-reply@gatehouse.test');
    assert.deepEqual(mail?.to, ['ada@example.com']);
    const raw = mail?.raw ?? '';
    assert.match(raw, /^Subject: Confirm your email address\r$/m);
    assert.match(raw, /^To: ada@example\.com\r$/m);
    assert.match(raw, /^From: Gatehouse Test <no-reply@gatehouse\.test>\r$/m);
    assert.match(raw, /^Content-Type: multipart\/alternative;/m);
    assert.match(raw, /^Content-Type: text\/plain/m);
    assert.match(raw, /^Content-Type: text\/html/m);
    assert.ok(
      raw.includes('Hello from the test.\r\nOpen https://gatehouse.test/verify?t=abc to confirm.'),
      raw,
    );
    assert.ok(raw.includes('<p>Hello from the <b>test</b>.</p>'), raw);
  });

  it('sends to exactly one recipient, even when the address holds a comma', async () => {
    // As a plain string, nodemailer would read this as a list and mail victim@example.com.
    const mailer = new SmtpMailer({ url: smtp.url, from: FROM });
    const before = smtp.received.length;
    try {
      await mailer.send({ to: 'x,victim@example.com', subject: 'One recipient', text: 'hi' });
    } finally {
      await mailer.close();
    }
    const delivered = smtp.received.slice(before);
    assert.equal(delivered.length, 1);
    assert.deepEqual(delivered[0]?.to, ['"x,victim"@example.com']);
  });

  it('reports a refused login as dependency-unavailable, without the password', async () => {
    const badPassword = `${SMTP_PASSWORD}-wrong`;
    const url = smtp.url.replace(encodeURIComponent(SMTP_PASSWORD), encodeURIComponent(badPassword));
    const mailer = new SmtpMailer({ url, from: FROM });
    const before = smtp.received.length;
    try {
      const error = await mailer.send({ to: 'ada@example.com', subject: 's', text: 't' }).then(
        () => assert.fail('the send should fail'),
        (e: unknown) => e,
      );
      assert.ok(error instanceof DomainError);
      assert.equal(error.kind, 'dependency-unavailable');
      assert.match(String((error.cause as Error).message), /SMTP delivery failed/);
      assertNoPassword(error);
      assert.ok(!inspect(error, { depth: 10 }).includes(badPassword));
    } finally {
      await mailer.close();
    }
    assert.equal(smtp.received.length, before);
  });
});

describe('SmtpMailer with no server listening', () => {
  it('throws dependency-unavailable and never shows the password', async () => {
    const port = await freePort(); // free, so nothing listens there
    const mailer = createMailer({
      smtpUrl: `smtp://${SMTP_USER}:${encodeURIComponent(SMTP_PASSWORD)}@127.0.0.1:${port}`,
      from: FROM,
      db: undefined as unknown as Database,
    });
    assert.equal(mailer.kind, 'smtp');
    try {
      await assert.rejects(mailer.send({ to: 'ada@example.com', subject: 's', text: 't' }), (error) => {
        assert.ok(error instanceof DomainError);
        assert.equal(error.kind, 'dependency-unavailable');
        assert.equal(error.headers['retry-after'], '30');
        assertNoPassword(error);
        return true;
      });
    } finally {
      await mailer.close();
    }
  });
});

for (const backend of backends()) {
  describe(`OutboxMailer on ${backend.name}`, () => {
    const schema = uniqueSchema();
    let db: Database;
    before(async () => {
      db = await openDatabase({ databaseUrl: backend.databaseUrl, dataDir: null, schema });
      await migrate(db);
    });
    after(async () => {
      await db.close();
      await dropSchema({ DATABASE_URL: backend.databaseUrl, GATEHOUSE_DATABASE_SCHEMA: schema });
    });

    it('stores mail that listOutbox returns newest first, filtered by recipient', async () => {
      const mailer = createMailer({ smtpUrl: undefined, from: FROM, db });
      assert.ok(mailer instanceof OutboxMailer);
      assert.equal(mailer.kind, 'outbox');
      await mailer.send({ to: 'ada@example.com', subject: 'first', text: 'one' });
      await mailer.send({ to: 'bob@example.com', subject: 'second', text: 'two', html: '<p>two</p>' });
      // In one transaction, where now() is the same for both: insertion order still holds.
      await db.transaction(async (tx) => {
        const inTx = new OutboxMailer(tx);
        await inTx.send({ to: 'ada@example.com', subject: 'third', text: 'three' });
        await inTx.send({ to: 'ada@example.com', subject: 'fourth', text: 'four' });
      });
      await mailer.close();

      const all = await listOutbox(db, { limit: 10 });
      assert.deepEqual(
        all.map((m) => m.subject),
        ['fourth', 'third', 'second', 'first'],
      );
      const second = all.find((m) => m.subject === 'second');
      assert.equal(second?.to, 'bob@example.com');
      assert.equal(second?.text, 'two');
      assert.equal(second?.html, '<p>two</p>');
      assert.equal(all.find((m) => m.subject === 'first')?.html, null);
      assert.ok(all.every((m) => m.createdAt instanceof Date && !Number.isNaN(m.createdAt.getTime())));
      assert.match(all[0]?.id ?? '', /^[0-9a-f-]{36}$/);

      assert.deepEqual(
        (await listOutbox(db, { to: 'ADA@example.com', limit: 2 })).map((m) => m.subject),
        ['fourth', 'third'],
      );
      assert.deepEqual(await listOutbox(db, { to: 'nobody@example.com' }), []);
      assert.equal((await listOutbox(db)).length, 4);
    });
  });
}

describe('mail templates', () => {
  const link = 'https://auth.example.com/reset?token=a&b="c"';

  it('escape HTML in every interpolated value', () => {
    assert.equal(escapeHtml(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
    const mail = verificationMail({ link, appName: '<script>alert(1)</script>' });
    assert.ok(!mail.html.includes('<script>'));
    assert.ok(mail.html.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
    assert.ok(mail.html.includes('href="https://auth.example.com/reset?token=a&amp;b=&quot;c&quot;"'));
    assert.ok(mail.text.includes(link), 'the text body carries the link verbatim');
  });

  it('verification: subject, link, and what to do if it was not you', () => {
    const mail = verificationMail({ link: 'https://auth.example.com/verify?t=1', appName: 'Gatehouse' });
    assert.match(mail.subject, /Confirm your email address for Gatehouse/);
    assert.ok(mail.text.includes('https://auth.example.com/verify?t=1'));
    assert.ok(mail.html.includes('href="https://auth.example.com/verify?t=1"'));
    assert.match(mail.text, /ignore this email/);
  });

  it('password reset: expires in 30 minutes and can be ignored', () => {
    const mail = passwordResetMail({ link: 'https://auth.example.com/reset?t=1', appName: 'Gatehouse' });
    assert.match(mail.subject, /Reset your Gatehouse password/);
    assert.ok(mail.text.includes('https://auth.example.com/reset?t=1'));
    assert.match(mail.text, /expires in 30 minutes/);
    assert.match(mail.html, /expires in 30 minutes/);
    assert.match(mail.text, /ignore this email/);
  });

  it('registration attempt: suggests logging in or resetting, links when given', () => {
    const mail = registrationAttemptMail({
      appName: 'Gatehouse',
      loginLink: 'https://auth.example.com/login',
      resetLink: 'https://auth.example.com/forgot',
    });
    assert.match(mail.text, /already exists/);
    assert.match(mail.text, /log in/i);
    assert.match(mail.text, /reset it/);
    assert.ok(mail.text.includes('https://auth.example.com/login'));
    assert.ok(mail.html.includes('href="https://auth.example.com/forgot"'));
    const bare = registrationAttemptMail({ appName: 'Gatehouse' });
    assert.match(bare.text, /log in to your existing account/);
    assert.ok(!bare.html.includes('<a '));
  });

  it('password changed: tells the owner what to do if it was not them', () => {
    const mail = passwordChangedMail({ appName: 'Gatehouse', resetLink: 'https://auth.example.com/forgot' });
    assert.match(mail.subject, /Your Gatehouse password was changed/);
    assert.match(mail.text, /If you did not, reset your password/);
    assert.ok(mail.text.includes('https://auth.example.com/forgot'));
  });

  it('refuse links that are not absolute http(s) URLs', () => {
    assert.throws(() => verificationMail({ link: 'javascript:alert(1)', appName: 'G' }), TypeError);
    assert.throws(() => passwordResetMail({ link: '/reset?t=1', appName: 'G' }), TypeError);
  });
});

describe('gatehouse mail (CLI)', () => {
  const dataDir = tempDir();
  const env = { GATEHOUSE_DATA_DIR: dataDir, GATEHOUSE_LOG_LEVEL: 'silent' };
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  it('prints the dev outbox, newest first, filtered by --to', async () => {
    const migrated = await runCli(['migrate'], env);
    assert.equal(migrated.code, 0, migrated.stderr);

    const db = await PgliteDatabase.open(dataDir);
    try {
      const mailer = new OutboxMailer(db);
      await mailer.send({ to: 'bob@example.com', subject: 'Older mail', text: 'older body' });
      await mailer.send({
        to: 'ada@example.com',
        subject: 'Reset your Gatehouse password',
        text: 'Open https://localhost:4000/reset?token=xyz within 30 minutes.',
      });
    } finally {
      await db.close();
    }

    const listed = await runCli(['mail'], env);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /To: +ada@example\.com/);
    assert.match(listed.stdout, /Subject: Reset your Gatehouse password/);
    assert.match(listed.stdout, /Open https:\/\/localhost:4000\/reset\?token=xyz within 30 minutes\./);
    assert.match(listed.stdout, /Date: +\d{4}-\d\d-\d\dT/);
    assert.ok(listed.stdout.indexOf('ada@example.com') < listed.stdout.indexOf('bob@example.com'));

    const filtered = await runCli(['mail', '--to', 'BOB@example.com', '--limit', '5'], env);
    assert.equal(filtered.code, 0, filtered.stderr);
    assert.match(filtered.stdout, /Older mail/);
    assert.doesNotMatch(filtered.stdout, /ada@example\.com/);

    const limited = await runCli(['mail', '--limit=1'], env);
    assert.match(limited.stdout, /ada@example\.com/);
    assert.doesNotMatch(limited.stdout, /bob@example\.com/);
  });

  it('says so when the data directory is in use by another process', async () => {
    const db = await PgliteDatabase.open(dataDir);
    try {
      const result = await runCli(['mail'], env);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /in use by another Gatehouse process/);
    } finally {
      await db.close();
    }
  });

  it('documents the embedded-mode limit in --help and refuses bad options', async () => {
    const help = await runCli(['mail', '--help'], env);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--to EMAIL/);
    assert.match(help.stdout, /"in use"/);
    const bad = await runCli(['mail', '--limit', 'many'], env);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--limit must be an integer/);
  });
});
