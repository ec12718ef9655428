import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { backends, dropSchema, testEnvironment, uniqueSchema } from '../../test/support/backends.ts';
import type { AuditEvent, AuditLog } from '../audit/audit-log.ts';
import { loadConfig } from '../config/config.ts';
import { createHttpServer } from '../http/server.ts';
import { createLogger } from '../logging/logger.ts';
import { createStateStore, MemoryStateStore, type StateStore } from '../state/index.ts';
import { type Database, openDatabase } from '../storage/index.ts';
import { migrate } from '../storage/migrate.ts';
import {
  REVOCATION_CHANNEL,
  REVOKED_JTI_KEY_PREFIX,
  RevocationService,
  type RevocationServiceOptions,
} from './revocation.ts';
import { revocationRoutes } from './revocation-routes.ts';

class RecordingAudit implements AuditLog {
  events: AuditEvent[] = [];
  record(event: AuditEvent): void {
    this.events.push(event);
  }
  async flush(): Promise<void> {}
}

/** Polls (every 20 ms by default) until `condition` holds; returns the elapsed milliseconds, or throws after `limitMs`. */
async function timeUntil(condition: () => boolean, limitMs: number, pollMs = 20): Promise<number> {
  const start = performance.now();
  while (!condition()) {
    const elapsed = performance.now() - start;
    if (elapsed > limitMs) throw new Error(`not true after ${Math.round(elapsed)} ms`);
    await sleep(pollMs);
  }
  return performance.now() - start;
}

const inOneHour = () => Math.floor(Date.now() / 1000) + 3600;

for (const backend of backends()) {
  describe(`access-token revocation on ${backend.name}`, () => {
    const schema = uniqueSchema();
    // Two "nodes": on PostgreSQL, two pools on one schema; on PGlite (one process) one instance.
    let dbA: Database;
    let dbB: Database;
    // Pub/sub between the nodes: two Redis connections, or one in-process store.
    let stateA: StateStore;
    let stateB: StateStore;
    const cleanups: (() => Promise<void>)[] = [];

    before(async () => {
      const open = () => openDatabase({ databaseUrl: backend.databaseUrl, dataDir: null, schema });
      dbA = await open();
      await migrate(dbA);
      dbB = backend.databaseUrl ? await open() : dbA;
      if (backend.redisUrl) {
        stateA = createStateStore(backend.redisUrl);
        stateB = createStateStore(backend.redisUrl);
      } else {
        stateA = new MemoryStateStore();
        stateB = stateA;
      }
    });
    after(async () => {
      for (const cleanup of cleanups.reverse()) await cleanup();
      await stateA.close();
      if (stateB !== stateA) await stateB.close();
      if (dbB !== dbA) await dbB.close();
      await dbA.close();
      await dropSchema({ DATABASE_URL: backend.databaseUrl, GATEHOUSE_DATABASE_SCHEMA: schema });
    });

    const node = async (
      db: Database,
      state: StateStore,
      options: Partial<RevocationServiceOptions> = {},
    ): Promise<RevocationService> => {
      const service = new RevocationService(db, state, { audit: new RecordingAudit(), ...options });
      await service.start();
      cleanups.push(() => service.stop());
      return service;
    };
    const createUser = async (): Promise<string> => {
      const { rows } = await dbA.query<{ id: string }>('INSERT INTO users (email) VALUES ($1) RETURNING id', [
        `${randomBytes(6).toString('hex')}@example.test`,
      ]);
      return (rows[0] as { id: string }).id;
    };

    it('a revocation on node A reaches node B through pub/sub within a second', async (t: TestContext) => {
      // Catch-up far away: only pub/sub can deliver within the test's window.
      const a = await node(dbA, stateA, { catchUpIntervalMs: 600_000 });
      const b = await node(dbB, stateB, { catchUpIntervalMs: 600_000 });
      assert.equal(b.stats.subscribed, true);
      const userId = await createUser();
      const token = { jti: randomUUID(), sub: userId, ver: 0, exp: inOneHour() };
      assert.equal(b.isRevoked(token), false);

      assert.equal(
        await a.revokeAccessToken({ jti: token.jti, userId, expiresAt: token.exp, reason: 'logout' }),
        true,
      );
      assert.equal(a.isRevoked(token), true, 'the revoking node knows at once');
      const jtiLatency = await timeUntil(() => b.isRevoked(token), 1000);
      assert.ok(jtiLatency < 1000);
      assert.equal(await stateA.get(REVOKED_JTI_KEY_PREFIX + token.jti), '1');
      const mirrorTtl = (await stateA.ttl(REVOKED_JTI_KEY_PREFIX + token.jti)) ?? 0;
      assert.ok(mirrorTtl > 3_500_000 && mirrorTtl <= 3_600_000, `mirror ttl ${mirrorTtl}`);

      const other = { jti: randomUUID(), sub: userId, ver: 0, exp: inOneHour() };
      assert.equal(b.isRevoked(other), false);
      assert.equal(await a.bumpUserVersion(userId, 'password_changed'), 1);
      assert.equal(a.isRevoked(other), true);
      const userLatency = await timeUntil(() => b.isRevoked(other), 1000);
      assert.ok(userLatency < 1000);
      // Tokens issued after the bump carry the new version and stay valid everywhere.
      assert.equal(b.isRevoked({ ...other, jti: randomUUID(), ver: 1 }), false);
      // The 20 ms poll makes those figures coarse: one more revocation, polled every 1 ms from the
      // moment the call starts (so including the database write), shows the end-to-end delay.
      const fine = { jti: randomUUID(), sub: userId, ver: 1, exp: inOneHour() };
      const started = performance.now();
      const revoking = a.revokeAccessToken({ jti: fine.jti, userId, expiresAt: fine.exp, reason: 'logout' });
      await timeUntil(() => b.isRevoked(fine), 1000, 1);
      const endToEnd = performance.now() - started;
      await revoking;
      t.diagnostic(
        `propagation A -> B via ${stateA.kind} pub/sub after the call returned: jti ${jtiLatency.toFixed(1)} ms, user version ${userLatency.toFixed(1)} ms (polled every 20 ms); end to end from the call, polled every 1 ms: ${endToEnd.toFixed(2)} ms`,
      );
    });

    it('without pub/sub, node B converges from the database feed within the 5 s catch-up', async (t: TestContext) => {
      // Two unconnected memory stores: messages from A never reach B.
      const isolatedA = new MemoryStateStore();
      const isolatedB = new MemoryStateStore();
      cleanups.push(
        () => isolatedA.close(),
        () => isolatedB.close(),
      );
      const a = await node(dbA, isolatedA);
      const b = await node(dbB, isolatedB);
      const userId = await createUser();
      const token = { jti: randomUUID(), sub: randomUUID(), exp: inOneHour() };
      const old = { jti: randomUUID(), sub: userId, ver: 0, exp: inOneHour() };

      await a.revokeAccessToken({ jti: token.jti, userId: null, expiresAt: token.exp, reason: 'admin' });
      await a.bumpUserVersion(userId, 'disabled');
      const latency = await timeUntil(() => b.isRevoked(token) && b.isRevoked(old), 6000);
      assert.ok(latency < 6000);
      t.diagnostic(`propagation A -> B via the database catch-up only: ${(latency / 1000).toFixed(2)} s`);
    });

    it('a node starting later loads the denylist and user versions', async () => {
      const a = await node(dbA, stateA);
      const userId = await createUser();
      const jti = randomUUID();
      await a.revokeAccessToken({ jti, userId, expiresAt: inOneHour(), reason: 'logout' });
      await a.bumpUserVersion(userId, 'logout_everywhere');
      await a.bumpUserVersion(userId, 'logout_everywhere');
      const c = new RevocationService(dbB, new MemoryStateStore(), { audit: new RecordingAudit() });
      assert.throws(() => c.isRevoked({ jti, sub: userId, ver: 2, exp: inOneHour() }), /before start/);
      await c.start();
      cleanups.push(() => c.stop());
      assert.equal(c.isRevoked({ jti, sub: userId, ver: 2, exp: inOneHour() }), true);
      assert.equal(c.isRevoked({ jti: randomUUID(), sub: userId, ver: 1, exp: inOneHour() }), true);
      assert.equal(
        c.isRevoked({ jti: randomUUID(), sub: userId, exp: inOneHour() }),
        true,
        'no ver counts as 0',
      );
      assert.equal(c.isRevoked({ jti: randomUUID(), sub: userId, ver: 2, exp: inOneHour() }), false);
      assert.equal(await c.currentVersion(userId), 2);
      assert.equal(await c.currentVersion(await createUser()), 0);
      assert.equal(await c.currentVersion('client-app'), 0);
    });

    it('revoking is idempotent; an expired token is not recorded; both are audited once', async () => {
      const audit = new RecordingAudit();
      const a = await node(dbA, stateA, { audit });
      const userId = await createUser();
      const jti = randomUUID();
      const before = (await a.listSince(0, 1000)).length;
      assert.equal(
        await a.revokeAccessToken({ jti, userId, expiresAt: inOneHour(), reason: 'logout' }),
        true,
      );
      assert.equal(
        await a.revokeAccessToken({ jti, userId, expiresAt: inOneHour(), reason: 'logout' }),
        false,
      );
      const expired = randomUUID();
      assert.equal(
        await a.revokeAccessToken({
          jti: expired,
          userId,
          expiresAt: Math.floor(Date.now() / 1000) - 1,
          reason: 'x',
        }),
        false,
      );
      const events = await a.listSince(0, 1000);
      assert.equal(events.length, before + 1);
      const { rows } = await dbA.query('SELECT jti FROM revoked_access_tokens WHERE jti = ANY($1)', [
        [jti, expired],
      ]);
      assert.equal(rows.length, 1);
      assert.deepEqual(
        audit.events.map((e) => [e.type, e.subjectId, e.details]),
        [['token.revoked', userId, { jti, reason: 'logout' }]],
      );
      await a.bumpUserVersion(userId, 'role_removed');
      assert.deepEqual(audit.events.at(-1), {
        type: 'token.user_version_bumped',
        outcome: 'success',
        subjectId: userId,
        details: { reason: 'role_removed', version: 1 },
      });
    });

    it('concurrent bumps on two nodes each get their own version', async () => {
      const a = await node(dbA, stateA);
      const b = await node(dbB, stateB);
      const userId = await createUser();
      const versions = await Promise.all(
        Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).bumpUserVersion(userId, 'test')),
      );
      assert.deepEqual(
        versions.sort((x, y) => x - y),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
      );
      const events = (await a.listSince(0, 1000)).filter((e) => e.sub === userId);
      assert.deepEqual(
        events.map((e) => e.ver),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        'event ids follow commit order',
      );
      await timeUntil(
        () =>
          !a.isRevoked({ jti: 'x', sub: userId, ver: 10, exp: inOneHour() }) &&
          b.isRevoked({ jti: 'x', sub: userId, ver: 9, exp: inOneHour() }),
        1000,
      );
    });

    it('expired denylist entries leave memory on the prune timer, and the database on purge', async () => {
      const clock = { now: Date.now() };
      const a = await node(dbA, stateA, { now: () => clock.now, pruneIntervalMs: 20 });
      const exp = Math.floor(clock.now / 1000) + 60;
      const jti = randomUUID();
      await a.revokeAccessToken({ jti, userId: null, expiresAt: exp, reason: 'test' });
      const before = a.stats.deniedTokens;
      assert.ok(a.isRevoked({ jti, sub: 'client', exp }));
      clock.now += 61_000;
      await timeUntil(() => a.stats.deniedTokens < before, 2000);
      assert.equal(a.isRevoked({ jti, sub: 'client', exp }), false);
      const purged = await a.purgeExpired();
      assert.ok(purged.tokens >= 1 && purged.events >= 1, JSON.stringify(purged));
      const { rows } = await dbA.query('SELECT 1 FROM revocation_events WHERE jti = $1', [jti]);
      assert.equal(rows.length, 0);
    });

    it('ignores malformed pub/sub messages', async () => {
      const a = await node(dbA, stateA);
      const warnings: string[] = [];
      const b = await node(dbB, stateB, { logger: { warn: (_details, message) => warnings.push(message) } });
      for (const message of [
        'not json',
        '{"kind":"token"}',
        '{"kind":"user","userId":"u","version":"x"}',
        'null',
      ]) {
        await stateA.publish(REVOCATION_CHANNEL, message);
      }
      const jti = randomUUID();
      await a.revokeAccessToken({ jti, userId: null, expiresAt: inOneHour(), reason: 'test' });
      await timeUntil(() => b.isRevoked({ jti, sub: 'client', exp: inOneHour() }), 1000);
      // At least: other test files may share the Redis channel.
      assert.ok(warnings.filter((w) => /malformed/.test(w)).length >= 4, warnings.join());
    });

    it('serves the feed over HTTP behind the injected permission check', async () => {
      const a = await node(dbA, stateA);
      const userId = await createUser();
      const jti = randomUUID();
      const exp = inOneHour();
      await a.revokeAccessToken({ jti, userId, expiresAt: exp, reason: 'logout' });
      await a.bumpUserVersion(userId, 'logout_everywhere');
      const all = await a.listSince(0, 1000);
      const tokenEvent = all.find((e) => e.jti === jti);
      const userEvent = all.find((e) => e.kind === 'user' && e.sub === userId);
      assert.deepEqual(tokenEvent && { ...tokenEvent, id: 0 }, {
        id: 0,
        kind: 'token',
        jti,
        sub: userId,
        exp,
      });
      assert.deepEqual(userEvent && { ...userEvent, id: 0 }, { id: 0, kind: 'user', sub: userId, ver: 1 });

      const config = loadConfig(testEnvironment(backend));
      const server = await createHttpServer(config, createLogger('silent'));
      const asked: string[] = [];
      await server.register(revocationRoutes, {
        service: a,
        requirePermission: (permission: string) => {
          asked.push(permission);
          return async (request, reply) => {
            if (request.headers.authorization !== 'Bearer verifier') {
              return reply.code(403).type('application/problem+json').send({ status: 403 });
            }
          };
        },
      });
      cleanups.push(() => server.close());
      await server.ready();
      assert.deepEqual(asked, ['revocations:read']);

      const denied = await server.inject({ method: 'GET', url: '/v1/revocations' });
      assert.equal(denied.statusCode, 403);
      const headers = { authorization: 'Bearer verifier' };
      const first = await server.inject({
        method: 'GET',
        url: '/v1/revocations?since=0&limit=1000',
        headers,
      });
      assert.equal(first.statusCode, 200);
      const body = first.json<{ events: { id: number }[]; next: number }>();
      assert.deepEqual(body.events, all);
      assert.equal(body.next, all.at(-1)?.id);

      const since = (tokenEvent?.id ?? 0) - 1;
      const page = await server.inject({
        method: 'GET',
        url: `/v1/revocations?since=${since}&limit=1`,
        headers,
      });
      assert.deepEqual(page.json(), { events: [tokenEvent], next: tokenEvent?.id });
      const empty = await server.inject({
        method: 'GET',
        url: `/v1/revocations?since=${body.next}`,
        headers,
      });
      assert.deepEqual(empty.json(), { events: [], next: body.next });
      const bad = await server.inject({ method: 'GET', url: '/v1/revocations?since=-1&limit=5000', headers });
      assert.equal(bad.statusCode, 400);
      assert.equal(bad.headers['content-type'], 'application/problem+json; charset=utf-8');
    });
  });
}
