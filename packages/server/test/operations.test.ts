import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { backends, dropSchema, startTestGatehouse, tempDir, testEnvironment } from './support/backends.ts';
import { hasRedisServer, runCli, startRedis, startServerProcess } from './support/processes.ts';
import { TcpProxy } from './support/tcp-proxy.ts';

const embedded = backends()[0] as NonNullable<ReturnType<typeof backends>[0]>;

async function waitFor(predicate: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('operations', () => {
  it('`gatehouse --help` lists every command with one line each', async () => {
    const result = await runCli(['--help'], {});
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^\s+start\s+\S.+$/m);
    assert.match(result.stdout, /^\s+migrate\s+\S.+$/m);
    const unknown = await runCli(['frobnicate'], {});
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /Unknown command "frobnicate"/);
  });

  it('a bad configuration stops start-up with one message naming every bad setting', async () => {
    const result = await runCli(['start'], { PORT: 'x', GATEHOUSE_LOG_LEVEL: 'chatty' });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /PORT="x"/);
    assert.match(result.stderr, /GATEHOUSE_LOG_LEVEL="chatty"/);
    assert.doesNotMatch(result.stderr, /\n\s+at /);
  });

  for (const backend of backends()) {
    it(`start prints its set-up, serves, and keeps data across a restart (${backend.name})`, async () => {
      const env = testEnvironment(backend, { GATEHOUSE_LOG_LEVEL: 'warn' });
      delete env.GATEHOUSE_SECRET;
      if (backend.databaseUrl) env.GATEHOUSE_SECRET = 'a'.repeat(48);
      try {
        let server = await startServerProcess(env);
        assert.match(server.output(), /Gatehouse listening on http:\/\/127\.0\.0\.1:\d+/);
        assert.match(
          server.output(),
          backend.databaseUrl ? /database:\s+PostgreSQL/ : /database:\s+PGlite \(embedded\)/,
        );
        assert.match(server.output(), backend.redisUrl ? /state store:\s+Redis/ : /state store:\s+in-memory/);
        assert.ok(server.output().includes(String(env.GATEHOUSE_DATA_DIR)));
        if (!backend.databaseUrl) assert.match(server.output(), /master secret: generated into/);
        // Embedded: the same process re-executed itself with the memory settings (bin/gatehouse.js).
        const pid = server.child.pid as number;
        const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        assert.equal(environ.includes('MALLOC_TRIM_THRESHOLD_=1048576'), !backend.databaseUrl);
        assert.equal(cmdline.includes('--max-semi-space-size=4'), !backend.databaseUrl);
        assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
        assert.equal((await fetch(`${server.url}/docs/`)).status, 200);
        assert.match(server.output(), /No administrator exists yet[\s\S]*gatehouse admin create --email/);
        const email = `keep-${Date.now()}@example.com`;
        const registered = await fetch(`${server.url}/v1/auth/register`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ email, password: 'a passphrase that survives restarts' }),
        });
        assert.equal(registered.status, 202);
        assert.equal(await server.stop('SIGTERM'), 0);

        const admin = await runCli(['admin', 'create', '--email', `admin-${email}`], env);
        assert.equal(admin.code, 0, admin.stderr);
        assert.match(admin.stdout, /Password \(shown once, store it now\): \S{20,}/);

        server = await startServerProcess(env);
        if (!backend.databaseUrl) assert.match(server.output(), /master secret: read from/);
        assert.doesNotMatch(server.output(), /No administrator exists yet/);
        const login = await fetch(`${server.url}/v1/auth/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ email, password: 'a passphrase that survives restarts' }),
        });
        assert.equal(login.status, 200, 'the account made before the restart still logs in');
        assert.equal(await server.stop('SIGINT'), 0);
        const migrate = await runCli(['migrate'], env);
        assert.equal(migrate.code, 0, migrate.stderr);
        assert.match(migrate.stdout, /up to date/, 'the schema created by the first start was kept');
      } finally {
        await dropSchema(env);
      }
    });
  }

  it('graceful shutdown finishes in-flight requests and refuses new ones', async () => {
    const gatehouse = await startTestGatehouse(embedded);
    gatehouse.server.get('/slow', async () => {
      await new Promise((r) => setTimeout(r, 500));
      return { done: true };
    });
    const address = await gatehouse.server.listen({ port: 0, host: '127.0.0.1' });
    const inFlight = fetch(`${address}/slow`).then((r) => r.json());
    await new Promise((r) => setTimeout(r, 100));
    const closed = gatehouse.destroy();
    assert.deepEqual(await inFlight, { done: true });
    await closed;
    await assert.rejects(fetch(`${address}/healthz`));
  });

  it('readiness goes 503 naming the state store when Redis stops, and recovers when it returns', {
    skip: !hasRedisServer && 'redis-server is not installed',
  }, async () => {
    let redis = await startRedis();
    const gatehouse = await startTestGatehouse(embedded, { REDIS_URL: redis.url });
    try {
      assert.equal((await gatehouse.server.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
      await redis.stop();
      const down = await gatehouse.server.inject({ method: 'GET', url: '/readyz' });
      assert.equal(down.statusCode, 503);
      assert.match(String(down.headers['content-type']), /application\/problem\+json/);
      assert.ok(down.headers['retry-after']);
      assert.deepEqual(down.json().down, ['state store']);
      assert.equal(
        (await gatehouse.server.inject({ method: 'GET', url: '/healthz' })).statusCode,
        200,
        'still alive',
      );
      redis = await startRedis(redis.port);
      await waitFor(
        async () => (await gatehouse.server.inject({ method: 'GET', url: '/readyz' })).statusCode === 200,
        15_000,
      );
    } finally {
      await gatehouse.destroy();
      await redis.stop();
    }
  });

  it('readiness goes 503 naming the database when PostgreSQL is cut off, and recovers', {
    skip: !process.env.DATABASE_URL && 'DATABASE_URL is not set',
  }, async () => {
    const real = new URL(process.env.DATABASE_URL as string);
    const proxy = new TcpProxy(real.hostname, Number(real.port || 5432));
    const port = await proxy.start();
    const viaProxy = new URL(real);
    viaProxy.port = String(port);
    const gatehouse = await startTestGatehouse({ name: 'pg via proxy', databaseUrl: viaProxy.toString() });
    try {
      assert.equal((await gatehouse.server.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
      proxy.cut();
      const down = await gatehouse.server.inject({ method: 'GET', url: '/readyz' });
      assert.equal(down.statusCode, 503);
      assert.deepEqual(down.json().down, ['database']);
      assert.ok(down.headers['retry-after']);
      proxy.restore();
      await waitFor(
        async () => (await gatehouse.server.inject({ method: 'GET', url: '/readyz' })).statusCode === 200,
        15_000,
      );
    } finally {
      proxy.restore();
      await gatehouse.destroy();
      await proxy.stop();
    }
  });

  it('the data dir default is ./.gatehouse, relative to where the server starts', async () => {
    const dir = tempDir();
    const result = await runCli(['migrate'], { GATEHOUSE_DATA_DIR: `${dir}/nested/data` });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`PGlite \\(embedded\\) in ${dir}/nested/data/pgdata`));
  });
});
