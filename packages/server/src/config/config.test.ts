import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { tempDir } from '../../test/support/backends.ts';
import { StartupError } from '../errors.ts';
import { loadConfig } from './config.ts';
import { resolveMasterSecret } from './master-secret.ts';

describe('configuration', () => {
  it('has embedded defaults', () => {
    const config = loadConfig({});
    assert.equal(config.port, 4000);
    assert.equal(config.publicUrl, 'http://localhost:4000');
    assert.equal(config.databaseUrl, undefined);
    assert.equal(config.redisUrl, undefined);
    assert.match(config.dataDir, /\.gatehouse$/);
    assert.equal(config.secret, undefined);
    assert.equal(config.secureTransport, false);
    assert.deepEqual(config.corsOrigins, []);
  });

  it('names every bad setting in one message, with what is expected', () => {
    assert.throws(
      () =>
        loadConfig({
          PORT: 'eighty',
          GATEHOUSE_PUBLIC_URL: 'ftp://x',
          DATABASE_URL: 'mysql://db',
          REDIS_URL: 'http://cache',
          GATEHOUSE_LOG_LEVEL: 'loud',
          GATEHOUSE_CORS_ORIGINS: 'https://ok.example,https://bad.example/path',
        }),
      (error: unknown) => {
        assert.ok(error instanceof StartupError);
        const message = error.message;
        for (const name of [
          'PORT="eighty"',
          'GATEHOUSE_PUBLIC_URL="ftp://x"',
          'DATABASE_URL="mysql://db"',
          'REDIS_URL="http://cache"',
          'GATEHOUSE_LOG_LEVEL="loud"',
          'GATEHOUSE_CORS_ORIGINS',
          'GATEHOUSE_SECRET=(unset)',
        ]) {
          assert.ok(message.includes(name), `message names ${name}:\n${message}`);
        }
        assert.match(message, /7 setting/);
        assert.match(message, /an integer from 0 to 65535/);
        return true;
      },
    );
  });

  it('requires the master secret with DATABASE_URL and never prints it', () => {
    assert.throws(
      () => loadConfig({ DATABASE_URL: 'postgres://db/x' }),
      /GATEHOUSE_SECRET=\(unset\): expected at least 32/,
    );
    const short = 'short-secret-value';
    assert.throws(
      () => loadConfig({ GATEHOUSE_SECRET: short }),
      (error: unknown) =>
        error instanceof StartupError && !error.message.includes(short) && error.message.includes('(hidden)'),
    );
    const config = loadConfig({ DATABASE_URL: 'postgres://db/x', GATEHOUSE_SECRET: 'x'.repeat(40) });
    assert.equal(config.secret, 'x'.repeat(40));
  });

  it('never echoes a password embedded in a connection URL', () => {
    assert.throws(
      () =>
        loadConfig({
          DATABASE_URL: 'mysql://admin:hunter2-db@db/x',
          REDIS_URL: 'http://:hunter2-redis@cache',
        }),
      (error: unknown) =>
        error instanceof StartupError &&
        !error.message.includes('hunter2') &&
        error.message.includes('mysql://admin:***@db/x'),
    );
  });

  it('rejects out-of-range numbers and a bad schema name', () => {
    assert.throws(() => loadConfig({ PORT: '70000' }), /PORT="70000"/);
    assert.throws(
      () => loadConfig({ GATEHOUSE_DATABASE_SCHEMA: 'Robert"); drop' }),
      /GATEHOUSE_DATABASE_SCHEMA/,
    );
  });

  it('reads an optional JSON file, with the environment taking precedence', () => {
    const dir = tempDir();
    const file = join(dir, 'gatehouse.json');
    writeFileSync(file, JSON.stringify({ PORT: 5000, GATEHOUSE_PUBLIC_URL: 'https://auth.example.com/' }));
    const config = loadConfig({ GATEHOUSE_CONFIG: file, PORT: '6000' });
    assert.equal(config.port, 6000);
    assert.equal(config.publicUrl, 'https://auth.example.com');
    assert.equal(config.secureTransport, true);
  });

  it('refuses a config file with unknown settings or bad JSON', () => {
    const dir = tempDir();
    const file = join(dir, 'gatehouse.json');
    writeFileSync(file, JSON.stringify({ PROT: 5000 }));
    assert.throws(() => loadConfig({ GATEHOUSE_CONFIG: file }), /unknown settings: PROT/);
    writeFileSync(file, '{ nope');
    assert.throws(() => loadConfig({ GATEHOUSE_CONFIG: file }), /not valid JSON/);
    assert.throws(
      () => loadConfig({ GATEHOUSE_CONFIG: join(dir, 'missing.json') }),
      /Cannot read the configuration file/,
    );
  });
});

describe('master secret', () => {
  it('is generated once into the data dir with mode 0600 and then reused', () => {
    const dir = tempDir();
    const first = resolveMasterSecret(undefined, dir);
    assert.equal(first.source, 'generated');
    assert.ok(first.secret.length >= 32);
    assert.equal(statSync(join(dir, 'secret')).mode & 0o777, 0o600);
    const second = resolveMasterSecret(undefined, dir);
    assert.equal(second.source, 'data directory');
    assert.equal(second.secret, first.secret);
  });

  it('prefers the configured secret', () => {
    const secret = 'y'.repeat(40);
    assert.deepEqual(resolveMasterSecret(secret, tempDir()), { secret, source: 'environment' });
  });
});
