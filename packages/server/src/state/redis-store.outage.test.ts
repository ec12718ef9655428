import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DependencyUnavailableError } from '../errors.ts';
import { RedisStateStore } from './redis-store.ts';

const REDIS_SERVER = '/usr/bin/redis-server';
const SKIP = existsSync(REDIS_SERVER) ? false : `${REDIS_SERVER} is not installed`;

/** Kills its own redis-server mid-test: the store must fail fast while it is down and recover alone. */
describe('RedisStateStore through a Redis outage', { skip: SKIP, timeout: 60_000 }, () => {
  let port: number;
  let redis: ChildProcess | undefined;
  let store: RedisStateStore | undefined;
  const connectionErrors: Error[] = [];
  const received: string[] = [];
  let unsubscribeTransient: (() => Promise<void>) | undefined;

  const live = (): RedisStateStore => {
    assert.ok(store, 'store not created');
    return store;
  };

  before(async () => {
    port = await freePort();
    redis = await startRedis(port);
    store = new RedisStateStore(`redis://127.0.0.1:${port}`, {
      keyPrefix: 'outage-test:',
      onConnectionError: (error) => connectionErrors.push(error),
    });
  });

  after(async () => {
    try {
      await store?.close();
    } finally {
      await stopRedis(redis);
    }
  });

  it('works while Redis is up, including a subscription', async () => {
    const s = live();
    assert.equal((await s.increment('hits', 60_000)).value, 1);
    assert.equal((await s.increment('hits', 60_000)).value, 2);
    await s.subscribe('revocations', (m) => received.push(m));
    unsubscribeTransient = await s.subscribe('transient', (m) => received.push(`transient:${m}`));
    await s.publish('revocations', 'before');
    await waitFor(() => received.includes('before'), 2_000);
  });

  it('rejects quickly with DependencyUnavailableError while Redis is down', async () => {
    const s = live();
    await stopRedis(redis);
    redis = undefined;
    const operations: Array<[string, () => Promise<unknown>]> = [
      ['ping', () => s.ping()],
      ['increment', () => s.increment('hits', 60_000)],
      ['get', () => s.get('hits')],
      ['set', () => s.set('k', 'v', 60_000)],
      ['setIfAbsent', () => s.setIfAbsent('lock', 'v', 60_000)],
      ['ttl', () => s.ttl('hits')],
      ['delete', () => s.delete('hits')],
      ['publish', () => s.publish('revocations', 'lost')],
      ['subscribe', () => s.subscribe('other', () => {})],
    ];
    // Right after the crash, and again after several reconnect attempts have failed.
    for (const round of ['at once', 'later']) {
      if (round === 'later') await sleep(2_500);
      for (const [name, operation] of operations) {
        const started = performance.now();
        await assert.rejects(operation(), DependencyUnavailableError, `${name} (${round})`);
        const elapsed = performance.now() - started;
        assert.ok(elapsed < 2_000, `${name} (${round}) took ${Math.round(elapsed)} ms`);
      }
    }
    assert.ok(connectionErrors.length > 0, 'connection errors reach onConnectionError');
    // Delivery stops locally, so unsubscribing succeeds even while Redis is down.
    await unsubscribeTransient?.();
  });

  it('recovers by itself once Redis is back', async () => {
    const s = live();
    redis = await startRedis(port);
    const started = performance.now();
    let recovered = false;
    while (!recovered && performance.now() - started < 10_000) {
      recovered = await s.ping().then(
        () => true,
        () => false,
      );
      if (!recovered) await sleep(100);
    }
    assert.ok(recovered, 'ping did not succeed within 10 s of Redis restarting');
    // The new server is empty and has no cached script: the counter restarts at 1.
    const counted = await s.increment('hits', 60_000);
    assert.equal(counted.value, 1);
    assert.equal(counted.ttlMs, 60_000);
  });

  it('delivers to the subscription made before the outage again', async () => {
    const s = live();
    // Re-subscribing happens on the subscriber connection's own reconnect, which may lag.
    const started = performance.now();
    while (!received.includes('after') && performance.now() - started < 10_000) {
      await s.publish('revocations', 'after');
      await sleep(100);
    }
    assert.ok(received.includes('after'), `received only ${JSON.stringify(received)}`);
    assert.ok(!received.includes('lost'), 'a message published during the outage cannot arrive');
    await s.publish('transient', 'after');
    await s.publish('revocations', 'last');
    await waitFor(() => received.includes('last'), 2_000);
    assert.ok(!received.includes('transient:after'), 'unsubscribed during the outage');
  });
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assert.ok(address && typeof address === 'object');
  return address.port;
}

async function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn(
    REDIS_SERVER,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${output}`)), 10_000);
      child.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.stderr?.on('data', (chunk: Buffer) => {
        output += chunk.toString();
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited with ${code}:\n${output}`));
      });
    });
  } catch (error) {
    await stopRedis(child);
    throw error;
  }
  return child;
}

/** SIGKILL, like a crash: no graceful shutdown for the client to notice. */
async function stopRedis(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) assert.fail(`condition not met within ${timeoutMs} ms`);
    await sleep(5);
  }
}
