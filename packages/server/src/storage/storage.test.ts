import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { backends, dropSchema, tempDir, testEnvironment, uniqueSchema } from '../../test/support/backends.ts';
import { runCli } from '../../test/support/processes.ts';
import { openDatabase } from './index.ts';
import { loadMigrations, migrate } from './migrate.ts';
import { PgliteDatabase } from './pglite-driver.ts';

for (const backend of backends()) {
  describe(`storage on ${backend.name}`, () => {
    const schemas: string[] = [];
    after(async () => {
      for (const schema of schemas)
        await dropSchema({ DATABASE_URL: backend.databaseUrl, GATEHOUSE_DATABASE_SCHEMA: schema });
    });
    const open = async () => {
      const schema = uniqueSchema();
      schemas.push(schema);
      return openDatabase({ databaseUrl: backend.databaseUrl, dataDir: null, schema });
    };

    it('applies every migration once; a second run is a no-op', async () => {
      const db = await open();
      try {
        const first = await migrate(db);
        assert.equal(first.length, loadMigrations().length);
        const second = await migrate(db);
        assert.equal(second.length, 0);
        const { rows } = await db.query<{ count: number }>(
          'SELECT count(*)::int AS count FROM schema_migrations',
        );
        assert.equal(rows[0]?.count, loadMigrations().length);
      } finally {
        await db.close();
      }
    });

    it('rolls a failed transaction back completely', async () => {
      const db = await open();
      try {
        await migrate(db);
        await assert.rejects(
          db.transaction(async (tx) => {
            await tx.query(`INSERT INTO instance_settings (key, value) VALUES ('a', '1')`);
            await tx.query(`INSERT INTO instance_settings (key, value) VALUES ('a', '2')`);
          }),
          /duplicate key/,
        );
        const { rows } = await db.query('SELECT * FROM instance_settings');
        assert.equal(rows.length, 0);
        const value = await db.transaction(async (tx) => {
          await tx.query(`INSERT INTO instance_settings (key, value) VALUES ('b', '{"n": 2}')`);
          return (
            await tx.query<{ value: { n: number } }>(`SELECT value FROM instance_settings WHERE key = 'b'`)
          ).rows[0];
        });
        assert.deepEqual(value, { value: { n: 2 } });
      } finally {
        await db.close();
      }
    });
  });
}

describe('migrations across processes', () => {
  it('two processes migrating one PostgreSQL schema at once both succeed, each migration applied once', {
    skip: !process.env.DATABASE_URL && 'DATABASE_URL is not set',
  }, async () => {
    const env = testEnvironment({ name: 'pg', databaseUrl: process.env.DATABASE_URL as string });
    try {
      const results = await Promise.all([
        runCli(['migrate'], env),
        runCli(['migrate'], env),
        runCli(['migrate'], env),
      ]);
      for (const result of results) assert.equal(result.code, 0, result.stderr);
      const appliedBy = results.filter((r) => r.stdout.includes('applied')).length;
      assert.equal(appliedBy, 1, results.map((r) => r.stdout).join('\n'));
      const db = await openDatabase({
        databaseUrl: env.DATABASE_URL,
        dataDir: null,
        schema: env.GATEHOUSE_DATABASE_SCHEMA as string,
      });
      try {
        const { rows } = await db.query<{ count: number }>(
          'SELECT count(*)::int AS count FROM schema_migrations',
        );
        assert.equal(rows[0]?.count, loadMigrations().length);
      } finally {
        await db.close();
      }
    } finally {
      await dropSchema(env);
    }
  });

  it('a second process on the same embedded data directory gets a clear message', async () => {
    const dataDir = tempDir();
    const db = await PgliteDatabase.open(dataDir);
    try {
      const result = await runCli(['migrate'], { GATEHOUSE_DATA_DIR: dataDir });
      assert.equal(result.code, 1);
      assert.match(result.stderr, /is in use by another Gatehouse process \(pid \d+\)/);
      assert.ok(result.stderr.includes(dataDir));
    } finally {
      await db.close();
    }
    const result = await runCli(['migrate'], { GATEHOUSE_DATA_DIR: dataDir });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /applied 0001_foundation/);
  });

  it('a corrupt or unusable data directory stops start-up with a message naming the path', async () => {
    const fileInstead = tempDir();
    writeFileSync(join(fileInstead, 'pgdata'), 'not a directory');
    let result = await runCli(['migrate'], { GATEHOUSE_DATA_DIR: fileInstead });
    assert.equal(result.code, 1);
    assert.ok(result.stderr.includes(join(fileInstead, 'pgdata')), result.stderr);
    assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');

    const corrupt = tempDir();
    mkdirSync(join(corrupt, 'pgdata', 'global'), { recursive: true });
    writeFileSync(join(corrupt, 'pgdata', 'PG_VERSION'), 'garbage\n');
    writeFileSync(join(corrupt, 'pgdata', 'global', 'pg_control'), 'garbage');
    result = await runCli(['migrate'], { GATEHOUSE_DATA_DIR: corrupt });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /cannot be opened/);
    assert.ok(result.stderr.includes(join(corrupt, 'pgdata')), result.stderr);
  });
});
