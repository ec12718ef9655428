import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { hash as bcryptHash } from '@node-rs/bcrypt';
import { PgliteDatabase } from '../../src/storage/pglite-driver.ts';
import { backends, dropSchema, tempDir, testEnvironment } from '../support/backends.ts';
import { runCli, startServerProcess } from '../support/processes.ts';

const PASSWORD = 'an imported passphrase from elsewhere';

for (const backend of backends()) {
  describe(`importing accounts from another system (${backend.name})`, () => {
    const env = testEnvironment(backend, { GATEHOUSE_LOG_LEVEL: 'warn' });
    after(() => dropSchema(env));

    it('refuses a file with any malformed line and writes nothing', async () => {
      const file = join(tempDir(), 'bad.jsonl');
      writeFileSync(
        file,
        `${JSON.stringify({ email: 'ok@example.com', password_hash: await bcryptHash(PASSWORD, { cost: 4 }) })}\n{"email": "x@example.com", "password_hash": "plaintext"}\nnot json\n`,
      );
      const result = await runCli(['users', 'import', file], env);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /line 2: password_hash is not a bcrypt or argon2id hash/);
      assert.match(result.stderr, /line 3: not valid JSON/);
      assert.doesNotMatch(result.stderr, /plaintext/);
    });

    it('imports bcrypt hashes, verifies them at login and upgrades them to argon2id', async () => {
      const email = `imported-${Date.now()}@example.com`;
      const file = join(tempDir(), 'users.jsonl');
      writeFileSync(
        file,
        [
          JSON.stringify({
            email: email.toUpperCase(),
            name: 'Imported',
            password_hash: await bcryptHash(PASSWORD, { cost: 10 }),
            email_verified: true,
            roles: ['premium'],
          }),
          JSON.stringify({ email: 'ok@example.com', password_hash: await bcryptHash(PASSWORD, { cost: 4 }) }),
        ].join('\n'),
      );
      const imported = await runCli(['users', 'import', file], env);
      assert.equal(imported.code, 0, imported.stderr);
      assert.match(imported.stdout, /Imported 2 account/);
      const again = await runCli(['users', 'import', file], env);
      assert.match(again.stdout, /Imported 0 account[\s\S]*skipped line 1/);

      const server = await startServerProcess(env);
      try {
        const login = async () =>
          fetch(`${server.url}/v1/auth/login`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ email, password: PASSWORD }),
          });
        const first = await login();
        assert.equal(first.status, 200);
        const { scope } = (await first.json()) as { scope: string };
        assert.ok(scope.split(' ').includes('inference:heavy'), 'imported roles apply');
        assert.equal((await login()).status, 200, 'the upgraded hash verifies too');
      } finally {
        await server.stop();
      }
      const hash = await storedHash(env, email);
      assert.match(hash, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    });
  });
}

async function storedHash(env: Record<string, string | undefined>, email: string): Promise<string> {
  if (env.DATABASE_URL) {
    const { PostgresDatabase } = await import('../../src/storage/postgres-driver.ts');
    const db = new PostgresDatabase(env.DATABASE_URL, { schema: env.GATEHOUSE_DATABASE_SCHEMA as string });
    try {
      return (
        (
          await db.query<{ password_hash: string }>('SELECT password_hash FROM users WHERE email = $1', [
            email,
          ])
        ).rows[0]?.password_hash ?? ''
      );
    } finally {
      await db.close();
    }
  }
  const db = await PgliteDatabase.open(env.GATEHOUSE_DATA_DIR as string);
  try {
    return (
      (await db.query<{ password_hash: string }>('SELECT password_hash FROM users WHERE email = $1', [email]))
        .rows[0]?.password_hash ?? ''
    );
  } finally {
    await db.close();
  }
}
