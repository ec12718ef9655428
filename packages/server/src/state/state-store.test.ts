import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { StartupError } from '../errors.ts';
import { createStateStore } from './index.ts';
import { MemoryStateStore } from './memory-store.ts';
import { parseRedisUrl, RedisStateStore, reconnectDelay } from './redis-store.ts';
import { runStateStoreContract } from './state-store.contract.ts';

const REDIS_URL = process.env.REDIS_URL;
const SKIP_REDIS = REDIS_URL ? false : 'REDIS_URL is not set (e.g. REDIS_URL=redis://127.0.0.1:6379)';

/** The contract's throwing handler is expected; keep it out of the test output. */
const handlerErrors: unknown[] = [];
const recordHandlerError = (error: unknown): void => {
  handlerErrors.push(error);
};

runStateStoreContract('memory', async () => new MemoryStateStore({ onHandlerError: recordHandlerError }));

if (REDIS_URL) {
  // One prefix per run: the contract's "two processes" must share it, other runs must not.
  const keyPrefix = `gh-test:${randomUUID().slice(0, 8)}:`;
  runStateStoreContract(
    'redis',
    async () => new RedisStateStore(REDIS_URL, { keyPrefix, onHandlerError: recordHandlerError }),
    () => deleteKeys(REDIS_URL, keyPrefix),
  );
} else {
  describe('StateStore contract: redis', { skip: SKIP_REDIS }, () => {});
}

describe('MemoryStateStore', () => {
  it('sweeps expired entries that nobody reads', async () => {
    const store = new MemoryStateStore({ sweepIntervalMs: 50 });
    try {
      await store.set('a', '1', 100);
      await store.increment('b', 100);
      await store.set('kept', '1', 10_000);
      assert.equal(store.size, 3);
      await sleep(250);
      assert.equal(store.size, 1);
    } finally {
      await store.close();
    }
  });

  it('reports what a handler throws or rejects with, with the channel', async () => {
    const reported: Array<[string, string]> = [];
    const store = new MemoryStateStore({
      onHandlerError: (error, channel) => reported.push([channel, (error as Error).message]),
    });
    try {
      await store.subscribe('ch', () => {
        throw new Error('sync');
      });
      await store.subscribe('ch', async () => {
        throw new Error('async');
      });
      await store.publish('ch', 'm');
      await waitFor(() => reported.length === 2);
      assert.deepEqual(reported.sort(), [
        ['ch', 'async'],
        ['ch', 'sync'],
      ]);
    } finally {
      await store.close();
    }
  });
});

describe('parseRedisUrl', () => {
  it('reads a single server', () => {
    assert.deepEqual(parseRedisUrl('redis://127.0.0.1:6379/2'), {
      cluster: false,
      nodes: [{ host: '127.0.0.1', port: 6379 }],
      tls: false,
      username: undefined,
      password: undefined,
    });
    assert.equal(parseRedisUrl('rediss://cache.example.com').tls, true);
    assert.deepEqual(parseRedisUrl('rediss://cache.example.com').nodes, [
      { host: 'cache.example.com', port: 6379 },
    ]);
  });

  it('reads several comma-separated hosts as a cluster, with credentials and IPv6', () => {
    const parsed = parseRedisUrl('rediss://app:p%40ss%3Aword@h1:7000,h2:7001,[::1]:7002');
    assert.deepEqual(parsed, {
      cluster: true,
      nodes: [
        { host: 'h1', port: 7000 },
        { host: 'h2', port: 7001 },
        { host: '::1', port: 7002 },
      ],
      tls: true,
      username: 'app',
      password: 'p@ss:word',
    });
    assert.equal(parseRedisUrl('redis://:secret@h1,h2').password, 'secret');
    assert.equal(parseRedisUrl('redis://:secret@h1,h2').username, undefined);
  });

  it('rejects malformed URLs with a StartupError that does not leak the password', () => {
    for (const url of [
      'http://h:1',
      'redis://',
      'h1:6379',
      'redis://:hunter2@h1,,h2',
      'redis://:hunter2@h1,h2/3',
    ]) {
      assert.throws(
        () => parseRedisUrl(url),
        (error: unknown) => error instanceof StartupError && !error.message.includes('hunter2'),
        url,
      );
    }
  });
});

describe('reconnectDelay', () => {
  it('backs off and caps, and never gives up', () => {
    assert.deepEqual([1, 2, 5, 20, 1000].map(reconnectDelay), [100, 200, 500, 2000, 2000]);
  });
});

describe('createStateStore', () => {
  it('uses memory without a Redis URL', async () => {
    for (const url of [undefined, '']) {
      const store = createStateStore(url);
      assert.equal(store.kind, 'memory');
      await store.close();
    }
  });

  it('uses Redis with a URL, without throwing while Redis is unreachable', async () => {
    // Port 1 on loopback refuses connections.
    const store = createStateStore('redis://127.0.0.1:1');
    assert.equal(store.kind, 'redis');
    await store.close();
  });
});

describe('RedisStateStore specifics', { skip: SKIP_REDIS }, () => {
  const keyPrefix = `gh-test:${randomUUID().slice(0, 8)}:`;
  let raw: Redis;
  let store: RedisStateStore;
  const reported: Array<[string, string]> = [];

  before(() => {
    raw = new Redis(REDIS_URL ?? '');
    store = new RedisStateStore(REDIS_URL ?? '', {
      keyPrefix,
      onHandlerError: (error, channel) => reported.push([channel, (error as Error).message]),
    });
  });
  after(async () => {
    await store.close();
    await deleteKeys(REDIS_URL ?? '', keyPrefix);
    await raw.quit();
  });

  it('uses the gh: prefix by default', async () => {
    const plain = new RedisStateStore(REDIS_URL ?? '');
    try {
      assert.equal(plain.keyPrefix, 'gh:');
    } finally {
      await plain.close();
    }
  });

  it('prefixes keys', async () => {
    await store.set('k', 'v', 10_000);
    assert.equal(await raw.get(`${keyPrefix}k`), 'v');
    assert.equal(await raw.get('k'), null);
  });

  it('prefixes channels', async () => {
    const received: string[] = [];
    await store.subscribe('news', (m) => received.push(m));
    await raw.publish('news', 'unprefixed');
    await raw.publish(`${keyPrefix}news`, 'prefixed');
    await waitFor(() => received.length === 1);
    assert.deepEqual(received, ['prefixed']);
  });

  it('gives a counter a TTL when the key exists without one', async () => {
    await raw.set(`${keyPrefix}no-expiry`, '41');
    const counted = await store.increment('no-expiry', 5_000);
    assert.equal(counted.value, 42);
    assert.equal(counted.ttlMs, 5_000);
    const pttl = await raw.pttl(`${keyPrefix}no-expiry`);
    assert.ok(pttl > 4_000 && pttl <= 5_000, `pttl ${pttl}`);
  });

  it('reports Infinity as the ttl of a key without expiry', async () => {
    await raw.set(`${keyPrefix}forever`, 'v');
    assert.equal(await store.ttl('forever'), Number.POSITIVE_INFINITY);
  });

  it('reports what a handler throws, with the unprefixed channel', async () => {
    const received: string[] = [];
    await store.subscribe('faulty', () => {
      throw new Error('boom');
    });
    await store.subscribe('faulty', (m) => received.push(m));
    await store.publish('faulty', 'm');
    await waitFor(() => received.length === 1 && reported.length === 1);
    assert.deepEqual(reported, [['faulty', 'boom']]);
  });
});

async function deleteKeys(url: string, prefix: string): Promise<void> {
  const raw = new Redis(url);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await raw.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) await raw.del(...keys);
    } while (cursor !== '0');
  } finally {
    await raw.quit();
  }
}

async function waitFor(condition: () => boolean, timeoutMs = 2_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) assert.fail(`condition not met within ${timeoutMs} ms`);
    await sleep(5);
  }
}
