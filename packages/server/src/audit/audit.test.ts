import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyRequest } from 'fastify';
import { backends, startTestGatehouse, type TestGatehouse } from '../../test/support/backends.ts';
import { DependencyUnavailableError, DomainError } from '../errors.ts';
import { PROBLEM_BASE } from '../http/problem.ts';
import { createHttpServer, type HttpServer } from '../http/server.ts';
import { createMetrics } from '../metrics/metrics.ts';
import type { Database, Queryable, QueryResult } from '../storage/database.ts';
import type { AuditEvent } from './audit-log.ts';
import { DatabaseAuditLog, isSecretKey, REDACTED, scrubDetails } from './audit-service.ts';
import { AuditStore, decodeCursor, encodeCursor, InvalidCursorError } from './audit-store.ts';
import { auditRoutes } from './routes.ts';

/** Polls until `condition` holds (bounded); the tests never assert on elapsed time. */
async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A database that counts audit INSERTs and can be switched off (throws DependencyUnavailableError). */
class FlakyDatabase implements Queryable {
  readonly inner: Queryable;
  down = false;
  inserts = 0;
  failures = 0;
  /** Statements whose parameters contain this string fail like a bad statement (not an outage). */
  poison: string | undefined;
  constructor(inner: Queryable) {
    this.inner = inner;
  }
  async query<Row = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
  ): Promise<QueryResult<Row>> {
    if (this.down) {
      this.failures++;
      throw new DependencyUnavailableError('database', { cause: new Error('connect ECONNREFUSED') });
    }
    if (this.poison && params?.includes(this.poison)) throw new Error('invalid input syntax');
    if (/^\s*INSERT INTO audit_events/.test(sql)) this.inserts++;
    return this.inner.query<Row>(sql, params);
  }
  exec(sql: string): Promise<void> {
    return this.inner.exec(sql);
  }
}

async function countOfType(db: Queryable, type: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM audit_events WHERE type = $1',
    [type],
  );
  return rows[0]?.n ?? 0;
}

function event(type: string, extra: Partial<AuditEvent> = {}): AuditEvent {
  return { type, outcome: 'success', ip: '127.0.0.1', userAgent: 'test', requestId: 'req-1', ...extra };
}

describe('audit details scrubbing (pure)', () => {
  it('recognises secret-looking keys in any casing, but not ids and timestamps about them', () => {
    for (const key of [
      'password',
      'newPassword',
      'refresh_token',
      'accessToken',
      'client_secret',
      'code',
      'code_verifier',
      'Authorization',
      'cookie',
      'set-cookie',
      'api_key',
      'apiKey',
      'APIKey',
      'key',
      'private_key',
      'totp',
      'recovery_codes',
      'clientAssertion',
    ]) {
      assert.equal(isSecretKey(key), true, key);
    }
    for (const key of [
      'token_id',
      'password_changed_at',
      'key_id',
      'keyboard',
      'monkey',
      'reason',
      'email',
      'kid',
    ]) {
      assert.equal(isSecretKey(key), false, key);
    }
  });

  it('redacts recursively and keeps the rest as plain JSON', () => {
    const circular: Record<string, unknown> = { name: 'loop' };
    circular.self = circular;
    const out = scrubDetails({
      password: 'hunter2',
      reason: 'bad_password',
      nested: { refresh_token: 'rt-secret', list: [{ apiKey: 'k-secret', label: 'ok' }] },
      header: 'Bearer abc.def.ghi',
      note: 'got eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.sig here',
      when: new Date('2025-01-01T00:00:00Z'),
      big: 10n,
      fn: () => 1,
      circular,
      mfa_enabled: true,
    });
    assert.deepEqual(out, {
      password: REDACTED,
      reason: 'bad_password',
      nested: { refresh_token: REDACTED, list: [{ apiKey: REDACTED, label: 'ok' }] },
      header: `Bearer ${REDACTED}`,
      note: `got ${REDACTED} here`,
      when: '2025-01-01T00:00:00.000Z',
      big: '10',
      circular: { name: 'loop', self: '[circular]' },
      mfa_enabled: true,
    });
  });

  it('cursors round-trip and malformed ones are refused', () => {
    const position = { micros: 1_735_689_600_123_456, id: 42 };
    assert.deepEqual(decodeCursor(encodeCursor(position)), position);
    for (const bad of ['', 'not base64!', Buffer.from('1.2.3').toString('base64url'), 'abc']) {
      assert.throws(() => decodeCursor(bad), InvalidCursorError, bad);
    }
  });
});

for (const backend of backends()) {
  describe(`audit trail on ${backend.name}`, () => {
    let gatehouse: TestGatehouse;
    let db: Database;
    const logs: DatabaseAuditLog[] = [];
    const open = (inner: Queryable, options: ConstructorParameters<typeof DatabaseAuditLog>[1] = {}) => {
      const log = new DatabaseAuditLog(inner, options);
      logs.push(log);
      return log;
    };

    before(async () => {
      gatehouse = await startTestGatehouse(backend);
      db = gatehouse.db;
    });
    after(async () => {
      for (const log of logs) await log.close(0);
      await gatehouse.destroy();
    });

    it('writes in batches, by size and by timer, with one INSERT per batch', async () => {
      const flaky = new FlakyDatabase(db);
      const log = open(flaky, { batchSize: 100, flushIntervalMs: 60_000 });
      for (let i = 0; i < 250; i++) log.record(event('batch.size'));
      // Two size-triggered batches are written without waiting for the (long) timer.
      await until(async () => (await countOfType(db, 'batch.size')) >= 200, 'size-triggered batches');
      assert.ok(flaky.inserts <= 3, `at most 3 INSERTs for 250 events, got ${flaky.inserts}`);
      await log.flush();
      assert.equal(await countOfType(db, 'batch.size'), 250);
      assert.ok(flaky.inserts <= 3, `at most 3 INSERTs for 250 events, got ${flaky.inserts}`);

      const timed = new FlakyDatabase(db);
      const timedLog = open(timed, { batchSize: 100, flushIntervalMs: 20 });
      for (let i = 0; i < 5; i++) timedLog.record(event('batch.timer'));
      assert.equal(timedLog.pending, 5, 'record only queues');
      await until(() => timedLog.pending === 0, 'the timer flush');
      assert.equal(await countOfType(db, 'batch.timer'), 5);
      assert.equal(timed.inserts, 1);
    });

    it('flush on close loses nothing: 500 events recorded, 500 rows', async () => {
      const log = open(db, { flushIntervalMs: 60_000 });
      for (let i = 0; i < 500; i++) log.record(event('close.all', { details: { n: i } }));
      await log.close();
      assert.equal(await countOfType(db, 'close.all'), 500);
      assert.equal(log.pending, 0);
      const { rows } = await db.query<{ n: number }>(
        `SELECT count(DISTINCT details->>'n')::int AS n FROM audit_events WHERE type = 'close.all'`,
      );
      assert.equal(rows[0]?.n, 500);
    });

    it('stores no secret that was under a secret-looking key, and clips the user agent', async () => {
      const log = open(db);
      const userId = randomUUID();
      log.record(
        event('scrub.check', {
          actorId: userId,
          userAgent: 'U'.repeat(2000),
          details: {
            password: 'hunter2-password',
            token: 'tok-secret-value',
            nested: { refresh_token: 'rt-secret-value', deeper: [{ client_secret: 'cs-secret-value' }] },
            authorization: 'Bearer abc',
            token_id: 'tid-1',
            reason: 'bad_password',
          },
        }),
      );
      log.record(event('scrub.check', { actorId: 'client:not-a-uuid', subjectId: userId }));
      await log.flush();
      const { rows } = await db.query<{
        actor_id: string | null;
        subject_id: string | null;
        user_agent: string;
        details: Record<string, unknown>;
        text: string;
      }>(
        `SELECT actor_id, subject_id, user_agent, details, details::text AS text
           FROM audit_events WHERE type = 'scrub.check' ORDER BY id`,
      );
      assert.equal(rows.length, 2);
      const [first, second] = rows as [(typeof rows)[0], (typeof rows)[0]];
      for (const secret of ['hunter2', 'tok-secret', 'rt-secret', 'cs-secret', 'abc']) {
        assert.ok(!first.text.includes(secret), `${secret} must not be stored: ${first.text}`);
      }
      assert.equal(first.details.password, REDACTED);
      assert.equal(first.details.token, REDACTED);
      assert.equal(first.details.token_id, 'tid-1');
      assert.equal(first.details.reason, 'bad_password');
      assert.equal(first.user_agent.length, 512);
      assert.equal(first.actor_id, userId);
      // A non-uuid actor does not fail the batch: it is kept in details instead.
      assert.equal(second.actor_id, null);
      assert.equal(second.subject_id, userId);
      assert.equal(second.details.actor_ref, 'client:not-a-uuid');
    });

    it('is append-only in the database: UPDATE, DELETE and TRUNCATE raise', async () => {
      const store = new AuditStore(db);
      await store.insert([
        {
          occurredAt: new Date(),
          type: 'append.only',
          outcome: 'success',
          actorId: null,
          subjectId: null,
          ip: null,
          userAgent: null,
          requestId: null,
          details: {},
        },
      ]);
      await assert.rejects(
        db.query(`UPDATE audit_events SET outcome = 'failure' WHERE type = 'append.only'`),
        /append-only/,
      );
      await assert.rejects(db.query(`DELETE FROM audit_events WHERE type = 'append.only'`), /append-only/);
      await assert.rejects(db.query('TRUNCATE audit_events'), /append-only/);
      assert.equal(await countOfType(db, 'append.only'), 1);
    });

    it('filters by user, type (exact or prefix) and time, and pages with a cursor without gaps or repeats', async () => {
      const store = new AuditStore(db);
      const alice = randomUUID();
      const bob = randomUUID();
      const base = Date.parse('2030-01-01T00:00:00Z');
      // 30 events; several share a timestamp so the id breaks ties; inserted out of time order.
      const rows = Array.from({ length: 30 }, (_, i) => ({
        occurredAt: new Date(base + Math.floor(i / 3) * 1000),
        type: i % 2 === 0 ? 'page.login.failed' : 'page.session.revoked',
        outcome: (i % 2 === 0 ? 'failure' : 'success') as 'success' | 'failure',
        actorId: i % 3 === 0 ? alice : null,
        subjectId: i % 3 === 1 ? alice : bob,
        ip: null,
        userAgent: null,
        requestId: null,
        details: { n: i },
      }));
      await store.insert(rows.slice(15));
      await store.insert(rows.slice(0, 15));

      const all: number[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await store.list({ type: 'page.', limit: 7, ...(cursor ? { cursor } : {}) });
        all.push(...page.items.map((item) => item.details.n as number));
        cursor = page.nextCursor ?? undefined;
        pages++;
      } while (cursor);
      assert.equal(pages, 5);
      assert.equal(new Set(all).size, 30, 'no duplicates');
      // Newest first: time descending, then id descending within one timestamp (ids follow VALUES order).
      assert.deepEqual(all, [...rows.keys()].reverse());

      const exact = await store.list({ type: 'page.login.failed', limit: 200 });
      assert.equal(exact.items.length, 15);
      assert.ok(exact.items.every((item) => item.type === 'page.login.failed'));
      const prefix = await store.list({ type: 'page.session.', limit: 200 });
      assert.equal(prefix.items.length, 15);
      assert.equal((await store.list({ type: 'page.login', limit: 200 })).items.length, 0, 'no dot: exact');

      const forAlice = await store.list({ userId: alice, limit: 200 });
      assert.equal(forAlice.items.length, 20);
      assert.ok(forAlice.items.every((item) => item.actorId === alice || item.subjectId === alice));
      assert.equal((await store.list({ userId: bob, limit: 200 })).items.length, 20);

      const window = await store.list({
        type: 'page.',
        from: new Date(base + 2000),
        to: new Date(base + 5000),
        limit: 200,
      });
      assert.deepEqual(
        window.items.map((item) => item.details.n as number).sort((a, b) => a - b),
        [6, 7, 8, 9, 10, 11, 12, 13, 14],
      );
    });

    it('keeps events while the database is down and writes them once it is back', async () => {
      const flaky = new FlakyDatabase(db);
      const metrics = createMetrics({ defaultMetrics: false });
      const log = open(flaky, { flushIntervalMs: 10, maxRetryDelayMs: 50, metrics });
      flaky.down = true;
      for (let i = 0; i < 20; i++) log.record(event('outage.kept', { details: { n: i } }));
      await until(() => flaky.failures >= 2, 'a few failed attempts');
      assert.equal(log.pending, 20);
      await assert.rejects(log.flush(), DependencyUnavailableError);
      assert.equal(log.pending, 20, 'a failed flush keeps the events');
      flaky.down = false;
      await until(() => log.pending === 0, 'the retry after recovery');
      assert.equal(await countOfType(db, 'outage.kept'), 20);
      assert.equal(log.dropped, 0);
      assert.match(
        await metrics.registry.metrics(),
        /gatehouse_audit_events_total\{type="outage.kept",outcome="success"\} 20/,
      );
    });

    it('bounds the queue during an outage: drops the oldest and counts them', async () => {
      const flaky = new FlakyDatabase(db);
      const metrics = createMetrics({ defaultMetrics: false });
      const log = open(flaky, { flushIntervalMs: 10, maxRetryDelayMs: 50, maxQueue: 10, metrics });
      flaky.down = true;
      for (let i = 0; i < 15; i++) log.record(event('outage.bounded', { details: { n: i } }));
      assert.equal(log.pending, 10);
      assert.equal(log.dropped, 5);
      flaky.down = false;
      await log.flush();
      const { rows } = await db.query<{ n: number }>(
        `SELECT (details->>'n')::int AS n FROM audit_events WHERE type = 'outage.bounded' ORDER BY 1`,
      );
      assert.deepEqual(
        rows.map((row) => row.n),
        [5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
      );
      assert.match(
        await metrics.registry.metrics(),
        /gatehouse_audit_events_dropped_total\{reason="overflow"\} 5/,
      );
    });

    it('a row the database rejects is dropped alone; the rest of its batch is written', async () => {
      const flaky = new FlakyDatabase(db);
      const log = open(flaky, { flushIntervalMs: 60_000 });
      flaky.poison = 'poison.row';
      for (let i = 0; i < 4; i++) log.record(event('poison.ok'));
      log.record(event('poison.row'));
      await log.flush();
      assert.equal(await countOfType(db, 'poison.ok'), 4);
      assert.equal(await countOfType(db, 'poison.row'), 0);
      assert.equal(log.dropped, 1);
    });

    describe('GET /v1/admin/audit', () => {
      let server: HttpServer;
      after(() => server.close());
      const permissions: string[] = [];
      const user = randomUUID();
      before(async () => {
        const authorize = async (request: FastifyRequest, permission: string) => {
          permissions.push(permission);
          if (request.headers['x-test-role'] !== 'auditor')
            throw new DomainError('forbidden', 'Needs audit:read');
        };
        // A server of its own: the app already serves the real route with the real authorizer.
        server = await createHttpServer(gatehouse.config, gatehouse.logger);
        await server.register(auditRoutes, { db, authorize });
        const log = open(db);
        for (let i = 0; i < 12; i++) {
          log.record(
            event(i % 2 ? 'route.login.succeeded' : 'route.login.failed', {
              subjectId: user,
              details: { i },
            }),
          );
        }
        await log.flush();
      });

      const get = (query: string, role = 'auditor') =>
        server.inject({
          method: 'GET',
          url: `/v1/admin/audit${query}`,
          headers: { 'x-test-role': role },
        });

      it('refuses callers the authorizer denies', async () => {
        const response = await get('', 'nobody');
        assert.equal(response.statusCode, 403);
        assert.equal(response.json().type, `${PROBLEM_BASE}forbidden`);
        assert.equal(permissions.at(-1), 'audit:read');
      });

      it('lists filtered events newest first, with a cursor to the next page', async () => {
        const first = await get(`?user_id=${user}&type=route.login.&limit=5`);
        assert.equal(first.statusCode, 200, first.body);
        const body = first.json();
        assert.equal(body.items.length, 5);
        assert.equal(typeof body.next_cursor, 'string');
        const item = body.items[0];
        assert.equal(item.subject_id, user);
        assert.equal(item.details.i, 11);
        assert.match(item.id, /^\d+$/);
        assert.ok(!Number.isNaN(Date.parse(item.occurred_at)));
        const seen = new Set(body.items.map((i: { id: string }) => i.id));
        let cursor: string | null = body.next_cursor;
        while (cursor) {
          const page = (await get(`?user_id=${user}&type=route.login.&limit=5&cursor=${cursor}`)).json();
          for (const i of page.items) seen.add(i.id);
          cursor = page.next_cursor;
        }
        assert.equal(seen.size, 12);
        const failed = (await get(`?user_id=${user}&type=route.login.failed`)).json();
        assert.equal(failed.items.length, 6);
        assert.equal(failed.next_cursor, null);
      });

      it('answers 400 validation problems for a bad cursor, user id, limit or time range', async () => {
        for (const query of [
          '?cursor=garbage!',
          `?cursor=${Buffer.from('x.y').toString('base64url')}`,
          '?user_id=not-a-uuid',
          '?limit=0',
          '?limit=201',
          '?from=yesterday',
          '?from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z',
          '?unknown=1',
        ]) {
          const response = await get(query);
          assert.equal(response.statusCode, 400, `${query}: ${response.body}`);
          assert.equal(response.json().type, `${PROBLEM_BASE}validation-error`, query);
        }
        const cursor = (await get('?cursor=garbage!')).json();
        assert.equal(cursor.errors[0].pointer, 'querystring:/cursor');
      });
    });
  });
}
