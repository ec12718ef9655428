import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { backends, dropSchema, uniqueSchema } from '../../test/support/backends.ts';
import type { AuditEvent, AuditLog } from '../audit/audit-log.ts';
import { type Database, openDatabase } from '../storage/index.ts';
import { migrate } from '../storage/migrate.ts';
import {
  InvalidGrantError,
  type InvalidGrantReason,
  REUSE_REVOCATION_REASON,
  type RefreshFamily,
  RefreshTokenService,
  type RefreshTokenServiceOptions,
} from './refresh-tokens.ts';

const DAY_MS = 86_400_000;

class RecordingAudit implements AuditLog {
  events: AuditEvent[] = [];
  record(event: AuditEvent): void {
    this.events.push(event);
  }
  async flush(): Promise<void> {}
  ofType(type: string): AuditEvent[] {
    return this.events.filter((event) => event.type === type);
  }
}

/** A service with a movable clock and recorded side effects. */
function harness(db: Database, options: Partial<RefreshTokenServiceOptions> = {}) {
  const clock = { now: Date.parse('2030-01-01T00:00:00Z') };
  const audit = new RecordingAudit();
  const revoked: { family: RefreshFamily; reason: string }[] = [];
  const reuse = { count: 0 };
  const make = (database: Database) =>
    new RefreshTokenService(database, {
      audit,
      now: () => clock.now,
      onFamilyRevoked: async (family, reason) => {
        revoked.push({ family, reason });
      },
      onReuseDetected: () => {
        reuse.count++;
      },
      ...options,
    });
  return { service: make(db), make, clock, audit, revoked, reuse };
}

function rejectsWith(reason: InvalidGrantReason) {
  return (error: unknown) => {
    assert.ok(error instanceof InvalidGrantError, `expected InvalidGrantError, got ${String(error)}`);
    assert.equal(error.error, 'invalid_grant');
    assert.equal(error.reason, reason);
    return true;
  };
}

for (const backend of backends()) {
  describe(`refresh tokens on ${backend.name}`, () => {
    const schema = uniqueSchema();
    let db: Database;
    // A second pool on the same schema stands for a second server process (PostgreSQL only;
    // PGlite serves one process, so there both names are the same instance).
    let db2: Database;

    before(async () => {
      const open = () => openDatabase({ databaseUrl: backend.databaseUrl, dataDir: null, schema });
      db = await open();
      await migrate(db);
      db2 = backend.databaseUrl ? await open() : db;
    });
    after(async () => {
      if (db2 !== db) await db2.close();
      await db.close();
      await dropSchema({ DATABASE_URL: backend.databaseUrl, GATEHOUSE_DATABASE_SCHEMA: schema });
    });

    const createUser = async (): Promise<string> => {
      const { rows } = await db.query<{ id: string }>('INSERT INTO users (email) VALUES ($1) RETURNING id', [
        `${randomBytes(6).toString('hex')}@example.test`,
      ]);
      return (rows[0] as { id: string }).id;
    };
    const createSession = async (userId: string): Promise<string> => {
      const { rows } = await db.query<{ id: string }>(
        `INSERT INTO sessions (user_id, token_hash, idle_expires_at, absolute_expires_at)
         VALUES ($1, $2, now() + interval '1 day', now() + interval '1 day') RETURNING id`,
        [userId, randomBytes(32)],
      );
      return (rows[0] as { id: string }).id;
    };
    const familyInput = async (overrides: { sessionId?: string | null; clientId?: string } = {}) => ({
      userId: await createUser(),
      clientId: overrides.clientId ?? 'first-party',
      sessionId: overrides.sessionId ?? null,
      scope: ['models:read', 'models:invoke'],
      audience: 'https://api.example.test',
    });
    const tokenRows = async (familyId: string) =>
      (
        await db.query<{ token_hash: Uint8Array; consumed_at: Date | null; replaced_by: Uint8Array | null }>(
          'SELECT token_hash, consumed_at, replaced_by FROM refresh_tokens WHERE family_id = $1 ORDER BY created_at, consumed_at NULLS LAST',
          [familyId],
        )
      ).rows;
    const familyRow = async (familyId: string) =>
      (
        await db.query<{ revoked_at: Date | null; revoked_reason: string | null }>(
          'SELECT revoked_at, revoked_reason FROM refresh_families WHERE id = $1',
          [familyId],
        )
      ).rows[0];
    const sha256 = (token: string) => createHash('sha256').update(token).digest();

    it('creates a family and rotates along a chain; every use consumes the token it presents', async () => {
      const { service, clock } = harness(db);
      const input = await familyInput();
      const created = await service.createFamily(input);
      assert.match(created.refreshToken, /^ghr_[A-Za-z0-9_-]{43}$/);
      assert.equal(created.expiresAt.getTime(), clock.now + 7 * DAY_MS);
      assert.equal(created.absoluteExpiresAt.getTime(), clock.now + 30 * DAY_MS);

      clock.now += 60_000;
      const second = await service.rotate({ refreshToken: created.refreshToken, clientId: 'first-party' });
      assert.deepEqual(second.family, {
        id: created.familyId,
        userId: input.userId,
        clientId: 'first-party',
        sessionId: null,
        scope: ['models:read', 'models:invoke'],
        audience: 'https://api.example.test',
      });
      assert.notEqual(second.refreshToken, created.refreshToken);
      assert.equal(second.expiresAt.getTime(), clock.now + 7 * DAY_MS);
      const third = await service.rotate({ refreshToken: second.refreshToken, clientId: 'first-party' });
      assert.equal(third.family.id, created.familyId);

      const rows = await tokenRows(created.familyId);
      assert.equal(rows.length, 3);
      assert.ok(rows[0]?.consumed_at && rows[1]?.consumed_at);
      assert.equal(rows[2]?.consumed_at, null);
      // Each consumed token points at its successor.
      assert.deepEqual(Buffer.from(rows[0]?.replaced_by ?? []), sha256(second.refreshToken));
      assert.deepEqual(Buffer.from(rows[1]?.replaced_by ?? []), sha256(third.refreshToken));
    });

    it('stores only the SHA-256 of a token: the plaintext appears nowhere in the tables', async () => {
      const { service } = harness(db);
      const created = await service.createFamily(await familyInput());
      const rotated = await service.rotate({ refreshToken: created.refreshToken, clientId: 'first-party' });
      for (const token of [created.refreshToken, rotated.refreshToken]) {
        const body = token.slice(4);
        const rawHex = Buffer.from(body, 'base64url').toString('hex');
        for (const table of ['refresh_tokens', 'refresh_families']) {
          const { rows } = await db.query<{ dump: string }>(`SELECT r::text AS dump FROM ${table} AS r`);
          assert.ok(rows.length > 0);
          for (const { dump } of rows) {
            assert.ok(!dump.includes(body), `${table} holds the token`);
            assert.ok(!dump.toLowerCase().includes(rawHex), `${table} holds the token's raw bytes`);
          }
        }
        const stored = await db.query('SELECT 1 FROM refresh_tokens WHERE token_hash = $1', [sha256(token)]);
        assert.equal(stored.rows.length, 1);
      }
    });

    it('two processes racing 50 uses of one token: one successor; within the grace period the losers do not revoke; a later replay revokes the family', async () => {
      const { make, clock, audit, revoked, reuse } = harness(db, { reuseGraceSeconds: 30 });
      const nodeA = make(db);
      const nodeB = make(db2);
      const input = await familyInput();
      const created = await nodeA.createFamily(input);
      clock.now += 1000;

      const results = await Promise.allSettled(
        Array.from({ length: 50 }, (_, i) =>
          (i % 2 === 0 ? nodeA : nodeB).rotate({
            refreshToken: created.refreshToken,
            clientId: 'first-party',
          }),
        ),
      );
      const winners = results.filter((r) => r.status === 'fulfilled');
      const losers = results.filter((r) => r.status === 'rejected');
      assert.equal(winners.length, 1);
      assert.equal(losers.length, 49);
      for (const loser of losers) rejectsWith('reused_within_grace')(loser.reason);
      assert.equal((await tokenRows(created.familyId)).length, 2, 'exactly one successor was inserted');
      assert.equal((await familyRow(created.familyId))?.revoked_at, null);
      assert.equal(revoked.length, 0);
      const successor = (winners[0] as PromiseFulfilledResult<{ refreshToken: string }>).value.refreshToken;

      // Past the grace period, the old token coming back is theft: the whole family goes.
      clock.now += 31_000;
      await assert.rejects(
        nodeB.rotate({
          refreshToken: created.refreshToken,
          clientId: 'first-party',
          meta: { ip: '203.0.113.9', userAgent: 'curl', requestId: 'req-1' },
        }),
        rejectsWith('reused'),
      );
      await assert.rejects(
        nodeA.rotate({ refreshToken: successor, clientId: 'first-party' }),
        rejectsWith('revoked'),
      );
      await assert.rejects(
        nodeA.rotate({ refreshToken: created.refreshToken, clientId: 'first-party' }),
        rejectsWith('revoked'),
      );
      assert.equal((await familyRow(created.familyId))?.revoked_reason, REUSE_REVOCATION_REASON);
      assert.deepEqual(
        revoked.map((r) => [r.family.id, r.family.userId, r.reason]),
        [[created.familyId, input.userId, REUSE_REVOCATION_REASON]],
      );
      assert.equal(reuse.count, 1);
      const detected = audit.ofType('token.reuse_detected');
      assert.equal(detected.length, 1);
      assert.deepEqual(detected[0], {
        type: 'token.reuse_detected',
        outcome: 'failure',
        subjectId: input.userId,
        ip: '203.0.113.9',
        userAgent: 'curl',
        requestId: 'req-1',
        details: { familyId: created.familyId, clientId: 'first-party' },
      });
      assert.equal(audit.ofType('token.family_revoked').length, 1);
      const serialized = JSON.stringify(audit.events);
      assert.ok(
        !serialized.includes(created.refreshToken.slice(4)) && !serialized.includes(successor.slice(4)),
      );
    });

    it('without a grace period, the losers of a race are reuse: one successor, the family revoked and announced once', async () => {
      const { make, clock, audit, revoked, reuse } = harness(db);
      const nodeA = make(db);
      const nodeB = make(db2);
      const created = await nodeA.createFamily(await familyInput());
      clock.now += 1000;
      const results = await Promise.allSettled(
        Array.from({ length: 50 }, (_, i) =>
          (i % 2 === 0 ? nodeA : nodeB).rotate({
            refreshToken: created.refreshToken,
            clientId: 'first-party',
          }),
        ),
      );
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
      const reasons = results.flatMap((r) =>
        r.status === 'rejected' ? [(r.reason as InvalidGrantError).reason] : [],
      );
      assert.equal(reasons.length, 49);
      assert.ok(
        reasons.every((reason) => reason === 'reused' || reason === 'revoked'),
        reasons.join(),
      );
      assert.equal((await tokenRows(created.familyId)).length, 2);
      assert.equal((await familyRow(created.familyId))?.revoked_reason, REUSE_REVOCATION_REASON);
      assert.equal(revoked.length, 1);
      assert.equal(reuse.count, 1);
      assert.equal(audit.ofType('token.reuse_detected').length, 1);
    });

    it('a token presented by another client is refused without being consumed or revoking anything', async () => {
      const { service, revoked } = harness(db);
      const created = await service.createFamily(await familyInput({ clientId: 'app-a' }));
      await assert.rejects(
        service.rotate({ refreshToken: created.refreshToken, clientId: 'app-b' }),
        rejectsWith('client_mismatch'),
      );
      assert.equal((await tokenRows(created.familyId))[0]?.consumed_at, null);
      const rotated = await service.rotate({ refreshToken: created.refreshToken, clientId: 'app-a' });
      // Even a consumed token: another client cannot use it to revoke app-a's family.
      await assert.rejects(
        service.rotate({ refreshToken: created.refreshToken, clientId: 'app-b' }),
        rejectsWith('client_mismatch'),
      );
      assert.equal(revoked.length, 0);
      assert.ok(await service.rotate({ refreshToken: rotated.refreshToken, clientId: 'app-a' }));
    });

    it('refuses unknown and malformed tokens', async () => {
      const { service } = harness(db);
      for (const token of [
        '',
        'garbage',
        `ghr_${randomBytes(32).toString('base64url')}`,
        `ghr_${'A'.repeat(44)}`,
      ]) {
        await assert.rejects(
          service.rotate({ refreshToken: token, clientId: 'first-party' }),
          rejectsWith('unknown'),
        );
      }
    });

    it('a token unused for the idle period expires; rotation never outlives the absolute expiry', async () => {
      const { service, clock } = harness(db, { idleTtlSeconds: 60, absoluteTtlSeconds: 100 });
      const idle = await service.createFamily(await familyInput());
      clock.now += 60_000;
      await assert.rejects(
        service.rotate({ refreshToken: idle.refreshToken, clientId: 'first-party' }),
        rejectsWith('expired'),
      );

      const created = await service.createFamily(await familyInput());
      assert.equal(created.expiresAt.getTime(), clock.now + 60_000);
      clock.now += 50_000;
      const rotated = await service.rotate({ refreshToken: created.refreshToken, clientId: 'first-party' });
      // now + idle would be 110 s after creation; the family ends at 100 s.
      assert.equal(rotated.expiresAt.getTime(), created.absoluteExpiresAt.getTime());
      clock.now += 45_000;
      const last = await service.rotate({ refreshToken: rotated.refreshToken, clientId: 'first-party' });
      clock.now += 5_000;
      await assert.rejects(
        service.rotate({ refreshToken: last.refreshToken, clientId: 'first-party' }),
        rejectsWith('expired'),
      );
      // An expired family is not "reuse": replaying its old token revokes nothing.
      await assert.rejects(
        service.rotate({ refreshToken: created.refreshToken, clientId: 'first-party' }),
        rejectsWith('expired'),
      );
      assert.equal((await familyRow(created.familyId))?.revoked_at, null);

      clock.now += 1000;
      assert.ok((await service.purgeExpired()) >= 2);
      assert.equal(await familyRow(created.familyId), undefined);
      assert.equal((await tokenRows(created.familyId)).length, 0);
    });

    it('revokes the families of a session, and every family of a user; idempotent and audited', async () => {
      const { service, audit, revoked } = harness(db);
      const input = await familyInput();
      const sessionId = await createSession(input.userId);
      const a = await service.createFamily({ ...input, sessionId });
      const b = await service.createFamily({ ...input, sessionId, clientId: 'cli' });
      const c = await service.createFamily(input);
      const other = await service.createFamily(await familyInput());

      assert.equal(await service.revokeFamiliesForSession(sessionId, 'session_revoked'), 2);
      assert.equal(await service.revokeFamiliesForSession(sessionId, 'session_revoked'), 0);
      await assert.rejects(
        service.rotate({ refreshToken: a.refreshToken, clientId: 'first-party' }),
        rejectsWith('revoked'),
      );
      await assert.rejects(
        service.rotate({ refreshToken: b.refreshToken, clientId: 'cli' }),
        rejectsWith('revoked'),
      );
      const cRotated = await service.rotate({ refreshToken: c.refreshToken, clientId: 'first-party' });
      assert.deepEqual(revoked.map((r) => r.family.id).sort(), [a.familyId, b.familyId].sort());
      assert.ok(revoked.every((r) => r.reason === 'session_revoked' && r.family.sessionId === sessionId));

      assert.equal(await service.revokeAllForUser(input.userId, 'password_changed'), 1);
      assert.equal(await service.revokeAllForUser(input.userId, 'password_changed'), 0);
      await assert.rejects(
        service.rotate({ refreshToken: cRotated.refreshToken, clientId: 'first-party' }),
        rejectsWith('revoked'),
      );
      assert.ok(await service.rotate({ refreshToken: other.refreshToken, clientId: 'first-party' }));

      const events = audit.ofType('token.family_revoked');
      assert.equal(events.length, 3);
      assert.deepEqual(events.at(-1), {
        type: 'token.family_revoked',
        outcome: 'success',
        subjectId: input.userId,
        details: { familyId: c.familyId, clientId: 'first-party', reason: 'password_changed' },
      });
      assert.equal(await service.revokeFamily(other.familyId, 'admin'), true);
      assert.equal(await service.revokeFamily(other.familyId, 'admin'), false);
      assert.equal(await service.revokeFamily('not-a-uuid', 'admin'), false);
    });

    it('revoking by token (logout, RFC 7009) revokes the whole family, from any of its tokens', async () => {
      const { service, revoked } = harness(db);
      const created = await service.createFamily(await familyInput({ clientId: 'app' }));
      const rotated = await service.rotate({ refreshToken: created.refreshToken, clientId: 'app' });
      assert.equal(await service.revokeByToken(created.refreshToken, 'other-app'), 'client_mismatch');
      assert.equal(revoked.length, 0);
      assert.equal(await service.revokeByToken(created.refreshToken, 'app'), 'revoked');
      assert.equal(await service.revokeByToken(rotated.refreshToken, 'app'), 'revoked');
      assert.equal(
        await service.revokeByToken(`ghr_${randomBytes(32).toString('base64url')}`, 'app'),
        'unknown',
      );
      assert.equal(await service.revokeByToken('nonsense', 'app'), 'unknown');
      assert.deepEqual(
        revoked.map((r) => r.reason),
        ['revoked_by_client'],
      );
      await assert.rejects(
        service.rotate({ refreshToken: rotated.refreshToken, clientId: 'app' }),
        rejectsWith('revoked'),
      );
    });

    it('a family created inside a caller transaction disappears with its rollback; deleting the session keeps the family', async () => {
      const { service } = harness(db);
      const input = await familyInput();
      let familyId = '';
      await assert.rejects(
        db.transaction(async (tx) => {
          familyId = (await service.createFamily(input, tx)).familyId;
          throw new Error('rolled back');
        }),
        /rolled back/,
      );
      assert.equal(await familyRow(familyId), undefined);

      const sessionId = await createSession(input.userId);
      const created = await service.createFamily({ ...input, sessionId });
      await db.query('DELETE FROM sessions WHERE id = $1', [sessionId]);
      const rotated = await service.rotate({ refreshToken: created.refreshToken, clientId: 'first-party' });
      assert.equal(rotated.family.sessionId, null);
      await db.query('DELETE FROM users WHERE id = $1', [input.userId]);
      await assert.rejects(
        service.rotate({ refreshToken: rotated.refreshToken, clientId: 'first-party' }),
        rejectsWith('unknown'),
      );
    });

    it('rejects nonsensical lifetimes', () => {
      assert.throws(() => harness(db, { idleTtlSeconds: 0 }), RangeError);
      assert.throws(() => harness(db, { reuseGraceSeconds: -1 }), RangeError);
    });
  });
}
