import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CreateOptions, createGatehouse, type Gatehouse } from '../../src/app.ts';
import { type Environment, loadConfig } from '../../src/config/config.ts';
import { PostgresDatabase } from '../../src/storage/postgres-driver.ts';

/**
 * The suite runs every storage-facing test on the embedded defaults (PGlite + in-memory
 * state) and, when DATABASE_URL / REDIS_URL are set, again on PostgreSQL + Redis.
 */
export interface Backend {
  name: string;
  databaseUrl?: string;
  redisUrl?: string;
}

export function backends(): Backend[] {
  const list: Backend[] = [{ name: 'embedded (PGlite + memory)' }];
  const databaseUrl = process.env.DATABASE_URL;
  const redisUrl = process.env.REDIS_URL;
  if (databaseUrl || redisUrl) {
    list.push({
      name: `${databaseUrl ? 'PostgreSQL' : 'PGlite'} + ${redisUrl ? 'Redis' : 'memory'}`,
      ...(databaseUrl ? { databaseUrl } : {}),
      ...(redisUrl ? { redisUrl } : {}),
    });
  }
  return list;
}

export function uniqueSchema(): string {
  return `t_${randomBytes(6).toString('hex')}`;
}

export function tempDir(prefix = 'gatehouse-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** The environment a test server runs with: silent logs, a fresh schema and data dir, a random secret. */
export function testEnvironment(backend: Backend, overrides: Environment = {}): Environment {
  return {
    GATEHOUSE_LOG_LEVEL: 'silent',
    GATEHOUSE_SECRET: randomBytes(32).toString('base64url'),
    GATEHOUSE_DATA_DIR: tempDir(),
    PORT: '0',
    ...(backend.databaseUrl
      ? { DATABASE_URL: backend.databaseUrl, GATEHOUSE_DATABASE_SCHEMA: uniqueSchema() }
      : {}),
    // A prefix per test server: Redis outlives the run, and counters must not leak between tests.
    ...(backend.redisUrl
      ? { REDIS_URL: backend.redisUrl, GATEHOUSE_REDIS_PREFIX: `gh-test:${randomBytes(6).toString('hex')}:` }
      : {}),
    ...overrides,
  };
}

export interface TestGatehouse extends Gatehouse {
  env: Environment;
  /** Closes the server and removes what the test created (schema, data dir). */
  destroy(): Promise<void>;
}

/** Starts an in-process Gatehouse for a test (not listening; use server.inject, or listen yourself). */
export async function startTestGatehouse(
  backend: Backend,
  overrides: Environment = {},
  options: CreateOptions = {},
): Promise<TestGatehouse> {
  const env = testEnvironment(backend, overrides);
  const config = loadConfig(env);
  const gatehouse = await createGatehouse(config, { inMemoryDatabase: !config.databaseUrl, ...options });
  return {
    ...gatehouse,
    env,
    async destroy() {
      await gatehouse.close();
      await dropSchema(env);
      rmSync(config.dataDir, { recursive: true, force: true });
    },
  };
}

export async function dropSchema(env: Environment): Promise<void> {
  if (!env.DATABASE_URL || !env.GATEHOUSE_DATABASE_SCHEMA) return;
  const db = new PostgresDatabase(env.DATABASE_URL);
  try {
    await db.query(`DROP SCHEMA IF EXISTS "${env.GATEHOUSE_DATABASE_SCHEMA}" CASCADE`);
  } finally {
    await db.close();
  }
}
