import assert from 'node:assert/strict';
import { createPrivateKey, randomBytes } from 'node:crypto';
import { after, before, beforeEach, describe, it } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { type Backend, backends, dropSchema, tempDir, uniqueSchema } from '../../test/support/backends.ts';
import { runCli } from '../../test/support/processes.ts';
import { loadConfig } from '../config/config.ts';
import { StartupError } from '../errors.ts';
import { createHttpServer } from '../http/server.ts';
import { createLogger } from '../logging/logger.ts';
import type { Database } from '../storage/database.ts';
import { openDatabase } from '../storage/index.ts';
import { migrate } from '../storage/migrate.ts';
import { AccessTokenService, type IssueAccessTokenInput } from './access-tokens.ts';
import { jwksRoutes } from './jwks-routes.ts';
import { InvalidTokenError } from './jwt.ts';
import { deriveKey, open, SecretBoxError } from './secret-box.ts';
import { type SigningKeyOptions, SigningKeyService } from './signing-keys.ts';

const SECRET = randomBytes(32).toString('base64url');
const ISSUER = 'http://localhost:4000';
const T0 = 1_800_000_000_000;
const HKDF_INFO = 'gatehouse signing keys v1';

const input: IssueAccessTokenInput = {
  subject: 'user-1',
  audience: ISSUER,
  clientId: 'dashboard',
  scope: ['models:invoke'],
  sessionId: 'session-1',
  roles: ['member'],
  permissions: ['models:invoke'],
  tokenVersion: 1,
};

function kidOf(token: string): string {
  return JSON.parse(Buffer.from(token.split('.')[0] as string, 'base64url').toString()).kid;
}

async function reasonOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof InvalidTokenError, `expected InvalidTokenError, got ${String(error)}`);
    return error.reason;
  }
  assert.fail('the token was accepted');
}

/** A Database that counts the statements sent through it. */
function counting(db: Database): { db: Database; count: () => number } {
  let queries = 0;
  const wrapped: Database = {
    kind: db.kind,
    description: db.description,
    query: <Row>(sql: string, params?: readonly unknown[]) => {
      queries++;
      return db.query<Row>(sql, params);
    },
    exec: (sql) => {
      queries++;
      return db.exec(sql);
    },
    transaction: (fn) => {
      queries++;
      return db.transaction(fn);
    },
    ping: () => db.ping(),
    close: () => db.close(),
  };
  return { db: wrapped, count: () => queries };
}

async function states(db: Database): Promise<{ kid: string; alg: string; use: string; state: string }[]> {
  return (
    await db.query<{ kid: string; alg: string; use: string; state: string }>(
      'SELECT kid, alg, use, state FROM signing_keys ORDER BY created_at, kid',
    )
  ).rows;
}

for (const backend of backends()) {
  describe(`signing keys on ${backend.name}`, () => {
    const schema = uniqueSchema();
    let db: Database;
    let t = T0;
    const clock = () => t;
    const es256Only: SigningKeyOptions = { keySets: [{ alg: 'ES256', use: 'access_token' }], now: clock };

    const openDb = (b: Backend) => openDatabase({ databaseUrl: b.databaseUrl, dataDir: null, schema });
    before(async () => {
      db = await openDb(backend);
      await migrate(db);
    });
    after(async () => {
      await db.close();
      await dropSchema({ DATABASE_URL: backend.databaseUrl, GATEHOUSE_DATABASE_SCHEMA: schema });
    });
    beforeEach(async () => {
      t = T0;
      await db.query('DELETE FROM signing_keys');
    });

    it('ensureKeys creates one current ES256 access-token key and one RS256 ID-token key, once', async () => {
      const a = new SigningKeyService(db, SECRET, { now: clock });
      const b = new SigningKeyService(db, SECRET, { now: clock });
      await Promise.all([a.ensureKeys(), b.ensureKeys()]);
      await a.ensureKeys();
      const rows = await states(db);
      assert.deepEqual(rows.map((r) => [r.alg, r.use, r.state]).sort(), [
        ['ES256', 'access_token', 'current'],
        ['RS256', 'id_token', 'current'],
      ]);
      const jwks = await a.jwks();
      assert.equal(jwks.keys.length, 2);
      for (const jwk of jwks.keys) {
        assert.equal(jwk.use, 'sig');
        assert.ok(rows.some((r) => r.kid === jwk.kid && r.alg === jwk.alg));
        for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(member in jwk, false);
      }
      // EdDSA on demand: the first signer request creates the set.
      const eddsa = await a.signerFor('EdDSA');
      assert.equal(eddsa.alg, 'EdDSA');
      assert.equal((await states(db)).filter((r) => r.alg === 'EdDSA' && r.state === 'current').length, 1);
    });

    it('stores private keys sealed under the master secret, bound to their kid', async () => {
      const keys = new SigningKeyService(db, SECRET, { now: clock });
      await keys.ensureKeys();
      const { rows } = await db.query<{
        kid: string;
        public_jwk: Record<string, unknown>;
        private_key_enc: Uint8Array;
      }>('SELECT kid, public_jwk, private_key_enc FROM signing_keys');
      assert.equal(rows.length, 2);
      const boxKey = deriveKey(SECRET, HKDF_INFO);
      for (const row of rows) {
        const sealed = Buffer.from(row.private_key_enc);
        const der = open(boxKey, sealed, row.kid);
        const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
        const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
        const d = privateKey.export({ format: 'jwk' }).d as string;
        for (const secret of [der, Buffer.from(pem), Buffer.from(d), Buffer.from(d, 'base64url')]) {
          assert.equal(sealed.includes(secret), false, 'the stored bytes do not contain the private key');
        }
        const pemBody = pem.split('\n')[1] as string;
        assert.equal(sealed.includes(Buffer.from(pemBody)), false);
        assert.equal(JSON.stringify(row.public_jwk).includes('"d"'), false);
        assert.throws(
          () => open(deriveKey('another-master-secret-of-32-chars!!', HKDF_INFO), sealed, row.kid),
          SecretBoxError,
        );
        const other = rows.find((r) => r.kid !== row.kid) as (typeof rows)[number];
        assert.throws(() => open(boxKey, sealed, other.kid), SecretBoxError, 'the kid is authenticated');
      }

      const wrong = new SigningKeyService(db, 'another-master-secret-of-32-chars!!', { now: clock });
      await assert.rejects(wrong.ensureKeys(), (error: unknown) => {
        assert.ok(error instanceof StartupError);
        assert.match(error.message, /cannot be decrypted with this master secret/);
        assert.equal(error.message.includes(SECRET), false);
        return true;
      });
    });

    it('rotates without breaking verifiers: published before it signs, old tokens valid until expiry, then retired', async () => {
      const options = { ...es256Only, jwksCacheSeconds: 300, maxTokenTtlSeconds: 900 };
      const node = new SigningKeyService(db, SECRET, options);
      await node.ensureKeys();
      const lagging = new SigningKeyService(db, SECRET, options);
      await lagging.ensureKeys();
      const tokens = new AccessTokenService(node, { issuer: ISSUER });
      const laggingTokens = new AccessTokenService(lagging, { issuer: ISSUER });

      const first = await tokens.issue(input);
      const k1 = kidOf(first.token);
      const k1Signer = await node.currentSigner();
      // A token of K1 that outlives K1's retirement (a bug elsewhere, or a forged exp): it must die with K1.
      const longLived = k1Signer.sign({ ...first.claims, jti: 'long-lived', exp: first.claims.exp + 86_400 });

      const rotation = await node.rotate();
      const k2 = rotation.kid;
      assert.notEqual(k2, k1);
      assert.equal(rotation.created, true);
      assert.equal(rotation.activatesAt.getTime(), T0 + 305_000);
      assert.deepEqual((await node.rotate()).kid, k2, 'a second rotate returns the pending key');
      assert.deepEqual((await node.jwks()).keys.map((k) => k.kid).sort(), [k1, k2].sort());
      assert.deepEqual(
        (await states(db)).map((r) => `${r.kid}:${r.state}`).sort(),
        [`${k1}:current`, `${k2}:next`].sort(),
      );

      t = T0 + 304_999;
      assert.deepEqual((await node.advance()).promoted, []);
      assert.equal(
        kidOf((await tokens.issue(input)).token),
        k1,
        'the next key does not sign before promotion',
      );

      t = T0 + 305_000;
      assert.deepEqual((await node.advance()).promoted, [k2]);
      assert.deepEqual((await node.advance()).promoted, [], 'advance is idempotent');
      const second = await tokens.issue(input);
      assert.equal(kidOf(second.token), k2, 'new tokens use the new kid');
      const jwks = await node.jwks();
      assert.deepEqual(jwks.keys.map((k) => k.kid).sort(), [k1, k2].sort());
      const rows = await node.list();
      const retiring = rows.find((r) => r.kid === k1);
      assert.equal(retiring?.state, 'retiring');
      assert.equal(retiring?.notAfter?.getTime(), t + (900 + 60 + 30) * 1000);

      // A node that has not refreshed yet still signs with K1: safe, since K1 stays published.
      const fromLagging = await laggingTokens.issue(input);
      assert.equal(kidOf(fromLagging.token), k1);
      // Every token verifies here, on the lagging node (the unknown K2 costs one reload, which
      // also moves its signer to K2), and with jose against the published JWKS.
      for (const token of [first.token, second.token, longLived, fromLagging.token]) {
        await tokens.verify(token);
        await laggingTokens.verify(token);
        await jwtVerify(token, createLocalJWKSet(jwks), {
          issuer: ISSUER,
          audience: ISSUER,
          typ: 'at+jwt',
          currentDate: new Date(t),
        });
      }
      assert.equal(kidOf((await laggingTokens.issue(input)).token), k2);

      t = (retiring?.notAfter?.getTime() as number) - 1;
      assert.deepEqual((await node.advance()).retired, []);
      await tokens.verify(longLived);

      t += 1;
      assert.deepEqual((await node.advance()).retired, [k1]);
      assert.deepEqual(
        (await node.jwks()).keys.map((k) => k.kid),
        [k2],
      );
      assert.equal(await reasonOf(tokens.verify(longLived)), 'unknown_kid');
      assert.equal(await reasonOf(tokens.verify(first.token)), 'unknown_kid');
      // Other nodes drop it at their next maintenance tick (every syncIntervalSeconds).
      await lagging.advance();
      assert.equal(await reasonOf(laggingTokens.verify(longLived)), 'unknown_kid');
      const third = await tokens.issue(input);
      await tokens.verify(third.token);
      assert.equal(kidOf(third.token), k2);
    });

    it('creates a successor automatically once the current key is older than the rotation interval', async () => {
      const node = new SigningKeyService(db, SECRET, { ...es256Only, rotationIntervalDays: 30 });
      await node.ensureKeys();
      t = T0 + 30 * 86_400_000 - 1;
      assert.deepEqual((await node.advance()).created, []);
      t += 1;
      const { created } = await node.advance();
      assert.equal(created.length, 1);
      assert.deepEqual((await node.advance()).created, [], 'one pending key at a time');
      t += 305_000;
      assert.deepEqual((await node.advance()).promoted, created);
      assert.equal((await node.currentSigner()).kid, created[0]);
    });

    it('never has two current keys when several nodes start, rotate and advance at once', async () => {
      // Two "nodes": on PostgreSQL two connection pools to the same schema, on PGlite its single connection.
      const db2 = backend.databaseUrl ? await openDb(backend) : db;
      try {
        const nodes = [db, db2, db, db2].map((handle) => new SigningKeyService(handle, SECRET, es256Only));
        await Promise.all(nodes.map((node) => node.ensureKeys()));
        assert.equal((await states(db)).filter((r) => r.state === 'current').length, 1);

        for (let round = 1; round <= 3; round++) {
          const rotations = await Promise.all(nodes.map((node) => node.rotate()));
          assert.equal(new Set(rotations.map((r) => r.kid)).size, 1, 'every node gets the same pending key');
          t += 305_000;
          const results = await Promise.all(
            nodes.flatMap((node) => [node.advance(), node.advance(), node.advance()]),
          );
          assert.deepEqual(
            results.flatMap((r) => r.promoted),
            [rotations[0]?.kid],
            'exactly one promotion in total',
          );
          const rows = await states(db);
          assert.equal(rows.filter((r) => r.state === 'current').length, 1);
          assert.equal(rows.find((r) => r.state === 'current')?.kid, rotations[0]?.kid);
          assert.equal(rows.filter((r) => r.state === 'next').length, 0);
          assert.equal(rows.filter((r) => r.state === 'retiring').length, round);
        }
      } finally {
        if (db2 !== db) await db2.close();
      }
    });

    it('start() ensures keys and advances; its timer keeps advancing until stop()', async () => {
      const node = new SigningKeyService(db, SECRET, { ...es256Only, syncIntervalSeconds: 0.05 });
      await node.start();
      try {
        const first = (await node.currentSigner()).kid;
        const { kid } = await node.rotate();
        t += 305_000;
        const deadline = Date.now() + 5000;
        while ((await node.currentSigner()).kid === first && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        assert.equal((await node.currentSigner()).kid, kid, 'the timer promoted the pending key');
      } finally {
        node.stop();
      }
    });

    it('unknown kids reload the key set at most once per second; signing never queries', async () => {
      const { db: counted, count } = counting(db);
      const node = new SigningKeyService(counted, SECRET, es256Only);
      await node.ensureKeys();
      const tokens = new AccessTokenService(node, { issuer: ISSUER });
      await tokens.issue(input);

      const before = count();
      const reloadsBefore = node.reloads;
      for (let i = 0; i < 200; i++) {
        const issued = await tokens.issue(input);
        await tokens.verify(issued.token);
      }
      assert.equal(count(), before, 'issuing and verifying known kids sends no query');

      const junk = Array.from({ length: 300 }, () => randomBytes(32).toString('base64url'));
      const found = await Promise.all(junk.map((kid) => node.verificationKey(kid)));
      assert.ok(found.every((key) => key === undefined));
      for (const kid of junk) assert.equal(await node.verificationKey(kid), undefined);
      assert.equal(node.reloads - reloadsBefore, 1, 'one reload for 600 unknown-kid lookups within a second');
      assert.equal(count() - before, 1);

      t += 999;
      await node.verificationKey(junk[0] as string);
      assert.equal(node.reloads - reloadsBefore, 1);
      t += 1;
      await node.verificationKey(junk[0] as string);
      assert.equal(node.reloads - reloadsBefore, 2);
    });

    it('serves GET /.well-known/jwks.json with Cache-Control and public members only', async () => {
      const node = new SigningKeyService(db, SECRET, { now: clock, jwksCacheSeconds: 120 });
      await node.ensureKeys();
      await node.rotate();
      const config = loadConfig({ GATEHOUSE_LOG_LEVEL: 'silent', GATEHOUSE_DATA_DIR: tempDir() });
      const server = await createHttpServer(config, createLogger('silent'));
      try {
        await server.register(jwksRoutes, { keys: node });
        const response = await server.inject({ method: 'GET', url: '/.well-known/jwks.json' });
        assert.equal(response.statusCode, 200);
        assert.equal(response.headers['cache-control'], 'public, max-age=120');
        const body = response.json() as { keys: Record<string, unknown>[] };
        assert.equal(body.keys.length, 3);
        const kinds = body.keys.map((k) => `${k.alg}:${k.kty}`).sort();
        assert.deepEqual(kinds, ['ES256:EC', 'ES256:EC', 'RS256:RSA']);
        for (const key of body.keys) {
          assert.deepEqual(
            Object.keys(key).filter(
              (m) => !['kty', 'kid', 'alg', 'use', 'crv', 'x', 'y', 'n', 'e'].includes(m),
            ),
            [],
          );
        }
      } finally {
        await server.close();
      }
    });
  });
}

describe('gatehouse keys', () => {
  it('rotate creates a pending key and says when it activates; list shows it', async () => {
    const env = {
      GATEHOUSE_DATA_DIR: tempDir(),
      GATEHOUSE_SECRET: SECRET,
      GATEHOUSE_LOG_LEVEL: 'silent',
      GATEHOUSE_JWKS_CACHE_SECONDS: '60',
    };
    const rotated = await runCli(['keys', 'rotate', '--alg', 'EdDSA'], env);
    assert.equal(rotated.code, 0, rotated.stderr);
    const kid = /key ([A-Za-z0-9_-]{43})/.exec(rotated.stdout)?.[1];
    assert.ok(kid, rotated.stdout);
    assert.match(rotated.stdout, /EdDSA access_token/);
    assert.match(rotated.stdout, /becomes current .* after \d{4}-\d\d-\d\dT/);
    assert.match(rotated.stdout, /JWKS cache lifetime 60 s/);

    const listed = await runCli(['keys', 'list'], env);
    assert.equal(listed.code, 0, listed.stderr);
    const line = listed.stdout.split('\n').find((l) => l.startsWith(kid));
    assert.match(line ?? '', /EdDSA\s+access_token\s+next\s+\d{4}-/);

    const bad = await runCli(['keys', 'rotate', '--alg', 'HS256'], env);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--alg must be one of ES256, RS256, EdDSA/);
    const usage = await runCli(['keys'], env);
    assert.equal(usage.code, 2);
  });
});
